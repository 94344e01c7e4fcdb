"""The desk's priority feed in Redis (contract: architecture.md, "Redis priority feed").

    {prefix}:rec:{id}   hash: json (the masked record, codec envelope), urgency, status,
                        due_at, owner, updated_at; plus digest (content fingerprint),
                        score, lease_expires_at, breached, escalated, repeat_count,
                        linked_to, customer_ref, resolution_code/_note, resolved_at
    {prefix}:feed       sorted set of open ids, score level_rank * 1e10 + due_at epoch s
    {prefix}:claimed    sorted set of claimed ids by lease expiry (epoch s)
    {prefix}:due        sorted set of unresolved, not yet breached ids by due_at (epoch s)
    {prefix}:cust:{ref} set of a customer's unresolved ids (repeat-complaint links)
    {prefix}:events     capped stream: type, id, urgency, and owner / reason / code …

Every record is upserted by one Lua script, so a write is atomic per record and a
redelivery is a no-op: the desk never sees a duplicate, and an item it claimed or
resolved keeps its status and owner when the processors send a new version. Each desk
operation is one script too (`sinks.redis_desk_lua`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, ClassVar, cast

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from ingest.abc import DeskFeed, DeskItem, FeedEvent, FeedQuery, SweepResult
from ingest.codec import encode_record
from ingest.errors import PermanentError, TransientError
from ingest.log import get_logger
from ingest.model import URGENCY_LEVELS, FeedbackRecord
from sinks import redis_desk_lua as lua
from sinks._desk import ITEM_FIELDS, REASSIGN_LEASE_SECS, desk_item, lease_until, refuse
from sinks._shared import (
    LEVEL_SPAN,
    content_digest,
    empty_sizes,
    feed_score,
    level_score_range,
    utc_iso,
    utc_now_iso,
)

log = get_logger(__name__)

UPSERT_LUA = lua.UPSERT_LUA

PIPELINE_CHUNK = 500
"""Scripts sent per round trip: large batches stay fast without one huge reply."""
SWEEP_CHUNK = 500
"""Items one sweep script handles, so a backlog never blocks Redis for long."""
MAX_BLOCK_MS = 8000
"""`events` blocks at most this long: below the client's socket timeout (10 s)."""


@contextmanager
def redis_errors_as_transient() -> Iterator[None]:
    """Redis down, slow, loading or failing over: the same write may succeed later."""
    try:
        yield
    except (
        redis_errors.ConnectionError,
        redis_errors.TimeoutError,
        redis_errors.ReadOnlyError,
    ) as exc:
        raise TransientError(f"redis: {exc}") from exc


def connect(url: str) -> aioredis.Redis:
    """A lazily connecting client with timeouts, so a dead server fails fast."""
    client: aioredis.Redis = aioredis.Redis.from_url(
        url, socket_connect_timeout=5, socket_timeout=10, health_check_interval=30
    )
    return client


