"""The in-memory bus: an in-process broker with the contract topology and RabbitMQ's
quorum-queue semantics, so embedded mode and tests behave like production.

What it copies from RabbitMQ 3.10+ quorum queues (tests/integration/test_bus.py runs
the same assertions against both):
- routing: `feedback.ingress` is a topic exchange with `*.urgent` → feedback.process.urgent
  and `*.normal` → feedback.process; every other key goes through the alternate exchange
  `feedback.ingress.unrouted` to feedback.process, so nothing published is ever dropped.
- a returned message (requeue, or its consumer went away) goes back to the *front* of its
  queue, ahead of messages never delivered, and counts as one more delivery;
- a message returned when it has had `topology.delivery_limit` deliveries is dead-lettered
  to `feedback.dlx` (body and headers unchanged, plus `x-first-death-*` headers).
Nothing here polls: consumers sleep on an `asyncio.Event` that publishes and settles set.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field

from ingest.bus.base import (
    DLX,
    Q_DEAD,
    Q_PROCESS,
    Q_PROCESS_URGENT,
    Q_SINK_FEED,
    Q_SINK_STORE,
    Bus,
    Delivery,
    Topology,
)
from ingest.bus.topology import (
    BINDINGS,
    DEATH_REASON_DELIVERY_LIMIT,
    DEFAULT_PREFETCH,
    EXCHANGES,
    H_FIRST_DEATH_EXCHANGE,
    H_FIRST_DEATH_QUEUE,
    H_FIRST_DEATH_REASON,
    check_consume_args,
    check_exchange,
    check_queue,
    dead_letter_headers,
    public_headers,
    settled_error,
    topic_matches,
)
from ingest.errors import TransientError


@dataclass(slots=True)
class _Message:
    exchange: str
    routing_key: str
    body: bytes
    headers: dict[str, str]
    returns: int = 0
    """Times handed back to the queue; the next delivery has delivery_count returns + 1."""
    parked_row: int | None = None
    """Row of this message in the parking-lot file (feedback.dead only)."""


@dataclass(slots=True, eq=False)
class _Queue:
    name: str
    delivery_limit: int | None
    dead_letter_exchange: str | None
    returned: deque[_Message] = field(default_factory=deque)
    ready: deque[_Message] = field(default_factory=deque)
    waiters: set[asyncio.Event] = field(default_factory=set)

    def take(self) -> _Message | None:
        if self.returned:
            return self.returned.popleft()
        if self.ready:
            return self.ready.popleft()
        return None

    def depth(self) -> int:
        return len(self.returned) + len(self.ready)

    def wake(self) -> None:
        for event in self.waiters:
            event.set()


class MemoryDelivery(Delivery):
    """A message handed out by `MemoryBus`; it owns its message until settled."""

    def __init__(
        self,
        bus: MemoryBus,
        queue: _Queue,
        message: _Message,
        on_settled: Callable[[MemoryDelivery], None],
    ) -> None:
        self.body = message.body
        self.headers = dict(message.headers)
        self.routing_key = message.routing_key
        self.exchange = message.exchange
        self.queue = queue.name
        self.delivery_count = message.returns + 1
        self._bus = bus
        self._queue = queue
        self._message = message
        self._on_settled = on_settled
        self._state: str | None = None

    def _settle(self, state: str) -> None:
        if self._state is not None:
            raise settled_error(self, self._state)
        self._state = state
        self._on_settled(self)

    @property
    def settled(self) -> bool:
        return self._state is not None

    async def ack(self) -> None:
        self._settle("acked")
        if self._message.parked_row is not None:
            self._bus._unpark(self._message)

    async def requeue(self) -> None:
        self._settle("requeued")
        self._bus._hand_back(self._queue, self._message)

    def _return_to_queue(self) -> None:
        """What the broker does when the consumer goes away with this delivery unsettled."""
        self._settle("returned to its queue when its consumer closed")
        self._bus._hand_back(self._queue, self._message)


class _Consumer:
    """One `consume()` context: at most `prefetch` unsettled deliveries, first queue first."""

    def __init__(self, bus: MemoryBus, queues: list[_Queue], prefetch: int) -> None:
        self._bus = bus
        self._queues = queues
        self._prefetch = prefetch
        self._unsettled: dict[int, MemoryDelivery] = {}
        self._wakeup = asyncio.Event()
        self._closed = False
        for queue in queues:
            queue.waiters.add(self._wakeup)

    def __aiter__(self) -> _Consumer:
        return self

    async def __anext__(self) -> Delivery:
        while not self._closed:
            if len(self._unsettled) < self._prefetch:
                for queue in self._queues:
                    message = queue.take()
                    if message is not None:
                        delivery = MemoryDelivery(self._bus, queue, message, self._settled)
                        self._unsettled[id(delivery)] = delivery
                        return delivery
            self._wakeup.clear()
            await self._wakeup.wait()
        raise StopAsyncIteration

    def _settled(self, delivery: MemoryDelivery) -> None:
        self._unsettled.pop(id(delivery), None)
        self._wakeup.set()

    def close(self) -> None:
        """Stop handing out and return every unsettled delivery, like a closing channel."""
        if self._closed:
            return
        self._closed = True
        for queue in self._queues:
            queue.waiters.discard(self._wakeup)
        for delivery in list(self._unsettled.values()):
            delivery._return_to_queue()
        self._wakeup.set()


class MemoryBus(Bus):
    """In-process broker for embedded mode and tests; state lives as long as the object
    (it survives close/start like a durable broker, not a process restart).

    Only the parking lot outlives the process, when `dead_path` names a SQLite file:
    dead letters are what an operator must be able to inspect and replay later
    (`feedback-ingest dead list|replay`), and they are rare, so a synchronous write
    each is cheap."""

    durable = False

    def __init__(
        self,
        topology: Topology | None = None,
        *,
        prefetch_default: int = DEFAULT_PREFETCH,
        dead_path: str | None = None,
    ) -> None:
        self.topology = topology or Topology()
        if self.topology.delivery_limit < 1:
            raise ValueError("topology.delivery_limit must be at least 1")
        self._prefetch_default = prefetch_default
        limit = self.topology.delivery_limit
        self._queues: dict[str, _Queue] = {
            name: _Queue(name, limit, DLX)
            for name in (Q_PROCESS_URGENT, Q_PROCESS, Q_SINK_FEED, Q_SINK_STORE)
        }
        self._queues[Q_DEAD] = _Queue(Q_DEAD, None, None)
        self._consumers: set[_Consumer] = set()
        self._gotten: dict[int, MemoryDelivery] = {}
        self._open = False
        self._dead_db: sqlite3.Connection | None = None
        self._dead_path = dead_path

    async def start(self) -> None:
        if self._dead_path is not None and self._dead_db is None:
            self._dead_db = sqlite3.connect(self._dead_path, isolation_level=None)
            self._dead_db.execute(
                "CREATE TABLE IF NOT EXISTS parked (row INTEGER PRIMARY KEY, exchange TEXT,"
                " routing_key TEXT, body BLOB, headers TEXT)"
            )
            dead = self._queues[Q_DEAD]
            dead.ready.clear()
            for row, exchange, key, body, headers in self._dead_db.execute(
                "SELECT row, exchange, routing_key, body, headers FROM parked ORDER BY row"
            ):
                message = _Message(exchange, key, bytes(body), json.loads(headers))
                message.parked_row = row
                dead.ready.append(message)
        self._open = True

    def _park(self, message: _Message) -> None:
        if self._dead_db is not None:
            cursor = self._dead_db.execute(
                "INSERT INTO parked (exchange, routing_key, body, headers) VALUES (?, ?, ?, ?)",
                (message.exchange, message.routing_key, message.body, json.dumps(message.headers)),
            )
            message.parked_row = cursor.lastrowid

    def _unpark(self, message: _Message) -> None:
        if self._dead_db is not None:
            self._dead_db.execute("DELETE FROM parked WHERE row = ?", (message.parked_row,))

    async def close(self) -> None:
        self._open = False
        for consumer in list(self._consumers):
            consumer.close()
        for delivery in list(self._gotten.values()):
            delivery._return_to_queue()
        if self._dead_db is not None:
            self._dead_db.close()
            self._dead_db = None

    def _check_open(self) -> None:
        if not self._open:
            raise TransientError("the in-memory bus is not started (or already closed)")

    # --- routing ----------------------------------------------------------------

    def _route(self, exchange: str, routing_key: str) -> list[_Queue]:
        kind, alternate = EXCHANGES[exchange]
        names = [
            queue
            for source, key, queue in BINDINGS
            if source == exchange and (kind == "fanout" or topic_matches(key, routing_key))
        ]
        if not names and alternate is not None:
            return self._route(alternate, routing_key)
        return [self._queues[name] for name in dict.fromkeys(names)]

    def _enqueue(
        self, exchange: str, routing_key: str, body: bytes, headers: dict[str, str]
    ) -> None:
        for queue in self._route(exchange, routing_key):
            message = _Message(exchange, routing_key, body, dict(headers))
            if queue.name == Q_DEAD:
                self._park(message)
            queue.ready.append(message)
            queue.wake()

    def _hand_back(self, queue: _Queue, message: _Message) -> None:
        """Return a message to the front of `queue`, or park it once its deliveries are spent."""
        message.returns += 1
        if queue.delivery_limit is not None and message.returns >= queue.delivery_limit:
            if queue.dead_letter_exchange is not None:
                headers = {
                    **message.headers,
                    H_FIRST_DEATH_REASON: DEATH_REASON_DELIVERY_LIMIT,
                    H_FIRST_DEATH_QUEUE: queue.name,
                    H_FIRST_DEATH_EXCHANGE: message.exchange,
                }
                self._enqueue(
                    queue.dead_letter_exchange, message.routing_key, message.body, headers
                )
            return
        queue.returned.append(message)
        queue.wake()

    # --- Bus --------------------------------------------------------------------

    async def publish(
        self, exchange: str, routing_key: str, body: bytes, headers: Mapping[str, str]
    ) -> None:
        check_exchange(exchange)
        self._check_open()
        self._enqueue(exchange, routing_key, bytes(body), public_headers(headers))
        await asyncio.sleep(0)  # a publish is a scheduling point, as real I/O would be

    def consume(
        self, queues: Sequence[str], prefetch: int
    ) -> AbstractAsyncContextManager[AsyncIterator[Delivery]]:
        prefetch = check_consume_args(queues, prefetch, self._prefetch_default)
        return self._consume([self._queues[name] for name in queues], prefetch)

    @asynccontextmanager
    async def _consume(self, queues: list[_Queue], prefetch: int) -> AsyncIterator[_Consumer]:
        self._check_open()
        consumer = _Consumer(self, queues, prefetch)
        self._consumers.add(consumer)
        try:
            yield consumer
        finally:
            self._consumers.discard(consumer)
            consumer.close()

    async def dead_letter(self, delivery: Delivery, error: str, stage: str) -> None:
        if not isinstance(delivery, MemoryDelivery) or delivery._bus is not self:
            raise TypeError("dead_letter() takes a delivery received from this bus")
        if delivery._state is not None:
            raise settled_error(delivery, delivery._state)
        self._check_open()
        headers = dead_letter_headers(delivery, error, stage)
        self._enqueue(DLX, delivery.routing_key, delivery.body, headers)
        await delivery.ack()

    async def get(self, queue: str) -> Delivery | None:
        check_queue(queue)
        self._check_open()
        state = self._queues[queue]
        message = state.take()
        if message is None:
            return None
        delivery = MemoryDelivery(self, state, message, self._forget_gotten)
        self._gotten[id(delivery)] = delivery
        return delivery

    def _forget_gotten(self, delivery: MemoryDelivery) -> None:
        self._gotten.pop(id(delivery), None)

    async def queue_depths(self) -> dict[str, int]:
        self._check_open()
        return {name: queue.depth() for name, queue in self._queues.items()}

    async def ping(self) -> None:
        self._check_open()
