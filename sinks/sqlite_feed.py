"""The priority feed in a SQLite file, for embedded mode: the same ordering score,
the same upsert rules and the same capped event log as the Redis feed, so the desk
behaves identically on a laptop and in production.

    feed_items   one row per record: the codec json, its content digest, the hot
                 fields (urgency, status, owner, due_at), the feed score, and
                 channel / category so `top` filters in SQL
    feed_events  seq, at, type (new | updated), id, urgency; capped at events_maxlen
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar

import aiosqlite

from ingest.abc import Feed, FeedQuery
from ingest.codec import decode_record, encode_record
from ingest.errors import PermanentError
from ingest.log import get_logger
from ingest.model import STATUSES, FeedbackRecord, Status
from sinks._shared import SqliteDb, content_digest, empty_sizes, feed_score, utc_iso, utc_now_iso

log = get_logger(__name__)

_STATUS: dict[str, Status] = {status: status for status in STATUSES}
_SELECT_CHUNK = 500
"""Ids per `IN (…)` lookup, well under SQLite's bound-parameter limit."""

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS feed_items (
        id         TEXT PRIMARY KEY NOT NULL,
        json       TEXT NOT NULL,
        digest     TEXT NOT NULL,
        urgency    TEXT NOT NULL,
        status     TEXT NOT NULL,
        owner      TEXT NOT NULL,
        due_at     TEXT,
        score      REAL NOT NULL,
        channel    TEXT NOT NULL,
        category   TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS feed_items_open ON feed_items (status, score, id)",
    """CREATE TABLE IF NOT EXISTS feed_events (
        seq     INTEGER PRIMARY KEY AUTOINCREMENT,
        at      TEXT NOT NULL,
        type    TEXT NOT NULL,
        id      TEXT NOT NULL,
        urgency TEXT NOT NULL
    )""",
)

_INSERT = """INSERT INTO feed_items
    (id, json, digest, urgency, status, owner, due_at, score, channel, category, updated_at)
    VALUES (:id, :json, :digest, :urgency, :status, :owner, :due_at, :score, :channel,
            :category, :updated_at)"""
# status and owner are the desk's once stored: an update never touches them.
_UPDATE = """UPDATE feed_items SET json = :json, digest = :digest, urgency = :urgency,
    due_at = :due_at, score = :score, channel = :channel, category = :category,
    updated_at = :updated_at WHERE id = :id"""
_EVENT = "INSERT INTO feed_events (at, type, id, urgency) VALUES (?, ?, ?, ?)"


class SqliteFeed(Feed):
    """Embedded-mode feed; several components may share the file (WAL, busy timeout)."""

    name: ClassVar[str] = "sqlite_feed"

    def __init__(self, path: str, events_maxlen: int = 100_000) -> None:
        self.path = path
        self.events_maxlen = events_maxlen
        self._db = SqliteDb(path)
        self._ready = False

    async def start(self) -> None:
        if self._ready:
            return
        async with self._db.transaction() as conn:
            for statement in SCHEMA:
                await conn.execute(statement)
        self._ready = True

    async def close(self) -> None:
        await self._db.close()
        self._ready = False

    async def ping(self) -> None:
        async with self._db.reading() as conn:
            await conn.execute("SELECT 1")

    async def write(self, records: Sequence[FeedbackRecord]) -> None:
        """One transaction per call: read the stored digests, then insert new records,
        update changed ones and log one event each; an unchanged record costs nothing."""
        if not records:
            return
        await self.start()
        async with self._db.transaction() as conn:
            stored = await _stored_digests(conn, [record.id for record in records])
            inserts: list[dict[str, Any]] = []
            updates: list[dict[str, Any]] = []
            events: list[tuple[str, ...]] = []
            now = utc_now_iso()
            for record in records:
                digest = content_digest(record)
                previous = stored.get(record.id)
                if previous == digest:
                    continue
                row = {
                    "id": record.id,
                    "json": encode_record(record).decode(),
                    "digest": digest,
                    "urgency": record.urgency,
                    "status": record.status,
                    "owner": record.owner,
                    "due_at": None if record.due_at is None else utc_iso(record.due_at),
                    "score": feed_score(record),
                    "channel": record.channel,
                    "category": record.category,
                    "updated_at": now,
                }
                (inserts if previous is None else updates).append(row)
                events.append(
                    (now, "new" if previous is None else "updated", record.id, record.urgency)
                )
                stored[record.id] = digest
            await conn.executemany(_INSERT, inserts)
            await conn.executemany(_UPDATE, updates)
            await conn.executemany(_EVENT, events)
            if events:
                await conn.execute(
                    "DELETE FROM feed_events WHERE seq <= (SELECT max(seq) FROM feed_events) - ?",
                    (self.events_maxlen,),
                )

    async def top(self, query: FeedQuery) -> list[FeedbackRecord]:
        where = ["status = 'open'"]
        params: list[Any] = []
        for column, value in (
            ("urgency", query.urgency),
            ("channel", query.channel),
            ("category", query.category),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        sql = (
            f"SELECT id, json, status, owner FROM feed_items WHERE {' AND '.join(where)} "
            "ORDER BY score, id LIMIT ?"
        )
        await self.start()
        async with self._db.reading() as conn, conn.execute(sql, (*params, query.limit)) as cur:
            rows = list(await cur.fetchall())
        found = []
        for record_id, body, status, owner in rows:
            try:
                record = decode_record(body.encode())
            except PermanentError as exc:
                log.warning("feed_item_unreadable", feedback_id=record_id, error=str(exc))
                continue
            found.append(
                dataclasses.replace(record, status=_STATUS.get(status, "open"), owner=owner)
            )
        return found

    async def size(self) -> dict[str, int]:
        sizes = empty_sizes()
        await self.start()
        async with (
            self._db.reading() as conn,
            conn.execute(
                "SELECT urgency, count(*) FROM feed_items WHERE status = 'open' GROUP BY urgency"
            ) as cur,
        ):
            for level, count in await cur.fetchall():
                if level in sizes:
                    sizes[level] = int(count)
        return sizes


async def _stored_digests(conn: aiosqlite.Connection, ids: list[str]) -> dict[str, str]:
    unique_ids = list(dict.fromkeys(ids))
    stored: dict[str, str] = {}
    for start in range(0, len(unique_ids), _SELECT_CHUNK):
        chunk = unique_ids[start : start + _SELECT_CHUNK]
        marks = ", ".join("?" * len(chunk))
        async with conn.execute(
            f"SELECT id, digest FROM feed_items WHERE id IN ({marks})", chunk
        ) as cur:
            for record_id, digest in await cur.fetchall():
                stored[record_id] = digest
    return stored
