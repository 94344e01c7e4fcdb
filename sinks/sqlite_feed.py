"""The priority feed in a SQLite file, for embedded mode: the same ordering score,
the same upsert rules and the same capped event log as the Redis feed, so the desk
behaves identically on a laptop and in production.

    feed_items   one row per record: the codec json, its content digest, the hot
                 fields (urgency, status, owner, due_at), the feed score, and
                 channel / category so `top` filters in SQL; plus the desk's columns
                 (lease, breached, escalated, repeat link, resolution: `sinks.sqlite_desk`)
    feed_events  seq (the event_id), at, type, id, urgency, fields (JSON: owner,
                 reason, code …); capped at events_maxlen
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

import aiosqlite
import orjson

from ingest.abc import DeskFeed, DeskItem, FeedEvent, FeedQuery, SweepResult
from ingest.codec import encode_record
from ingest.errors import PermanentError
from ingest.log import get_logger
from ingest.model import FeedbackRecord
from sinks import sqlite_desk as desk
from sinks._desk import (
    ITEM_FIELDS,
    REASSIGN_LEASE_SECS,
    desk_item,
    lease_until,
    rank_zero_score,
    refuse,
)
from sinks._shared import SqliteDb, content_digest, empty_sizes, feed_score, utc_iso, utc_now_iso

log = get_logger(__name__)

EVENTS_POLL_SECS = 0.05
"""How often a blocking `events` call looks for new rows."""
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
    (id, json, digest, urgency, status, owner, due_at, score, channel, category, updated_at,
     customer_ref, repeat_count, linked_to)
    VALUES (:id, :json, :digest, :urgency, :status, :owner, :due_at, :score, :channel,
            :category, :updated_at, :customer_ref, :repeat_count, :linked_to)"""
# status, owner, lease, breached, repeat links are the desk's once stored: an update
# never touches them, and an escalated item stays urgent.
_UPDATE = """UPDATE feed_items SET json = :json, digest = :digest,
    urgency = CASE WHEN escalated = 1 THEN 'urgent' ELSE :urgency END,
    due_at = :due_at, score = CASE WHEN escalated = 1 THEN :urgent_score ELSE :score END,
    channel = :channel, category = :category, updated_at = :updated_at WHERE id = :id"""


