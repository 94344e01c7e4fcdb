"""The message bus: one interface (`base`), RabbitMQ (`amqp`) and in-memory (`memory`)."""

from ingest.bus.base import Bus, Delivery, Topology

__all__ = ["Bus", "Delivery", "Topology"]
