"""Deliveries from RabbitMQ: an `AmqpDelivery` settles exactly once (ack, requeue, or
returned when its channel closes), and `Consumer` hands out what the broker pushed,
first listed queue first, never more than `prefetch` unsettled. Split from
`ingest.bus.amqp` (the bus itself) to keep each module readable in one sitting."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from decimal import Decimal

import orjson
import pamqp.exceptions
from aio_pika.abc import AbstractIncomingMessage
from aio_pika.exceptions import AMQPError, ChannelInvalidStateError
from pamqp.common import FieldValue

from ingest.bus.base import Delivery
from ingest.bus.topology import BROKER_OWNED_HEADERS, settled_error
from ingest.errors import TransientError

H_DELIVERY_COUNT = "x-delivery-count"
BROKER_ERRORS = (AMQPError, ChannelInvalidStateError, OSError, pamqp.exceptions.PAMQPException)
"""What aio-pika/aiormq raise when the broker or the network fails (TimeoutError is an OSError)."""


def is_broker_error(exc: BaseException) -> bool:
    """`BROKER_ERRORS`, or the bare `Exception` aiormq rejects its pending futures with
    when a channel closes without a reason (an ack in flight during a cut link: the
    chaos CI run crashed a sink role on it)."""
    return isinstance(exc, BROKER_ERRORS) or type(exc) is Exception


def header_text(value: FieldValue) -> str:
    """Header values are strings on our bus; other AMQP field types are rendered as text."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return orjson.dumps(value, default=str).decode()


def delivery_count(message: AbstractIncomingMessage) -> int:
    raw = (message.headers or {}).get(H_DELIVERY_COUNT)
    if raw is None:
        return 1
    try:
        return int(header_text(raw)) + 1
    except ValueError:
        return 1


class AmqpDelivery(Delivery):
    """A message received on a consume channel or by basic.get."""

    def __init__(
        self,
        message: AbstractIncomingMessage,
        queue: str,
        timeout_secs: float,
        on_settled: Callable[[AmqpDelivery], None],
    ) -> None:
        self.body = message.body
        self.headers = {
            key: header_text(value)
            for key, value in (message.headers or {}).items()
            if key not in BROKER_OWNED_HEADERS
        }
        self.routing_key = message.routing_key or ""
        self.exchange = message.exchange or ""
        self.queue = queue
        self.delivery_count = delivery_count(message)
        self._message = message
        self._timeout_secs = timeout_secs
        self._on_settled = on_settled
        self._state: str | None = None

    async def _settle(
        self,
        state: str,
        action: Callable[[], Awaitable[None]],
        *,
        before: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Settle once: claim the delivery, run `before` (undone if it fails), then `action`."""
        if self._state is not None:
            raise settled_error(self, self._state)
        self._state = state
        if before is not None:
            try:
                await before()
            except BaseException:
                self._state = None
                raise
        try:
            async with asyncio.timeout(self._timeout_secs):
                await action()
        except Exception as exc:
            if not is_broker_error(exc):
                raise
            self._state = "lost with its channel; the broker redelivers it"
            raise TransientError(
                f"RabbitMQ: settling a delivery ({state}) failed: {exc!r}"
            ) from exc
        finally:
            self._on_settled(self)

    @property
    def settled(self) -> bool:
        return self._state is not None

    async def ack(self) -> None:
        await self._settle("acked", self._message.ack)

    async def requeue(self) -> None:
        await self._settle("requeued", lambda: self._message.reject(requeue=True))

    def _mark_returned(self) -> None:
        """Its channel is closing: the broker takes the delivery back (count + 1)."""
        if self._state is None:
            self._state = "returned to its queue when its consumer closed"
            self._on_settled(self)


def channel_closed(message: AbstractIncomingMessage) -> bool:
    try:
        return message.channel.is_closed
    except ChannelInvalidStateError:
        return True


class Consumer:
    """Buffers pushed messages per queue; hands out first queue first, `prefetch` at most."""

    def __init__(self, queues: Sequence[str], prefetch: int, timeout_secs: float) -> None:
        self._queues = list(queues)
        self._buffers: dict[str, deque[AbstractIncomingMessage]] = {q: deque() for q in queues}
        self._prefetch = prefetch
        self._timeout_secs = timeout_secs
        self._unsettled: dict[int, AmqpDelivery] = {}
        self._wakeup = asyncio.Event()
        self._closed = False

    def receiver(self, queue: str) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
        async def receive(message: AbstractIncomingMessage) -> None:
            if not self._closed:
                self._buffers[queue].append(message)
                self._wakeup.set()

        return receive

    def __aiter__(self) -> Consumer:
        return self

    async def __anext__(self) -> Delivery:
        while not self._closed:
            if len(self._unsettled) < self._prefetch:
                delivery = self._take()
                if delivery is not None:
                    return delivery
            self._wakeup.clear()
            await self._wakeup.wait()
        raise StopAsyncIteration

    def _take(self) -> AmqpDelivery | None:
        for queue in self._queues:
            buffer = self._buffers[queue]
            while buffer:
                message = buffer.popleft()
                if channel_closed(message):
                    continue  # pushed before a reconnect: the broker has taken it back
                delivery = AmqpDelivery(message, queue, self._timeout_secs, self._settled)
                self._unsettled[id(delivery)] = delivery
                return delivery
        return None

    def _settled(self, delivery: AmqpDelivery) -> None:
        self._unsettled.pop(id(delivery), None)
        self._wakeup.set()

    def close(self) -> None:
        self._closed = True
        for delivery in list(self._unsettled.values()):
            delivery._mark_returned()
        for buffer in self._buffers.values():
            buffer.clear()
        self._wakeup.set()
