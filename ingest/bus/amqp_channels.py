"""Channels that come back: the bus replaces a dead channel itself.

aio-pika's robust connection reconnects, and its robust channels are meant to restore
their consumers. The chaos run (tests/chaos) showed that with aio-pika 10.2 after a
broker restart or a cut link they come back without consumers: the queue sits with
zero consumers and the worker waits for ever, with nothing in its logs. So the bus
does not rely on that restore. A watcher per channel notices it closed (or reopened by
aio-pika behind its back), closes it for good (so no half-restored twin consumes beside
the new one), and opens a fresh channel
on the reconnected connection: subscribing again, or declaring the topology again for
publishing. Deliveries of the dead channel are the broker's again (it requeues them);
settling them fails with a TransientError that the stages already handle.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import aiormq.abc
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection

from ingest.bus.amqp_delivery import Consumer, is_broker_error
from ingest.log import get_logger

log = get_logger("ingest.bus")

CHECK_SECS = 0.5
"""How often a watcher looks at its channel: the pause a consumer can add after a reconnect."""


async def close_quietly(closable: AbstractChannel | AbstractRobustConnection, secs: float) -> None:
    """Close, ignoring a broker that is gone. aiormq cancels its own closing tasks when the
    connection closes under a channel; that CancelledError is not a cancellation of ours."""
    try:
        async with asyncio.timeout(secs):
            await closable.close()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is None or task.cancelling():
            raise
    except Exception as exc:  # RuntimeError('Connection closed') while reconnecting
        if not (is_broker_error(exc) or isinstance(exc, RuntimeError)):
            raise


class KeptChannel:
    """A channel on the robust connection that `keep_open()` replaces when it dies."""

    confirms = False
    """Publisher confirms on the channel."""

    def __init__(self, connection: AbstractRobustConnection, timeout_secs: float) -> None:
        self._connection = connection
        self._timeout_secs = timeout_secs
        self._channel: AbstractChannel | None = None
        self._underlay: aiormq.abc.AbstractChannel | None = None

    def __str__(self) -> str:
        return type(self).__name__

    async def _set_up(self, channel: AbstractChannel) -> None:
        """Subscribe, declare: whatever the fresh channel is for."""

    async def open(self) -> None:
        channel = await self._connection.channel(publisher_confirms=self.confirms)
        try:
            await self._set_up(channel)
            underlay = await channel.get_underlay_channel()
        except BaseException:
            await close_quietly(channel, self._timeout_secs)
            raise
        self._channel, self._underlay = channel, underlay

    async def _still_set_up(self) -> bool:
        """Open, and still on the protocol channel it was set up on. After a reconnect
        aio-pika may reopen a robust channel by itself: open again, but (the chaos run
        showed) without the consumers subscribed on it."""
        channel = self._channel
        if channel is None or channel.is_closed:
            return False
        try:
            return await channel.get_underlay_channel() is self._underlay
        except Exception:  # whatever the library raises, the channel is not usable
            return False

    async def keep_open(self) -> None:
        """Runs until cancelled: looks at the channel and replaces it once it closed."""
        failing = False
        while True:
            await asyncio.sleep(CHECK_SECS)
            if await self._still_set_up():
                continue
            try:
                await self._replace()
            except Exception as exc:  # the watcher must outlive any failure: it retries
                if not failing:  # once per outage, not every half second
                    log.warning("amqp_channel_reopen_failed", channel=str(self), error=repr(exc))
                failing = True
                continue
            log.info("amqp_channel_reopened", channel=str(self))
            failing = False

    async def _replace(self) -> None:
        old, self._channel = self._channel, None
        if old is not None:  # closed for good: aio-pika must not restore it beside the new one
            await close_quietly(old, self._timeout_secs)
        async with asyncio.timeout(self._timeout_secs):
            await self.open()

    async def close(self) -> None:
        channel, self._channel, self._underlay = self._channel, None, None
        if channel is not None:
            await close_quietly(channel, self._timeout_secs)


class ConsumerChannel(KeptChannel):
    """The channel that feeds one `Consumer`, subscribed to its queues in order."""

    def __init__(
        self,
        connection: AbstractRobustConnection,
        consumer: Consumer,
        queues: Sequence[str],
        prefetch: int,
        timeout_secs: float,
    ) -> None:
        super().__init__(connection, timeout_secs)
        self._consumer = consumer
        self._queues = list(queues)
        self._prefetch = prefetch

    def __str__(self) -> str:
        return f"consume {', '.join(self._queues)}"

    async def _set_up(self, channel: AbstractChannel) -> None:
        await channel.set_qos(prefetch_count=self._prefetch)
        for name in self._queues:  # in order, so the first queue's backlog arrives first
            queue = await channel.get_queue(name, ensure=False)
            await queue.consume(self._consumer.receiver(name), no_ack=False)


class PublishChannel(KeptChannel):
    """The confirm channel publishes go through, with the exchanges declared on it (the
    whole topology again on each new channel: a broker that lost it gets it back)."""

    confirms = True

    def __init__(
        self,
        connection: AbstractRobustConnection,
        declare: Callable[[AbstractChannel], Awaitable[dict[str, AbstractExchange]]],
        timeout_secs: float,
    ) -> None:
        super().__init__(connection, timeout_secs)
        self._declare = declare
        self.exchanges: dict[str, AbstractExchange] = {}

    def __str__(self) -> str:
        return "publish"

    async def _set_up(self, channel: AbstractChannel) -> None:
        self.exchanges = await self._declare(channel)
