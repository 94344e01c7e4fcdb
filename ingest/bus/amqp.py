"""The RabbitMQ bus over aio-pika: quorum queues, publisher confirms, manual acks.

Decisions that keep it identical to `MemoryBus` (see ingest/bus/memory.py):
- `delivery_count` is the quorum queue's `x-delivery-count` header + 1 (absent → 1).
  RabbitMQ 3.10 sets the header on every delivery (0 on the first) and counts every
  return: requeue and a consumer that went away.
- `requeue()` is `basic.reject(requeue=True)`, not `basic.nack`: both count on 3.x, but
  from RabbitMQ 4.3 only `reject` (and a closed channel) counts against the delivery
  limit, and a requeue here is always a failed attempt.
- A quorum queue dead-letters a message when it is returned more than `x-delivery-limit`
  times, i.e. after x-delivery-limit + 1 deliveries. `Topology.delivery_limit` counts
  deliveries, so queues are declared with `x-delivery-limit = delivery_limit - 1`.
- `consume()` buffers what the broker pushes per queue and hands out the first listed
  queue first; queues are subscribed in order, so on start-up the urgent backlog arrives
  before the normal one. Priority is strict among buffered messages only: a message the
  broker has not pushed yet (at most `prefetch` per queue are pushed) cannot be preferred.
- Library errors become `TransientError` here, at the boundary; a queue or exchange that
  exists with other arguments (PRECONDITION_FAILED) is a `ConfigError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractRobustConnection,
)
from aio_pika.connection import make_url
from aio_pika.exceptions import ChannelPreconditionFailed
from pamqp.commands import Basic
from pamqp.common import FieldValue

from ingest.bus.amqp_channels import ConsumerChannel, PublishChannel, close_quietly
from ingest.bus.amqp_delivery import AmqpDelivery, Consumer, is_broker_error
from ingest.bus.base import DLX, Bus, Delivery, OutMessage, Topology
from ingest.bus.topology import (
    BINDINGS,
    CONTRACT_QUEUES,
    DEFAULT_PREFETCH,
    EXCHANGES,
    INGRESS_UNROUTED,
    check_consume_args,
    check_exchange,
    check_queue,
    dead_letter_headers,
    public_headers,
)
from ingest.errors import ConfigError, TransientError

PUBLISH_WINDOW = 500
"""Publishes of one `publish_many` awaiting their confirms at the same time."""


# --- the declared topology (deploy/rabbitmq/definitions.json holds the same) ----------


def broker_delivery_limit(topology: Topology) -> int:
    """`x-delivery-limit` counts returns, `Topology.delivery_limit` counts deliveries."""
    return topology.delivery_limit - 1


def exchange_arguments(name: str) -> dict[str, Any]:
    alternate = EXCHANGES[name][1]
    return {} if alternate is None else {"alternate-exchange": alternate}


def queue_arguments(name: str, topology: Topology) -> dict[str, Any]:
    if name not in CONTRACT_QUEUES:
        raise ValueError(f"unknown queue {name!r}")
    arguments: dict[str, Any] = {"x-queue-type": "quorum"}
    if name != "feedback.dead":  # the parking lot keeps a message until someone acts on it
        arguments["x-delivery-limit"] = broker_delivery_limit(topology)
        arguments["x-dead-letter-exchange"] = DLX
    return arguments


async def declare_topology(
    channel: AbstractChannel, topology: Topology
) -> dict[str, AbstractExchange]:
    """Declare every exchange, queue and binding (idempotent); return the exchanges."""
    exchanges = {
        name: await channel.declare_exchange(
            name,
            aio_pika.ExchangeType(kind),
            durable=True,
            internal=name == INGRESS_UNROUTED,
            arguments=exchange_arguments(name),
        )
        for name, (kind, _) in EXCHANGES.items()
    }
    queues = {
        name: await channel.declare_queue(
            name, durable=True, arguments=queue_arguments(name, topology)
        )
        for name in CONTRACT_QUEUES
    }
    for exchange, key, queue in BINDINGS:
        await queues[queue].bind(exchanges[exchange], routing_key=key)
    return exchanges


# --- deliveries ------------------------------------------------------------------------


class AmqpBus(Bus):
    """The production bus: one robust connection, a confirm channel for publishing, a
    channel per `consume()` and one for basic.get / depth / ping."""

    def __init__(
        self,
        url: str,
        topology: Topology | None = None,
        *,
        prefetch_default: int = DEFAULT_PREFETCH,
        timeout_secs: float = 30.0,
    ) -> None:
        self.topology = topology or Topology()
        if self.topology.delivery_limit < 1:
            raise ValueError("topology.delivery_limit must be at least 1")
        self._url = url
        self._prefetch_default = prefetch_default
        self._timeout_secs = timeout_secs
        self._connection: AbstractRobustConnection | None = None
        self._publishing: PublishChannel | None = None
        self._keepers: set[asyncio.Task[None]] = set()
        self._utility_channel: AbstractChannel | None = None
        self._consumers: set[Consumer] = set()
        self._gotten: dict[int, AmqpDelivery] = {}

    @asynccontextmanager
    async def _broker(self, action: str) -> AsyncIterator[None]:
        """Time-box one broker operation and translate library errors at the boundary."""
        try:
            async with asyncio.timeout(self._timeout_secs):
                yield
        except ChannelPreconditionFailed as exc:
            raise ConfigError(
                "broker",
                f"{action}: the broker's topology differs from this worker's ({exc}); "
                "queue arguments must equal deploy/rabbitmq/definitions.json",
            ) from exc
        except Exception as exc:
            if not is_broker_error(exc):
                raise
            raise TransientError(f"RabbitMQ: {action} failed: {exc!r}") from exc

    def _require_connection(self) -> AbstractRobustConnection:
        if self._connection is None:
            raise TransientError("RabbitMQ: the bus is not started (or already closed)")
        return self._connection

    async def start(self) -> None:
        if self._connection is not None:
            return
        # What `aio_pika.connect_robust` does, but holding the connection, so a failed
        # attempt is closed here. connect_robust drops it unclosed: its reconnect task
        # keeps dialling (after our timeout: for ever, swallowing the cancellation at
        # exit, so `asyncio.run` never returns), and its `__del__` schedules `close()`
        # wherever the garbage collector runs; in a thread without a loop (to_thread,
        # aiosqlite) that is "coroutine 'RobustConnection.close' was never awaited".
        connection = aio_pika.RobustConnection(make_url(self._url))
        publishing = PublishChannel(
            connection, lambda channel: declare_topology(channel, self.topology), self._timeout_secs
        )
        try:
            async with self._broker("connect"):
                await connection.connect(timeout=self._timeout_secs)
            async with self._broker("declare the topology"):
                await publishing.open()
        except BaseException:
            await close_quietly(connection, self._timeout_secs)
            raise
        self._connection, self._publishing = connection, publishing
        self._keep(publishing.keep_open(), "amqp publish channel")

    def _keep(self, watcher: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(watcher, name=name)
        self._keepers.add(task)
        task.add_done_callback(self._keepers.discard)
        return task

    async def close(self) -> None:
        for consumer in list(self._consumers):
            consumer.close()
        for delivery in list(self._gotten.values()):
            delivery._mark_returned()
        for task in list(self._keepers):
            task.cancel()
        await asyncio.gather(*self._keepers, return_exceptions=True)
        connection, self._connection = self._connection, None
        publishing, self._publishing = self._publishing, None
        self._utility_channel = None
        if publishing is not None:
            await publishing.close()
        if connection is not None:
            await close_quietly(connection, self._timeout_secs)

    async def _utility(self) -> AbstractChannel:
        """The channel for basic.get, passive declares and ping, reopened if it died."""
        connection = self._require_connection()
        if self._utility_channel is None or self._utility_channel.is_closed:
            self._utility_channel = await connection.channel(publisher_confirms=False)
        return self._utility_channel

    # --- publishing ----------------------------------------------------------------

    def _exchange(self, name: str) -> AbstractExchange:
        check_exchange(name)
        self._require_connection()
        assert self._publishing is not None
        exchange = self._publishing.exchanges.get(name)
        if exchange is None:  # between a dead publish channel and its replacement
            raise TransientError(f"RabbitMQ: no channel to publish to {name} (reconnecting)")
        return exchange

    async def _publish(
        self, exchange: AbstractExchange, routing_key: str, body: bytes, headers: Mapping[str, str]
    ) -> None:
        fields: dict[str, FieldValue] = dict(public_headers(headers))
        message = aio_pika.Message(
            body,
            headers=fields,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        async with self._broker(f"publish to {exchange.name}"):
            confirmation = await exchange.publish(message, routing_key, mandatory=True)
        if not isinstance(confirmation, Basic.Ack):
            what = "refused (nack)" if isinstance(confirmation, Basic.Nack) else "unroutable"
            raise TransientError(
                f"RabbitMQ: message to {exchange.name} with key {routing_key!r} was {what}"
            )

    async def publish(
        self, exchange: str, routing_key: str, body: bytes, headers: Mapping[str, str]
    ) -> None:
        await self._publish(self._exchange(exchange), routing_key, body, headers)

    async def publish_many(self, exchange: str, messages: Sequence[OutMessage]) -> None:
        target = self._exchange(exchange)
        for start in range(0, len(messages), PUBLISH_WINDOW):
            window = messages[start : start + PUBLISH_WINDOW]
            results = await asyncio.gather(
                *(self._publish(target, m.routing_key, m.body, m.headers) for m in window),
                return_exceptions=True,
            )
            failures = [r for r in results if isinstance(r, BaseException)]
            for failure in failures:
                if not isinstance(failure, Exception):
                    raise failure  # cancellation and the like are not ours to translate
            if failures:
                raise TransientError(
                    f"RabbitMQ: {len(failures)} of a batch of {len(messages)} messages to "
                    f"{exchange} were not confirmed; first: {failures[0]}"
                ) from failures[0]

    # --- consuming -----------------------------------------------------------------

    def consume(
        self, queues: Sequence[str], prefetch: int
    ) -> AbstractAsyncContextManager[AsyncIterator[Delivery]]:
        prefetch = check_consume_args(queues, prefetch, self._prefetch_default)
        return self._consume(list(queues), prefetch)

    @asynccontextmanager
    async def _consume(self, queues: list[str], prefetch: int) -> AsyncIterator[Consumer]:
        connection = self._require_connection()
        consumer = Consumer(queues, prefetch, self._timeout_secs)
        channel = ConsumerChannel(connection, consumer, queues, prefetch, self._timeout_secs)
        keeper = None
        try:
            async with self._broker(f"consume {queues}"):
                await channel.open()
            keeper = self._keep(channel.keep_open(), f"amqp consume {queues}")
            self._consumers.add(consumer)
            yield consumer
        finally:
            self._consumers.discard(consumer)
            consumer.close()
            if keeper is not None:
                keeper.cancel()
                await asyncio.gather(keeper, return_exceptions=True)
            await channel.close()

    async def dead_letter(self, delivery: Delivery, error: str, stage: str) -> None:
        if not isinstance(delivery, AmqpDelivery):
            raise TypeError("dead_letter() takes a delivery received from an AmqpBus")
        target = self._exchange(DLX)
        headers = dead_letter_headers(delivery, error, stage)
        await delivery._settle(
            "dead-lettered",
            delivery._message.ack,
            before=lambda: self._publish(target, delivery.routing_key, delivery.body, headers),
        )

    async def get(self, queue: str) -> Delivery | None:
        check_queue(queue)
        async with self._broker(f"get from {queue}"):
            channel = await self._utility()
            handle = await channel.get_queue(queue, ensure=False)
            message = await handle.get(no_ack=False, fail=False, timeout=self._timeout_secs)
        if message is None:
            return None
        delivery = AmqpDelivery(message, queue, self._timeout_secs, self._forget_gotten)
        self._gotten[id(delivery)] = delivery
        return delivery

    def _forget_gotten(self, delivery: AmqpDelivery) -> None:
        self._gotten.pop(id(delivery), None)

    async def queue_depths(self) -> dict[str, int]:
        depths: dict[str, int] = {}
        async with self._broker("read queue depths"):
            # the raw channel: aio-pika's robust channel answers repeated passive declares
            # from a cache, with the count of the first one
            channel = await (await self._utility()).get_underlay_channel()
            for name in CONTRACT_QUEUES:
                declared = await channel.queue_declare(name, passive=True)
                depths[name] = declared.message_count or 0
        return depths

    async def ping(self) -> None:
        connection = self._require_connection()
        if not connection.connected.is_set():
            raise TransientError("RabbitMQ: connection lost, reconnecting")
        async with self._broker("ping"):
            channel = await (await self._utility()).get_underlay_channel()
            await channel.exchange_declare(DLX, passive=True)  # a real round trip