class SqliteFeed(DeskFeed):
    """Embedded-mode feed; several components may share the file (WAL, busy timeout)."""

    name: ClassVar[str] = "sqlite_feed"

    def __init__(
        self,
        path: str,
        events_maxlen: int = 100_000,
        reassign_lease_secs: int = REASSIGN_LEASE_SECS,
    ) -> None:
        self.path = path
        self.events_maxlen = events_maxlen
        self.reassign_lease_secs = reassign_lease_secs
        self._db = SqliteDb(path)
        self._ready = False

    async def start(self) -> None:
        if self._ready:
            return
        async with self._db.transaction() as conn:
            for statement in SCHEMA:
                await conn.execute(statement)
            await desk.add_missing_columns(conn)
        self._ready = True

    async def close(self) -> None:
        await self._db.close()
        self._ready = False

    async def ping(self) -> None:
        async with self._db.reading() as conn:
            await conn.execute("SELECT 1")

    async def write(self, records: Sequence[FeedbackRecord]) -> None:
        """One transaction per call: read the stored digests, then insert new records
        (linking repeats), update changed ones and log one event each; an unchanged
        record costs nothing."""
        if not records:
            return
        await self.start()
        async with self._db.transaction() as conn:
            stored = await _stored(conn, [record.id for record in records])
            now = utc_now_iso()
            for record in records:
                digest = content_digest(record)
                previous = stored.get(record.id)
                if previous is not None and previous[0] == digest:
                    continue
                score = feed_score(record)
                row = {
                    "id": record.id,
                    "json": encode_record(record).decode(),
                    "digest": digest,
                    "urgency": record.urgency,
                    "status": record.status,
                    "owner": record.owner,
                    "due_at": None if record.due_at is None else utc_iso(record.due_at),
                    "score": score,
                    "urgent_score": rank_zero_score(score),
                    "channel": record.channel,
                    "category": record.category,
                    "updated_at": now,
                }
                if previous is None:
                    linked = await desk.link_repeat(conn, record.id, record.customer_ref)
                    row |= {
                        "customer_ref": record.customer_ref,
                        "repeat_count": record.repeat_count,
                        "linked_to": linked,
                    }
                    await conn.execute(_INSERT, row)
                    extra = {"linked_to": linked} if linked else {}
                    await desk.emit(conn, now, "new", record.id, record.urgency, **extra)
                else:
                    await conn.execute(_UPDATE, row)
                    urgency = "urgent" if previous[1] else record.urgency
                    await desk.emit(conn, now, "updated", record.id, urgency)
                stored[record.id] = (digest, previous[1] if previous else False)
            await self._cap_events(conn)

    async def _cap_events(self, conn: aiosqlite.Connection) -> None:
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
            f"SELECT id, {', '.join(ITEM_FIELDS)} FROM feed_items WHERE {' AND '.join(where)} "
            "ORDER BY score, id LIMIT ?"
        )
        await self.start()
        async with self._db.reading() as conn, conn.execute(sql, (*params, query.limit)) as cur:
            rows = list(await cur.fetchall())
        found = []
        for record_id, *values in rows:
            item = _item_or_none(record_id, dict(zip(ITEM_FIELDS, values, strict=True)))
            if item is not None:
                found.append(item.record)
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

    # --- the desk's operations (each one BEGIN IMMEDIATE transaction) ---------------

    async def _op(
        self,
        record_id: str,
        operation: Callable[[aiosqlite.Connection], Awaitable[dict[str, Any] | None]],
    ) -> DeskItem | None:
        await self.start()
        try:
            async with self._db.transaction() as conn:
                hot = await operation(conn)
                await self._cap_events(conn)
        except desk.Refused as exc:
            refuse(exc.code, record_id, exc.detail)
        if hot is None:
            return None
        return _item_or_none(hot.get("id", record_id), hot)

    async def _required(
        self,
        record_id: str,
        operation: Callable[[aiosqlite.Connection], Awaitable[dict[str, Any] | None]],
    ) -> DeskItem:
        item = await self._op(record_id, operation)
        if item is None:
            raise KeyError(record_id)
        return item

    async def next(self, agent: str, lease_secs: int) -> DeskItem | None:
        now = datetime.now(UTC)
        _, until = lease_until(now, lease_secs)
        return await self._op("", lambda c: desk.claim_next(c, agent, until, utc_iso(now)))

    async def claim(self, record_id: str, agent: str, lease_secs: int) -> DeskItem:
        now = datetime.now(UTC)
        _, until = lease_until(now, lease_secs)
        return await self._required(
            record_id, lambda c: desk.claim(c, record_id, agent, until, utc_iso(now))
        )

    async def renew(self, record_id: str, agent: str, lease_secs: int) -> DeskItem:
        now = datetime.now(UTC)
        _, until = lease_until(now, lease_secs)
        return await self._required(
            record_id, lambda c: desk.renew(c, record_id, agent, until, utc_iso(now))
        )

    async def release(self, record_id: str, agent: str) -> DeskItem:
        now = utc_now_iso()
        return await self._required(record_id, lambda c: desk.release(c, record_id, agent, now))

    async def resolve(self, record_id: str, agent: str, code: str, note: str = "") -> DeskItem:
        now = utc_now_iso()
        return await self._required(
            record_id, lambda c: desk.resolve(c, record_id, agent, code, note, now)
        )

    async def reassign(self, record_id: str, to_agent: str, by: str) -> DeskItem:
        now = datetime.now(UTC)
        _, until = lease_until(now, self.reassign_lease_secs)
        return await self._required(
            record_id, lambda c: desk.reassign(c, record_id, to_agent, by, until, utc_iso(now))
        )

    async def escalate(self, record_id: str, by: str, reason: str) -> DeskItem:
        now = utc_now_iso()
        return await self._required(
            record_id, lambda c: desk.escalate(c, record_id, by, reason, now)
        )

    async def item(self, record_id: str) -> DeskItem | None:
        await self.start()
        async with self._db.reading() as conn:
            hot = await desk.hot(conn, record_id)
        return None if hot is None else _item_or_none(record_id, hot)

    async def sweep(self, now: datetime) -> SweepResult:
        await self.start()
        async with self._db.transaction() as conn:
            returned, breached = await desk.sweep(conn, utc_iso(now))
            await self._cap_events(conn)
        return SweepResult(returned=returned, breached=breached)

    async def events(
        self, after: str = "0", count: int = 100, block_ms: int = 0
    ) -> list[FeedEvent]:
        """Rows after seq `after` ("$": after the newest now); `block_ms` polls for new ones.
        ValueError for an `after` that is no seq (a client's Last-Event-ID may be anything)."""
        if after not in ("", "$") and not (after.isascii() and after.isdigit() and len(after) < 19):
            raise ValueError(f"not an event id of this feed: {after[:40]!r}")
        await self.start()
        if after == "$":
            async with (
                self._db.reading() as conn,
                conn.execute("SELECT coalesce(max(seq), 0) FROM feed_events") as cur,
            ):
                row = await cur.fetchone()
            after = str(row[0] if row else 0)
        deadline = asyncio.get_running_loop().time() + block_ms / 1000
        while True:
            async with (
                self._db.reading() as conn,
                conn.execute(
                    "SELECT seq, type, id, urgency, fields FROM feed_events WHERE seq > ? "
                    "ORDER BY seq LIMIT ?",
                    (int(after or 0), count),
                ) as cur,
            ):
                rows = list(await cur.fetchall())
            if rows or asyncio.get_running_loop().time() >= deadline:
                break
            await asyncio.sleep(EVENTS_POLL_SECS)
        return [
            FeedEvent(
                event_id=str(seq),
                type=kind,
                record_id=record_id,
                fields={"urgency": urgency, **orjson.loads(fields or "{}")},
            )
            for seq, kind, record_id, urgency, fields in rows
        ]


async def _stored(conn: aiosqlite.Connection, ids: list[str]) -> dict[str, tuple[str, bool]]:
    """id → (content digest, escalated) of the records already in the feed."""
    unique_ids = list(dict.fromkeys(ids))
    stored: dict[str, tuple[str, bool]] = {}
    for start in range(0, len(unique_ids), _SELECT_CHUNK):
        chunk = unique_ids[start : start + _SELECT_CHUNK]
        marks = ", ".join("?" * len(chunk))
        async with conn.execute(
            f"SELECT id, digest, escalated FROM feed_items WHERE id IN ({marks})", chunk
        ) as cur:
            for record_id, digest, escalated in await cur.fetchall():
                stored[record_id] = (digest, bool(escalated))
    return stored


def _item_or_none(record_id: str, hot: dict[str, Any]) -> DeskItem | None:
    try:
        return desk_item({k: None if v is None else str(v) for k, v in hot.items()})
    except PermanentError as exc:
        log.warning("feed_item_unreadable", feedback_id=record_id, error=str(exc))
        return None
