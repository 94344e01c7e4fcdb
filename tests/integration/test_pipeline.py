"""End to end: file_drop → bus → processors → feed + store, counted record by record.

Runs embedded (in-memory bus, SQLite) and against the real services (RabbitMQ,
Redis, PostgreSQL). Every good line must end up exactly once in the feed and the
store; every bad line must end up in feedback.dead with its reason and bytes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from ingest.abc import FeedQuery
from ingest.bus.base import H_ERROR, H_ERROR_STAGE, Q_DEAD, Bus
from ingest.runtime import components
from ingest.runtime.supervisor import Worker
from ingest.settings import Settings, settings_from_dict
from tests.pipeline_helpers import (
    BAD_LINES,
    cli_command,
    drop_redis_prefix,
    wait_until,
    write_feedback_file,
)

N = 200


async def drain_dead(bus: Bus) -> list[tuple[dict[str, str], bytes]]:
    parked = []
    while (delivery := await bus.get(Q_DEAD)) is not None:
        parked.append((dict(delivery.headers), delivery.body))
        await delivery.ack()
    return parked


def assert_bad_lines_parked(parked: list[tuple[dict[str, str], bytes]]) -> None:
    """Each deliberately bad line is parked once, with a reason and its original bytes."""
    bodies = [body for _, body in parked]
    for name, raw in BAD_LINES.items():
        if name == "huge":  # parked with its first max_line_bytes, to fit one bus message
            assert sum(1 for b in bodies if len(b) > 1000 and raw.startswith(b)) == 1
        else:
            assert bodies.count(raw) == 1, f"bad line {name!r} not parked exactly once"
    for headers, _ in parked:
        assert headers.get(H_ERROR), headers
        assert headers.get(H_ERROR_STAGE, "").startswith("connector:")
    assert len(parked) == len(BAD_LINES)


def base_config(tmp_path: Path) -> dict[str, Any]:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    return {
        "runtime": {"state_dir": str(tmp_path / "state"), "drain_timeout_secs": 10},
        "classify": {"workers": 1},
        "log": {"level": "warning"},
        "connectors": {"drop": {"type": "file_drop", "path": str(inbox), "settle_secs": 0.0}},
    }


async def count_everything(settings: Settings) -> tuple[int, int, list[str]]:
    feed, store = components.make_feed(settings), components.make_store(settings)
    await feed.start()
    await store.start()
    try:
        top = await feed.top(FeedQuery(limit=10 * N))
        return await store.count(), sum((await feed.size()).values()), [r.id for r in top]
    finally:
        await feed.close()
        await store.close()


async def test_embedded_pipeline_counts_every_record(tmp_path: Path) -> None:
    """Embedded mode: N good lines → N in feed and store, bad lines parked, re-drop = no-op."""
    settings = settings_from_dict(base_config(tmp_path))
    inbox = Path(settings.connectors["drop"]["path"])
    ids = write_feedback_file(inbox / "export.jsonl", N, with_bad=True)
    bus = components.make_bus(settings)
    await Worker(settings, once=True, bus=bus).run()

    stored, in_feed, feed_ids = await count_everything(settings)
    assert (stored, in_feed) == (N, N)
    assert len(set(feed_ids)) == len(ids) == N
    async with bus:
        assert_bad_lines_parked(await drain_dead(bus))
    assert (inbox / "done" / "export.jsonl").exists()

    write_feedback_file(inbox / "export.jsonl", N, with_bad=True)  # the same export again
    await Worker(settings, once=True, bus=bus).run()
    assert (await count_everything(settings))[:2] == (N, N)


# --- real services ---------------------------------------------------------------


@pytest.fixture
async def services_config(
    tmp_path: Path, amqp_vhost_url: str, redis_url: str, pg_database: str, unique: str
) -> AsyncIterator[dict[str, Any]]:
    config = base_config(tmp_path)
    config["broker"] = {"url": amqp_vhost_url}
    config["redis"] = {"url": redis_url, "prefix": f"test-{unique}"}
    config["store"] = {"url": pg_database}
    yield config
    await drop_redis_prefix(redis_url, f"test-{unique}")


async def ingested_audit_rows(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(
            await conn.fetchval("SELECT count(*) FROM feedback_audit WHERE action = 'ingested'")
        )
    finally:
        await conn.close()


@pytest.mark.integration
async def test_rabbitmq_redis_postgres_pipeline_counts_every_record(
    services_config: dict[str, Any],
) -> None:
    """Over the real services: N in, N in the feed, N stored, none twice, bad lines parked;
    dropping the same file again changes nothing."""
    settings = settings_from_dict(services_config)
    inbox = Path(settings.connectors["drop"]["path"])
    write_feedback_file(inbox / "export.jsonl", N, with_bad=True)
    await Worker(settings, once=True).run()
    assert (await count_everything(settings))[:2] == (N, N)
    assert await ingested_audit_rows(settings.store_url) == N
    async with components.make_bus(settings) as bus:
        assert_bad_lines_parked(await drain_dead(bus))

    write_feedback_file(inbox / "export.jsonl", N, with_bad=True)
    await Worker(settings, once=True).run()
    assert (await count_everything(settings))[:2] == (N, N)
    assert await ingested_audit_rows(settings.store_url) == N


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        cli_command(*args), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_processor_killed_mid_batch_loses_nothing(
    services_config: dict[str, Any], tmp_path: Path
) -> None:
    """kill -9 the processor role while it works through a backlog; after a restart every
    record is stored and in the feed exactly once."""
    count = 600
    settings = settings_from_dict(services_config)
    env = {
        **os.environ,
        "FEEDBACK_BROKER__URL": services_config["broker"]["url"],
        "FEEDBACK_REDIS__URL": services_config["redis"]["url"],
        "FEEDBACK_REDIS__PREFIX": services_config["redis"]["prefix"],
        "FEEDBACK_STORE__URL": services_config["store"]["url"],
        "FEEDBACK_RUNTIME__STATE_DIR": services_config["runtime"]["state_dir"],
        "FEEDBACK_CLASSIFY__WORKERS": "1",
        "FEEDBACK_LOG__LEVEL": "warning",
        "FEEDBACK_CONNECTORS__DROP__TYPE": "file_drop",
        "FEEDBACK_CONNECTORS__DROP__PATH": settings.connectors["drop"]["path"],
        "FEEDBACK_CONNECTORS__DROP__SETTLE_SECS": "0.0",
    }
    env.pop("FEEDBACK_CONFIG", None)
    write_feedback_file(Path(settings.connectors["drop"]["path"]) / "big.jsonl", count)
    intake = _start(["run", "--once", "--roles", "connectors"], env)
    assert intake.wait(60) == 0, intake.stderr.read() if intake.stderr else ""
    sinks = _start(["run", "--roles", "sinks"], {**env, "FEEDBACK_HTTP__PORT": "0"})
    processor = _start(["run", "--roles", "processors"], {**env, "FEEDBACK_HTTP__PORT": "0"})
    try:

        async def some_stored() -> bool:
            return (await count_everything(settings))[0] >= count // 10

        await wait_until(some_stored, 90, "the first records to be stored")
        processor.send_signal(signal.SIGKILL)
        processor.wait(10)
        stored_at_kill = (await count_everything(settings))[0]
        assert stored_at_kill < count, "the processor finished before it could be killed"
        processor = _start(["run", "--roles", "processors"], {**env, "FEEDBACK_HTTP__PORT": "0"})

        async def all_stored() -> bool:
            stored, in_feed, _ = await count_everything(settings)
            return stored == count and in_feed == count

        await wait_until(all_stored, 150, f"{count} records in store and feed")
        await asyncio.sleep(1)  # anything redelivered late would show up now
        assert (await count_everything(settings))[:2] == (count, count)
        assert await ingested_audit_rows(settings.store_url) == count
    finally:
        for proc in (processor, sinks):
            proc.send_signal(signal.SIGTERM)
        for proc in (processor, sinks):
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
