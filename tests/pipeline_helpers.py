"""Shared by the pipeline tests: input files with known ids, a worker on the real
services, and counting what arrived."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis

from ingest.abc import FeedQuery, Store
from ingest.model import FeedbackRecord
from ingest.runtime import components
from ingest.runtime.supervisor import Worker
from ingest.settings import Settings, settings_from_dict

SAMPLES = Path(__file__).resolve().parents[1] / "ingest" / "data" / "samples.jsonl"
GOOD_TEXTS = [orjson.loads(line)["text"] for line in SAMPLES.read_bytes().splitlines() if line]

BAD_LINES: dict[str, bytes] = {
    "bad_json": b'{"id": "bad-json", "text": "\xe6\x88\x91\xe7\x9a\x84\xe5\x8d\xa1',
    "invalid_utf8": b'{"id": "bad-utf8", "text": "\xff\xfe\xfa broken"}',
    "wrong_types": b'{"id": "bad-types", "text": "\xe5\xa5\xbd", "rating": "five stars"}',
    "huge": b'{"id": "bad-huge", "text": "' + b"a" * (10 * 1024 * 1024) + b'"}',
}


def good_line(i: int, channel: str = "web_form") -> bytes:
    text = GOOD_TEXTS[i % len(GOOD_TEXTS)]
    return orjson.dumps(
        {
            "id": f"ev-{i:06d}",
            "channel": channel,
            "text": f"{text}（{i}）",
            "author": f"user{i % 37}@example.com",
        }
    )


def write_feedback_file(path: Path, count: int, *, with_bad: bool = False) -> list[str]:
    """A JSONL export with `count` good lines (ids ev-000000…) and, if asked, the bad
    lines spread among them. Returns the good ids."""
    lines = [good_line(i) for i in range(count)]
    if with_bad:
        for offset, bad in zip(
            itertools.count(1, max(1, count // 5)), BAD_LINES.values(), strict=False
        ):
            lines.insert(min(offset, len(lines)), bad)
    tmp = path.with_suffix(".part")
    tmp.write_bytes(b"\n".join(lines) + b"\n")
    old = os.stat(tmp).st_mtime - 60  # look settled to the connector at once
    os.utime(tmp, (old, old))
    tmp.rename(path)
    return [f"ev-{i:06d}" for i in range(count)]


async def wait_until(
    predicate: Callable[[], Awaitable[bool]], timeout_secs: float, what: str
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_secs
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout_secs}s waiting for {what}")
        await asyncio.sleep(0.2)


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "ingest.cli", *args]


def run_cli(
    *args: str, stdin: bytes = b"", timeout: float = 120
) -> subprocess.CompletedProcess[bytes]:
    """`feedback-ingest ARGS` in its own process (a command may configure logging for
    the whole process), its output captured."""
    return subprocess.run(
        cli_command(*args), input=stdin, capture_output=True, timeout=timeout, check=False
    )


def sqlite_store_rows(state_dir: Path) -> tuple[list[str], int, int]:
    """A SQLite store's rows as stored (read straight from `<state_dir>/feedback.db`):
    the native id of every record row, the `ingested` audit rows (one per record ever
    inserted), and the rows past version 1 (changed after their first write)."""
    import sqlite3
    from contextlib import closing

    with closing(sqlite3.connect(state_dir / "feedback.db")) as db:
        natives = [str(r[0]) for r in db.execute("SELECT native_id FROM feedback_records")]
        ingested = db.execute("SELECT count(*) FROM feedback_audit WHERE action = 'ingested'")
        changed = db.execute("SELECT count(*) FROM feedback_records WHERE version > 1")
        return natives, int(ingested.fetchone()[0]), int(changed.fetchone()[0])


# --- a worker on the real services (RabbitMQ, Redis, PostgreSQL) ---------------------


def services_settings(
    tmp_path: Path,
    amqp_url: str,
    redis_url: str,
    pg_url: str,
    prefix: str,
    connectors: dict[str, Any],
) -> Settings:
    """Services mode: the broker at `amqp_url`, the feed and cursors in Redis under
    `prefix`, the store at `pg_url`; the web server on a free local port; `connectors`."""
    return settings_from_dict(
        {
            "runtime": {"state_dir": str(tmp_path / "state"), "drain_timeout_secs": 10},
            "broker": {"url": amqp_url},
            "redis": {"url": redis_url, "prefix": prefix},
            "store": {"url": pg_url},
            "http": {"host": "127.0.0.1", "port": 0},
            "classify": {"workers": 1, "customer_ref_key": "k"},
            "log": {"level": "warning"},
            "connectors": connectors,
        }
    )


@contextlib.asynccontextmanager
async def running_worker(settings: Settings) -> AsyncIterator[str]:
    """A Worker with every role, run in a task; yields the base URL of its web server.
    Raises the worker's own error if it ends before the server is up; on exit asks it to
    stop and waits up to 60 s for it to drain."""
    worker = Worker(settings)
    task = asyncio.create_task(worker.run())

    async def serving() -> bool:
        if task.done():
            task.result()  # the worker's error, if it failed
            raise AssertionError("the worker stopped before its web server started")
        return worker.http is not None and worker.http.port != 0

    try:
        await wait_until(serving, 30, "the worker's web server")
        assert worker.http is not None
        yield f"http://127.0.0.1:{worker.http.port}"
    finally:
        worker.request_stop()
        await asyncio.wait_for(task, 60)


async def drop_redis_prefix(redis_url: str, prefix: str) -> None:
    """Delete every Redis key under `prefix:`."""
    client = aioredis.from_url(redis_url)
    try:
        keys = [k async for k in client.scan_iter(f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def open_store(settings: Settings) -> AsyncIterator[Store]:
    """The store of `settings`, started, and closed on exit."""
    store = components.make_store(settings)
    await store.start()
    try:
        yield store
    finally:
        await store.close()


async def stored_records(settings: Settings, ids: Iterable[str]) -> dict[str, FeedbackRecord]:
    """Record id → record, for those of `ids` the store holds."""
    async with open_store(settings) as store:
        found = {i: await store.get(i) for i in ids}
    return {i: r for i, r in found.items() if r is not None}


async def feed_records(settings: Settings, query: FeedQuery) -> dict[str, FeedbackRecord]:
    """Record id → record, for the feed's open records that `query` selects."""
    feed = components.make_feed(settings)
    await feed.start()
    try:
        return {r.id: r for r in await feed.top(query)}
    finally:
        await feed.close()
