"""The SLA sweeper: counts each breach once per level however often it runs, survives
a failing feed, and runs inside a worker that holds the feed (role `sinks`)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

from prometheus_client import REGISTRY

from ingest.abc import SweepResult
from ingest.errors import TransientError
from ingest.runtime.supervisor import Worker
from ingest.runtime.sweeper import Sweeper
from ingest.settings import settings_from_dict
from sinks.sqlite_feed import SqliteFeed
from tests.integration.test_desk_feed import rec


def breaches(urgency: str) -> float:
    value = REGISTRY.get_sample_value("feedback_sla_breaches_total", {"urgency": urgency})
    return value or 0.0


async def test_sweeper_counts_each_breach_once_per_level(tmp_path: Path) -> None:
    feed = SqliteFeed(str(tmp_path / "feed.db"))
    await feed.write(
        [
            rec(1, urgency="urgent", due_in_hours=-1),
            rec(2, urgency="general", due_in_hours=-2),
            rec(3, urgency="general", due_in_hours=-3),
            rec(4, urgency="general", due_in_hours=5),
        ]
    )
    before = {level: breaches(level) for level in ("urgent", "important", "general")}
    sweeper = Sweeper(feed, interval_secs=0.02)
    running = asyncio.create_task(sweeper.run())
    await asyncio.sleep(0.3)  # many ticks
    sweeper.stop()
    await asyncio.wait_for(running, 2)
    await feed.close()

    assert breaches("urgent") - before["urgent"] == 1
    assert breaches("general") - before["general"] == 2
    assert breaches("important") - before["important"] == 0


class _FlakyFeed(SqliteFeed):
    """Down for the first two sweeps, then back."""

    calls = 0

    async def sweep(self, now: datetime) -> SweepResult:
        self.calls += 1
        if self.calls <= 2:
            raise TransientError("redis: connection refused")
        return await super().sweep(now)


async def test_a_failing_sweep_is_retried_at_the_next_tick(tmp_path: Path) -> None:
    feed = _FlakyFeed(str(tmp_path / "feed.db"))
    await feed.write([rec(1, due_in_hours=-1)])
    sweeper = Sweeper(feed, interval_secs=0.02)
    running = asyncio.create_task(sweeper.run())
    for _ in range(100):
        item = await feed.item(rec(1).id)
        if item is not None and item.breached:
            break
        await asyncio.sleep(0.02)
    sweeper.stop()
    await asyncio.wait_for(running, 2)
    await feed.close()

    assert feed.calls > 2
    assert item is not None and item.breached


async def test_a_sinks_worker_runs_the_sweeper(tmp_path: Path) -> None:
    state = tmp_path / "state"
    feed = SqliteFeed(str(state / "feed.db"))
    await feed.write([rec(1, due_in_hours=-1)])
    settings = settings_from_dict(
        {"runtime": {"state_dir": str(state), "sweep_interval_secs": 0.05}}
    )
    worker = Worker(settings, ["sinks"], http=False)
    running = asyncio.create_task(worker.run())
    try:
        for _ in range(200):
            item = await feed.item(rec(1).id)
            if item is not None and item.breached:
                break
            await asyncio.sleep(0.05)
        assert item is not None and item.breached
        await asyncio.sleep(0.3)  # more sweeps: still one breach
        assert [e.type for e in await feed.events()] == ["new", "breached"]
    finally:
        worker.request_stop()
        await asyncio.wait_for(running, 20)
        await feed.close()


def test_sweep_interval_is_a_runtime_setting() -> None:
    settings = settings_from_dict({"runtime": {"sweep_interval_secs": 2}})
    assert settings.runtime.sweep_interval_secs == 2.0
    assert settings_from_dict({}).runtime.sweep_interval_secs == 15.0
