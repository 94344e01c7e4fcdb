"""Builds the configured components from settings (through the registry, so the
core names no connector, step or database)."""

from __future__ import annotations

from typing import Any

from ingest import registry
from ingest.abc import Connector, CursorStore, Feed, Store
from ingest.bus.base import Bus, Topology
from ingest.errors import ConfigError
from ingest.options import parse_options
from ingest.settings import Settings


def make_bus(settings: Settings) -> Bus:
    topology = Topology(delivery_limit=settings.broker.delivery_limit)
    if settings.broker.url is None:
        from ingest.bus.memory import MemoryBus

        settings.state_path.mkdir(parents=True, exist_ok=True)
        memory: Bus = MemoryBus(topology, dead_path=str(settings.state_path / "dead.db"))
        return memory
    from ingest.bus.amqp import AmqpBus

    return AmqpBus(
        settings.broker.url.reveal(), topology, prefetch_default=settings.broker.prefetch
    )


def make_feed(settings: Settings) -> Feed:
    if settings.redis.url is not None:
        feed: Feed = registry.sink_class("redis_feed")(
            settings.redis.url.reveal(), settings.redis.prefix
        )
        return feed
    settings.state_path.mkdir(parents=True, exist_ok=True)
    sqlite_feed: Feed = registry.sink_class("sqlite_feed")(str(settings.state_path / "feed.db"))
    return sqlite_feed


def make_store(settings: Settings) -> Store:
    if settings.store.url is None:
        settings.state_path.mkdir(parents=True, exist_ok=True)
    store: Store = registry.sink_class("sql_store")(settings.store_url)
    return store


def make_cursors(settings: Settings) -> CursorStore:
    if settings.redis.url is not None:
        cursors: CursorStore = registry.sink_class("redis_cursors")(
            settings.redis.url.reveal(), settings.redis.prefix
        )
        return cursors
    settings.state_path.mkdir(parents=True, exist_ok=True)
    local: CursorStore = registry.sink_class("sqlite_cursors")(
        str(settings.state_path / "cursors.db")
    )
    return local


def make_connector(name: str, table: dict[str, Any]) -> Connector:
    cls = registry.connector_class(str(table.get("type")), key=f"connectors.{name}.type")
    options = {k: v for k, v in table.items() if k != "type"}
    parsed = parse_options(cls.Options, options, f"connectors.{name}")
    connector: Connector = cls(name, parsed)
    return connector


def make_connectors(settings: Settings) -> list[Connector]:
    connectors = []
    for name, table in settings.connectors.items():
        if not name.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"connectors.{name}", "name must be letters, digits, _ or -")
        connectors.append(make_connector(name, table))
    return connectors
