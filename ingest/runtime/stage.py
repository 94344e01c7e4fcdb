"""What every consuming stage shares: settle a delivery according to the error
taxonomy, and count what is in flight so `run --once` knows when it has drained."""

from __future__ import annotations

import asyncio

from ingest import telemetry
from ingest.bus.base import H_CHANNEL, Bus, Delivery
from ingest.errors import TransientError
from ingest.log import get_logger

log = get_logger("ingest.stage")


class InFlight:
    """Counts deliveries taken but not settled."""

    def __init__(self) -> None:
        self.count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def __enter__(self) -> None:
        self.count += 1
        self._idle.clear()

    def __exit__(self, *exc: object) -> None:
        self.count -= 1
        if self.count == 0:
            self._idle.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()


async def park(bus: Bus, delivery: Delivery, stage: str, error: str, kind: str) -> None:
    """Dead-letter one delivery with its reason (original bytes kept)."""
    channel = delivery.headers.get(H_CHANNEL, "unknown")
    await bus.dead_letter(delivery, error[:500], stage)
    telemetry.DEAD_LETTERED.labels(channel, stage, kind).inc()
    telemetry.FAILED.labels(channel, stage, kind).inc()
    log.warning(
        "dead_lettered",
        stage=stage,
        error=error[:500],
        error_kind=kind,
        feedback_id=delivery.headers.get("x-feedback-id", ""),
        size=len(delivery.body),
    )


async def give_back(delivery: Delivery) -> None:
    """Requeue a delivery this stage could not finish. If its channel is already gone
    (broker restart, cut link) the broker has taken it back by itself and redelivers
    it, so the failed requeue is not an error: raising here would leave the rest of a
    batch unsettled, and an unsettled delivery holds a prefetch slot forever. One whose
    ack or parking already failed that way is skipped: it is settled, and settling it
    twice is a bug the bus refuses (the chaos run hit it on a cut link)."""
    if delivery.settled:
        return
    try:
        await delivery.requeue()
    except TransientError as exc:
        log.info("requeue_on_lost_channel", error=str(exc))
