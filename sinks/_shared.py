"""What the sink backends share, so Redis, SQLite and PostgreSQL agree on it: the
content digest that makes upserts idempotent, the feed score, UTC ISO text, and one
guarded aiosqlite connection that translates "database is down" into `TransientError`."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import aiosqlite
import orjson

from ingest.errors import TransientError
from ingest.model import URGENCY_LEVELS, URGENCY_RANK, FeedbackRecord

LEVEL_SPAN = 1e10
"""Feed score = level_rank * LEVEL_SPAN + due_at epoch seconds (contract)."""
NO_DUE_AT_SECONDS = LEVEL_SPAN - 1
"""A record without a deadline goes after every dated item of its level."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def content_digest(record: FeedbackRecord) -> str:
    """Stable fingerprint of what the record says; equal digests mean nothing to update.

    Left out: status and owner (the desk's once stored) and ingested_at/processed_at,
    which move on every re-poll or re-run of the chain, so a replay never looks like a
    reclassification. orjson serialises the dataclass directly (no `asdict` copy)."""
    neutral = dataclasses.replace(
        record, status="open", owner="", ingested_at=_EPOCH, processed_at=_EPOCH
    )
    blob = orjson.dumps(neutral, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    return hashlib.blake2b(blob, digest_size=16).hexdigest()


def feed_score(record: FeedbackRecord) -> float:
    """Lowest first: urgent before important before general, earliest deadline first."""
    seconds = NO_DUE_AT_SECONDS if record.due_at is None else record.due_at.timestamp()
    return URGENCY_RANK[record.urgency] * LEVEL_SPAN + seconds


def level_score_range(level: str) -> tuple[float, float]:
    """[low, high) of the scores of one urgency level."""
    low = URGENCY_RANK[level] * LEVEL_SPAN
    return low, low + LEVEL_SPAN


def empty_sizes() -> dict[str, int]:
    return dict.fromkeys(URGENCY_LEVELS, 0)


def utc_iso(moment: datetime) -> str:
    """Fixed-width UTC ISO 8601, so text order is time order in SQLite columns."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def utc_now_iso() -> str:
    return utc_iso(datetime.now(UTC))


# --- SQLite -----------------------------------------------------------------

_TRANSIENT_SQLITE = ("locked", "busy", "disk i/o", "unable to open", "disk is full")


@contextmanager
def sqlite_errors() -> Iterator[None]:
    """Lock contention, I/O and open failures may pass; anything else is a bug and
    must not be retried forever, so it is re-raised unchanged."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        if any(marker in str(exc).lower() for marker in _TRANSIENT_SQLITE):
            raise TransientError(f"sqlite: {exc}") from exc
        raise


class SqliteDb:
    """One aiosqlite connection in WAL mode, opened lazily, used under a lock: the
    connection runs every call on one thread, but an explicit BEGIN would otherwise
    be shared by whichever coroutines interleave on it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._conn: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    async def _connection(self) -> aiosqlite.Connection:
        if self._conn is None:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = await aiosqlite.connect(self.path, isolation_level=None)
            try:
                for pragma in (
                    "PRAGMA journal_mode=WAL",
                    "PRAGMA synchronous=FULL",  # write() returns only once durable
                    "PRAGMA busy_timeout=5000",  # feed, store and cursors may share a file
                ):
                    await conn.execute(pragma)
            except BaseException:
                await conn.close()
                raise
            self._conn = conn
        return self._conn

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            with sqlite_errors():
                yield await self._connection()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """BEGIN IMMEDIATE takes the write lock up front, so a read-then-write inside
        cannot be raced by another process sharing the file."""
        async with self._lock:
            with sqlite_errors():
                conn = await self._connection()
                await conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    await conn.rollback()
                    raise
                await conn.commit()

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()
