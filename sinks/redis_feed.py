"""The desk's priority feed in Redis (contract: architecture.md, "Redis priority feed").

    {prefix}:rec:{id}   hash: json (the masked record, codec envelope), urgency, status,
                        due_at, owner, updated_at, plus digest (content fingerprint)
    {prefix}:feed       sorted set of open ids, score level_rank * 1e10 + due_at epoch s
    {prefix}:claimed    sorted set of claimed ids by lease expiry (owned by the desk)
    {prefix}:events     capped stream of {type, id, urgency}

Every record is upserted by one Lua script, so a write is atomic per record and a
redelivery is a no-op: the desk never sees a duplicate, and an item it claimed or
resolved keeps its status and owner when the processors send a new version.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar, cast

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from ingest.abc import Feed, FeedQuery
from ingest.codec import decode_record, encode_record
from ingest.errors import PermanentError, TransientError
from ingest.log import get_logger
from ingest.model import STATUSES, URGENCY_LEVELS, FeedbackRecord, Status
from sinks._shared import (
    content_digest,
    empty_sizes,
    feed_score,
    level_score_range,
    utc_iso,
    utc_now_iso,
)

log = get_logger(__name__)

_STATUS: dict[str, Status] = {status: status for status in STATUSES}

PIPELINE_CHUNK = 500
"""Scripts sent per round trip: large batches stay fast without one huge reply."""

# KEYS: rec, feed, claimed, events
# ARGV: id, json, digest, urgency, due_at, score, updated_at, events_maxlen, status, owner
# Returns 1 = new, 2 = updated, 0 = unchanged (redelivery).
UPSERT_LUA = """
local rec, feed, claimed, events = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id = ARGV[1]
if redis.call('EXISTS', rec) == 0 then
  redis.call('HSET', rec, 'json', ARGV[2], 'digest', ARGV[3], 'urgency', ARGV[4],
             'due_at', ARGV[5], 'status', ARGV[9], 'owner', ARGV[10], 'updated_at', ARGV[7])
  if ARGV[9] == 'open' then
    redis.call('ZADD', feed, ARGV[6], id)
  end
  redis.call('XADD', events, 'MAXLEN', '~', ARGV[8], '*',
             'type', 'new', 'id', id, 'urgency', ARGV[4])
  return 1
end
if redis.call('HGET', rec, 'digest') == ARGV[3] then
  return 0
end
redis.call('HSET', rec, 'json', ARGV[2], 'digest', ARGV[3], 'urgency', ARGV[4],
           'due_at', ARGV[5], 'updated_at', ARGV[7])
if redis.call('HGET', rec, 'status') == 'open' and not redis.call('ZSCORE', claimed, id) then
  redis.call('ZADD', feed, ARGV[6], id)
end
redis.call('XADD', events, 'MAXLEN', '~', ARGV[8], '*',
           'type', 'updated', 'id', id, 'urgency', ARGV[4])
return 2
"""


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


class RedisFeed(Feed):
    """Upserts records into the feed; `top` and `size` are what the desk and metrics read."""

    name: ClassVar[str] = "redis_feed"

    def __init__(self, url: str, prefix: str = "feedback", events_maxlen: int = 100_000) -> None:
        self.url = url
        self.prefix = prefix
        self.events_maxlen = events_maxlen
        self.feed_key = f"{prefix}:feed"
        self.claimed_key = f"{prefix}:claimed"
        self.events_key = f"{prefix}:events"
        self._client: aioredis.Redis | None = None
        self._upsert: Any = None

    def rec_key(self, record_id: str) -> str:
        return f"{self.prefix}:rec:{record_id}"

    @property
    def _redis(self) -> aioredis.Redis:
        if self._client is None:
            self._client = connect(self.url)
            self._upsert = self._client.register_script(UPSERT_LUA)
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
        with redis_errors_as_transient():
            for start in range(0, len(records), PIPELINE_CHUNK):
                async with client.pipeline(transaction=False) as pipe:
                    for record in records[start : start + PIPELINE_CHUNK]:
                        await self._upsert(
                            keys=self._keys(record.id), args=self._args(record), client=pipe
                        )
                    await pipe.execute()

    def _keys(self, record_id: str) -> list[str]:
        return [self.rec_key(record_id), self.feed_key, self.claimed_key, self.events_key]

    def _args(self, record: FeedbackRecord) -> list[str | bytes | int | float]:
        return [
            record.id,
            encode_record(record),
            content_digest(record),
            record.urgency,
            "" if record.due_at is None else utc_iso(record.due_at),
            feed_score(record),
            utc_now_iso(),
            self.events_maxlen,
            record.status,
            record.owner,
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
                        pipe.hmget(self.rec_key(raw_id.decode()), ["json", "status", "owner"])
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
        """The record as the desk sees it: the stored json with the hash's live status
        and owner (the json keeps what the processors sent)."""
        body, status, owner = row
        if body is None:
            return None  # removed between ZRANGE and HMGET
        try:
            record = decode_record(body)
        except PermanentError as exc:
            log.warning("feed_item_unreadable", feedback_id=record_id, error=str(exc))
            return None
        return dataclasses.replace(
            record,
            status=_STATUS.get((status or b"").decode(), record.status),
            owner=(owner or b"").decode(),
        )

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


def _matches(record: FeedbackRecord, query: FeedQuery) -> bool:
    return (
        (query.urgency is None or record.urgency == query.urgency)
        and (query.channel is None or record.channel == query.channel)
        and (query.category is None or record.category == query.category)
    )