class RedisFeed(DeskFeed):
    """Upserts records into the feed (`write`); `top` and `size` are what the desk and
    metrics read; `next` … `events` are the desk's atomic operations."""

    name: ClassVar[str] = "redis_feed"

    def __init__(
        self,
        url: str,
        prefix: str = "feedback",
        events_maxlen: int = 100_000,
        reassign_lease_secs: int = REASSIGN_LEASE_SECS,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.events_maxlen = events_maxlen
        self.reassign_lease_secs = reassign_lease_secs
        self.feed_key = f"{prefix}:feed"
        self.claimed_key = f"{prefix}:claimed"
        self.due_key = f"{prefix}:due"
        self.events_key = f"{prefix}:events"
        self._client: aioredis.Redis | None = None
        self._scripts: dict[str, Any] = {}

    def rec_key(self, record_id: str) -> str:
        return f"{self.prefix}:rec:{record_id}"

    def cust_key(self, customer_ref: str) -> str:
        return f"{self.prefix}:cust:{customer_ref}"

    @property
    def _redis(self) -> aioredis.Redis:
        if self._client is None:
            self._client = connect(self.url)
            self._scripts = {
                name: self._client.register_script(getattr(lua, f"{name.upper()}_LUA"))
                for name in (
                    "upsert",
                    "next",
                    "claim",
                    "renew",
                    "release",
                    "resolve",
                    "reassign",
                    "escalate",
                    "sweep",
                )
            }
        return self._client

    async def start(self) -> None:
        """Only prepares the client: Redis being down at start is not fatal, writes
        raise `TransientError` and the sink worker retries them."""
        _ = self._redis

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def ping(self) -> None:
        with redis_errors_as_transient():
            await self._redis.ping()

    async def write(self, records: Sequence[FeedbackRecord]) -> None:
        client = self._redis
        upsert = self._scripts["upsert"]
        with redis_errors_as_transient():
            for start in range(0, len(records), PIPELINE_CHUNK):
                async with client.pipeline(transaction=False) as pipe:
                    for record in records[start : start + PIPELINE_CHUNK]:
                        await upsert(keys=self._keys(record), args=self._args(record), client=pipe)
                    await pipe.execute()

    def _keys(self, record: FeedbackRecord) -> list[str]:
        return [
            self.rec_key(record.id),
            self.feed_key,
            self.claimed_key,
            self.events_key,
            self.due_key,
            self.cust_key(record.customer_ref),
        ]

    def _args(self, record: FeedbackRecord) -> list[str | bytes | int | float]:
        score = feed_score(record)
        return [
            record.id,
            encode_record(record),
            content_digest(record),
            record.urgency,
            "" if record.due_at is None else utc_iso(record.due_at),
            score,
            utc_now_iso(),
            self.events_maxlen,
            record.status,
            record.owner,
            "" if record.due_at is None else record.due_at.timestamp(),
            record.customer_ref,
            record.repeat_count,
            self.prefix,
            score % LEVEL_SPAN,
        ]

    async def top(self, query: FeedQuery) -> list[FeedbackRecord]:
        """Walks the feed in score order a page at a time, filtering channel and
        category in Python; an urgency filter narrows the score range instead."""
        low: float | str = "-inf"
        high: float | str = "+inf"
        if query.urgency is not None:
            if query.urgency not in URGENCY_LEVELS:
                return []
            level_low, level_high = level_score_range(query.urgency)
            low, high = level_low, f"({level_high}"
        page = max(query.limit * 2, 100)
        found: list[FeedbackRecord] = []
        seen: set[str] = set()
        offset = 0
        client = self._redis
        with redis_errors_as_transient():
            while len(found) < query.limit:
                ids = cast(
                    list[bytes],
                    await client.zrange(
                        self.feed_key, low, high, byscore=True, offset=offset, num=page
                    ),
                )
                if not ids:
                    break
                offset += len(ids)
                async with client.pipeline(transaction=False) as pipe:
                    for raw_id in ids:
                        pipe.hmget(self.rec_key(raw_id.decode()), list(ITEM_FIELDS))
                    rows: list[list[bytes | None]] = await pipe.execute()
                for raw_id, row in zip(ids, rows, strict=True):
                    record = self._from_hash(raw_id.decode(), row)
                    if record is None or record.id in seen or not _matches(record, query):
                        continue
                    seen.add(record.id)
                    found.append(record)
                    if len(found) == query.limit:
                        break
        return found

    def _from_hash(self, record_id: str, row: list[bytes | None]) -> FeedbackRecord | None:
        """The record as the desk sees it: the stored json with the hash's live fields."""
        item = _item_or_none(record_id, row)
        return None if item is None else item.record

    async def size(self) -> dict[str, int]:
        sizes = empty_sizes()
        with redis_errors_as_transient():
            async with self._redis.pipeline(transaction=False) as pipe:
                for level in URGENCY_LEVELS:
                    low, high = level_score_range(level)
                    pipe.zcount(self.feed_key, low, f"({high}")
                counts: list[int] = await pipe.execute()
        for level, count in zip(URGENCY_LEVELS, counts, strict=True):
            sizes[level] = int(count)
        return sizes

    # --- the desk's operations (each one Lua script: atomic) -----------------------

    async def _run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        client = self._redis
        with redis_errors_as_transient():
            return await self._scripts[name](keys=keys, args=args, client=client)

    def _item(self, record_id: str, reply: list[Any]) -> DeskItem:
        code = reply[0].decode()
        if code != "ok":
            refuse(code, record_id, reply[1].decode())
        item = _item_or_none(record_id, reply[2:])
        if item is None:
            raise KeyError(record_id)
        return item

    async def next(self, agent: str, lease_secs: int) -> DeskItem | None:
        until, until_iso = lease_until(datetime.now(UTC), lease_secs)
        reply = await self._run(
            "next",
            [self.feed_key, self.claimed_key, self.events_key],
            [agent, until, until_iso, self.events_maxlen, self.prefix, utc_now_iso()],
        )
        if not reply:
            return None
        return self._item(reply[1].decode(), reply)

    async def claim(self, record_id: str, agent: str, lease_secs: int) -> DeskItem:
        now = datetime.now(UTC)
        until, until_iso = lease_until(now, lease_secs)
        reply = await self._run(
            "claim",
            [self.rec_key(record_id), self.feed_key, self.claimed_key, self.events_key],
            [record_id, agent, until, until_iso, self.events_maxlen, now.timestamp(), utc_iso(now)],
        )
        return self._item(record_id, reply)

    async def renew(self, record_id: str, agent: str, lease_secs: int) -> DeskItem:
        until, until_iso = lease_until(datetime.now(UTC), lease_secs)
        reply = await self._run(
            "renew",
            [self.rec_key(record_id), self.claimed_key],
            [record_id, agent, until, until_iso, utc_now_iso()],
        )
        return self._item(record_id, reply)

    async def release(self, record_id: str, agent: str) -> DeskItem:
        reply = await self._run(
            "release",
            [self.rec_key(record_id), self.feed_key, self.claimed_key, self.events_key],
            [record_id, agent, self.events_maxlen, utc_now_iso()],
        )
        return self._item(record_id, reply)

    async def resolve(self, record_id: str, agent: str, code: str, note: str = "") -> DeskItem:
        keys = [
            self.rec_key(record_id),
            self.feed_key,
            self.claimed_key,
            self.events_key,
            self.due_key,
        ]
        args = [record_id, agent, code, note, self.events_maxlen, utc_now_iso(), self.prefix]
        return self._item(record_id, await self._run("resolve", keys, args))

    async def reassign(self, record_id: str, to_agent: str, by: str) -> DeskItem:
        until, until_iso = lease_until(datetime.now(UTC), self.reassign_lease_secs)
        keys = [self.rec_key(record_id), self.feed_key, self.claimed_key, self.events_key]
        args = [record_id, to_agent, by, until, until_iso, self.events_maxlen, utc_now_iso()]
        return self._item(record_id, await self._run("reassign", keys, args))

    async def escalate(self, record_id: str, by: str, reason: str) -> DeskItem:
        keys = [self.rec_key(record_id), self.feed_key, self.events_key]
        args = [record_id, by, reason, self.events_maxlen, utc_now_iso(), LEVEL_SPAN]
        return self._item(record_id, await self._run("escalate", keys, args))

    async def item(self, record_id: str) -> DeskItem | None:
        with redis_errors_as_transient():
            row = cast(
                list[bytes | None],
                await self._redis.hmget(self.rec_key(record_id), list(ITEM_FIELDS)),
            )
        return _item_or_none(record_id, row)

    async def sweep(self, now: datetime) -> SweepResult:
        """Batches of SWEEP_CHUNK per script until both backlogs are done."""
        returned: list[str] = []
        breached: list[str] = []
        keys = [self.claimed_key, self.due_key, self.feed_key, self.events_key]
        while True:
            back, late = await self._run(
                "sweep", keys, [now.timestamp(), SWEEP_CHUNK, self.events_maxlen, self.prefix]
            )
            returned += [raw.decode() for raw in back]
            breached += [raw.decode() for raw in late]
            if len(back) < SWEEP_CHUNK and len(late) < SWEEP_CHUNK:
                return SweepResult(returned=returned, breached=breached)

    async def events(
        self, after: str = "0", count: int = 100, block_ms: int = 0
    ) -> list[FeedEvent]:
        """XREAD after `after`; `block_ms` (capped at MAX_BLOCK_MS) waits for new ones.
        ValueError for an `after` Redis does not take as a stream id (a client's
        Last-Event-ID may be anything)."""
        block = min(block_ms, MAX_BLOCK_MS) if block_ms > 0 else None
        with redis_errors_as_transient():
            try:
                reply = cast(
                    list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]],
                    await self._redis.xread({self.events_key: after}, count=count, block=block),
                )
            except redis_errors.ResponseError as exc:
                if "stream ID" not in str(exc):
                    raise
                raise ValueError(f"not an event id of this feed: {after[:40]!r}") from None
        found: list[FeedEvent] = []
        for _stream, entries in reply or ():
            for raw_id, raw_fields in entries:
                fields = {k.decode(): v.decode() for k, v in raw_fields.items()}
                found.append(
                    FeedEvent(
                        event_id=raw_id.decode(),
                        type=fields.pop("type", ""),
                        record_id=fields.pop("id", ""),
                        fields=fields,
                    )
                )
        return found


def _item_or_none(record_id: str, row: Sequence[bytes | None]) -> DeskItem | None:
    if not row or row[0] is None:
        return None  # no such record (or removed between two reads)
    try:
        return desk_item(dict(zip(ITEM_FIELDS, row, strict=True)))
    except PermanentError as exc:
        log.warning("feed_item_unreadable", feedback_id=record_id, error=str(exc))
        return None


def _matches(record: FeedbackRecord, query: FeedQuery) -> bool:
    return (
        (query.urgency is None or record.urgency == query.urgency)
        and (query.channel is None or record.channel == query.channel)
        and (query.category is None or record.category == query.category)
    )
