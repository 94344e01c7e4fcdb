"""The bus interface every stage talks to; RabbitMQ and the in-memory bus implement it
with the same semantics, so the same test runs on either.

Semantics (both implementations):
- `publish` returns only after the broker confirmed the message (persistent);
  failure to confirm raises `TransientError`.
- `consume(queues)` yields deliveries; when several queues have messages the one
  listed first is always served first (urgent before normal).
- A delivery is settled exactly once: `ack()`, `requeue()` (redelivered with
  `delivery_count` + 1; past the queue's delivery limit the broker dead-letters it
  to `feedback.dlx`), or `Bus.dead_letter()` (published to `feedback.dlx` with the
  error and stage in headers and the original bytes as body, then acked).
- A delivery never settled when its consumer goes away is redelivered.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from types import TracebackType

INGRESS = "feedback.ingress"
CLASSIFIED = "feedback.classified"
DLX = "feedback.dlx"
Q_PROCESS_URGENT = "feedback.process.urgent"
Q_PROCESS = "feedback.process"
Q_SINK_FEED = "sink.feed"
Q_SINK_STORE = "sink.store"
Q_DEAD = "feedback.dead"

LANE_URGENT = "urgent"
LANE_NORMAL = "normal"

H_ID = "x-feedback-id"
H_CHANNEL = "x-channel"
H_STAGE = "x-stage"
H_ERROR = "x-error"
H_ERROR_STAGE = "x-error-stage"
H_ORIGIN_EXCHANGE = "x-origin-exchange"
H_ORIGIN_ROUTING_KEY = "x-origin-routing-key"


@dataclass(frozen=True, slots=True)
class Topology:
    """Names and limits of the contract topology (shared/docs/architecture.md)."""

    delivery_limit: int = 20
    """Deliveries of one message before the broker parks it in feedback.dead. 20, as
    RabbitMQ 4 defaults to: a message that fails processing is parked by the worker
    itself long before, so the limit only stops a message that kills its consumer over
    and over. With 5, the chaos run (tests/chaos) parked 24 of 100 000 good messages
    that were merely in a consumer's prefetch at 5 faults in a row (kills, restarts,
    cut links)."""

    @staticmethod
    def ingress_routing_key(channel: str, lane: str) -> str:
        return f"{channel}.{lane}"


@dataclass(frozen=True, slots=True)
class OutMessage:
    routing_key: str
    body: bytes
    headers: Mapping[str, str]


class Delivery(ABC):
    """One received message; settle it exactly once."""

    body: bytes
    headers: dict[str, str]
    routing_key: str
    exchange: str
    queue: str
    delivery_count: int
    """1 on first delivery, +1 on each redelivery."""

    @property
    @abstractmethod
    def settled(self) -> bool:
        """Acked, requeued, parked, or lost with its channel (the broker took it back):
        either way no longer this consumer's to settle."""

    @abstractmethod
    async def ack(self) -> None: ...

    @abstractmethod
    async def requeue(self) -> None:
        """Give it back for redelivery (counts against the delivery limit)."""


class Bus(ABC):
    """A connection to the bus with the contract topology declared."""

    topology: Topology
    durable: bool = True
    """False for the in-memory bus: what is still queued at exit is gone, so a
    worker on it drains completely before it stops."""

    async def __aenter__(self) -> Bus:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @abstractmethod
    async def start(self) -> None:
        """Connect and declare the topology (idempotent)."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def publish(
        self, exchange: str, routing_key: str, body: bytes, headers: Mapping[str, str]
    ) -> None:
        """Publish one persistent message; return once the broker confirmed it."""

    async def publish_many(self, exchange: str, messages: Sequence[OutMessage]) -> None:
        """Publish a batch; return once the broker confirmed every message.
        Implementations overlap the confirms; on failure raise `TransientError`
        (some of the batch may be published: consumers dedup by id)."""
        for m in messages:
            await self.publish(exchange, m.routing_key, m.body, m.headers)

    @abstractmethod
    def consume(
        self, queues: Sequence[str], prefetch: int
    ) -> AbstractAsyncContextManager[AsyncIterator[Delivery]]:
        """Deliveries from `queues`, the first listed served first whenever it has any.
        Leaving the context returns unsettled deliveries to their queues."""

    @abstractmethod
    async def dead_letter(self, delivery: Delivery, error: str, stage: str) -> None:
        """Park `delivery` in feedback.dead with `x-error`, `x-error-stage` and its
        original exchange/routing key in headers, body unchanged; then ack it."""

    @abstractmethod
    async def get(self, queue: str) -> Delivery | None:
        """Fetch one message without a consumer (basic.get), or None when empty;
        used by `feedback-ingest dead list|replay`."""

    @abstractmethod
    async def queue_depths(self) -> dict[str, int]:
        """Ready messages per contract queue (for metrics and autoscaling)."""

    @abstractmethod
    async def ping(self) -> None:
        """Raise `TransientError` if the bus is not reachable (readiness)."""
