"""The SLA sweeper: every `sweep_interval_secs` it asks the desk feed to return
expired leases and to mark items past `due_at` as breached, counts the breaches per
level (`feedback_sla_breaches_total`) and logs each one.

Several workers may run a sweeper on the same feed: each sweep is atomic in the
feed, and an item is marked (and counted) once, by whichever sweep got there first.
A failing sweep (Redis down) is logged and retried at the next tick; it never stops
the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

from ingest import telemetry
from ingest.abc import DeskFeed, Feed, SweepResult
from ingest.log import get_logger

log = get_logger("ingest.sweeper")


class Sweeper:
    def __init__(
        self,
        feed: DeskFeed,
        interval_secs: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if interval_secs <= 0:
            raise ValueError("sweep interval must be positive")
        self.feed = feed
        self.interval_secs = interval_secs
        self.clock = clock
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Sweep now, then every interval until `stop()` (or cancellation)."""
        while not self._stop.is_set():
            try:
                await self.sweep_once()
            except Exception as exc:  # the next tick retries; the worker keeps running
                log.warning("sweep_failed", error=str(exc), error_type=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval_secs)

    async def sweep_once(self) -> SweepResult:
        result = await self.feed.sweep(self.clock())
        if result.returned:
            telemetry.LEASES_EXPIRED.inc(len(result.returned))
            log.info("leases_expired", count=len(result.returned), ids=list(result.returned))
        levels: Counter[str] = Counter()
        for record_id in result.breached:
            item = await self.feed.item(record_id)
            urgency: str = item.record.urgency if item is not None else "unknown"
            due_at = item.record.due_at if item is not None else None
            levels[urgency] += 1
            log.warning(
                "sla_breached",
                feedback_id=record_id,
                urgency=urgency,
                due_at=None if due_at is None else due_at.isoformat(),
                owner=item.owner if item is not None else "",
            )
        for level, count in levels.items():
            telemetry.SLA_BREACHES.labels(level).inc(count)
        return result


def sweeper_for(feed: Feed | None, interval_secs: float) -> Sweeper | None:
    """A sweeper when this process holds a desk feed (roles sinks or desk), else None."""
    if isinstance(feed, DeskFeed):
        return Sweeper(feed, interval_secs)
    return None
