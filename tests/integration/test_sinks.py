"""The sinks against real Redis, PostgreSQL and SQLite files.

Feed tests run on RedisFeed and SqliteFeed, store tests on PostgreSQL and SQLite, so
each behaviour is proved on both backends: ordering, idempotent redelivery, desk
state kept across updates, sizes, round trips, migrations, retention purge.
Each test gets its own Redis key prefix or PostgreSQL schema, removed afterwards.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiosqlite
import asyncpg
import pytest
import redis.asyncio as aioredis

from ingest.abc import CursorStore, Feed, FeedQuery
from ingest.codec import decode_record
from ingest.errors import TransientError
from ingest.model import FeedbackRecord, Reason, Sentiment, Turn
from sinks.cursor_store import RedisCursorStore, SqliteCursorStore
from sinks.redis_feed import RedisFeed
from sinks.sql_store import SqlStore
from sinks.sqlite_feed import SqliteFeed
from tests.pipeline_helpers import drop_redis_prefix

pytestmark = pytest.mark.integration

BASE = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)


def make_record(n: int, **changes: Any) -> FeedbackRecord:
    """A record with every field set to a non-default value, so a round trip that
    drops or mangles any field fails."""
    received = BASE + timedelta(minutes=n)
    record = FeedbackRecord(
        id=f"app_review-{n:05d}",
        channel="app_review",
        text=f"转账失败但是扣款了，卡号 **** 请尽快处理 #{n}",
        source="bank-app-ios",
        native_id=f"review-{n}",
        received_at=received,
        ingested_at=received + timedelta(seconds=3),
        author="nick***",
        turns=(
            Turn("customer", "我的卡被冻结了", 0, 1500, 0.7, -0.4),
            Turn("agent", "请稍等", 1600, 2100),
        ),
        rating=2,
        lang="zh",
        meta={"store": "app_store", "app_version": "8.1.0", "nested": {"k": [1, 2.5, None]}},
        raw_ref=f"file:///raw/{n}.json",
        text_masked=f"转账失败但是扣款了，卡号 **** 请尽快处理 #{n}",
        customer_ref=f"cref-{n % 7}",
        kind="complaint",
        sentiment=Sentiment(snownlp=0.12345678901234, score=0.2, label="negative"),
        urgency="general",
        category="service",
        business="payments",
        reasons=(Reason("keyword", "转账失败", 0.8), Reason("rating", "2 stars", 0.3)),
        due_at=received + timedelta(hours=72),
        status="open",
        owner="",
        repeat_count=1,
        pii_found=("card", "mobile"),
        processed_at=received + timedelta(seconds=4),
    )
    return dataclasses.replace(record, **changes)


# --- fixtures: one isolated backend per test -----------------------------------


@pytest.fixture
async def redis_prefix(redis_url: str, unique: str) -> AsyncIterator[str]:
    prefix = f"test-sinks:{unique}"
    yield prefix
    await drop_redis_prefix(redis_url, prefix)


@pytest.fixture
async def pg_schema_url(pg_url: str, unique: str) -> AsyncIterator[str]:
    """A fresh schema, selected through the URL's search_path like an operator would."""
    schema = f"test_sinks_{unique}"
    admin = await asyncpg.connect(pg_url)
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    yield f"{pg_url}{'&' if '?' in pg_url else '?'}search_path={schema}"
    await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
    await admin.close()


@dataclasses.dataclass
class FeedHarness:
    """A feed plus direct access to its backend, to act as the desk would and to
    read what live consumers see."""

    feed: Feed
    events: Callable[[], Awaitable[list[tuple[str, str, str]]]]
    """(type, id, urgency) in order"""
    claim: Callable[[str, str], Awaitable[None]]
    """Mark an item claimed by an agent, bypassing the sink."""
    desk_state: Callable[[str], Awaitable[tuple[str, str]]]
    """(status, owner) as stored"""
    stored: Callable[[str], Awaitable[FeedbackRecord]]
    """The record as stored in the backend's json"""
    close_backend: Callable[[], Awaitable[None]]


async def _redis_harness(url: str, prefix: str, events_maxlen: int) -> FeedHarness:
    feed = RedisFeed(url, prefix=prefix, events_maxlen=events_maxlen)
    client = aioredis.Redis.from_url(url)

    async def events() -> list[tuple[str, str, str]]:
        entries = await client.xrange(f"{prefix}:events")
        return [
            (f[b"type"].decode(), f[b"id"].decode(), f[b"urgency"].decode()) for _, f in entries
        ]

    async def claim(record_id: str, owner: str) -> None:
        lease = datetime.now(UTC).timestamp() + 300
        async with client.pipeline(transaction=True) as pipe:
            pipe.hset(f"{prefix}:rec:{record_id}", mapping={"status": "claimed", "owner": owner})
            pipe.zrem(f"{prefix}:feed", record_id)
            pipe.zadd(f"{prefix}:claimed", {record_id: lease})
            await pipe.execute()

    async def desk_state(record_id: str) -> tuple[str, str]:
        status, owner = await client.hmget(f"{prefix}:rec:{record_id}", ["status", "owner"])
        return status.decode(), owner.decode()

    async def stored(record_id: str) -> FeedbackRecord:
        return decode_record(await client.hget(f"{prefix}:rec:{record_id}", "json"))

    return FeedHarness(feed, events, claim, desk_state, stored, client.aclose)


async def _sqlite_harness(path: str, events_maxlen: int) -> FeedHarness:
    feed = SqliteFeed(path, events_maxlen=events_maxlen)
    await feed.start()
    conn = await aiosqlite.connect(path)

    async def events() -> list[tuple[str, str, str]]:
        async with conn.execute("SELECT type, id, urgency FROM feed_events ORDER BY seq") as cur:
            return [(row[0], row[1], row[2]) for row in await cur.fetchall()]

    async def claim(record_id: str, owner: str) -> None:
        await conn.execute(
            "UPDATE feed_items SET status = 'claimed', owner = ? WHERE id = ?", (owner, record_id)
        )
        await conn.commit()

    async def desk_state(record_id: str) -> tuple[str, str]:
        async with conn.execute(
            "SELECT status, owner FROM feed_items WHERE id = ?", (record_id,)
        ) as cur:
            row = await cur.fetchone()
        assert row is not None
        return row[0], row[1]

    async def stored(record_id: str) -> FeedbackRecord:
        async with conn.execute("SELECT json FROM feed_items WHERE id = ?", (record_id,)) as cur:
            row = await cur.fetchone()
        assert row is not None
        return decode_record(row[0].encode())

    return FeedHarness(feed, events, claim, desk_state, stored, conn.close)


@pytest.fixture(params=["redis", "sqlite"])
def feed_backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str, str]:
    """(kind, url or path, key prefix). Resolved here, outside the event loop, so the
    Redis variant is skipped (or fails in CI) when Redis is missing without touching
    the SQLite variant."""
    if request.param == "redis":
        return (
            "redis",
            request.getfixturevalue("redis_url"),
            request.getfixturevalue("redis_prefix"),
        )
    return "sqlite", str(tmp_path / "feed.db"), ""


@pytest.fixture
async def make_feed(
    feed_backend: tuple[str, str, str],
) -> AsyncIterator[Callable[..., Awaitable[FeedHarness]]]:
    """A factory, so a test can choose events_maxlen."""
    kind, location, prefix = feed_backend
    made: list[FeedHarness] = []

    async def factory(events_maxlen: int = 100_000) -> FeedHarness:
        if kind == "redis":
            harness = await _redis_harness(location, prefix, events_maxlen)
        else:
            harness = await _sqlite_harness(location, events_maxlen)
        made.append(harness)
        return harness

    yield factory
    for harness in made:
        await harness.feed.close()
        await harness.close_backend()


# --- feed ------------------------------------------------------------------------


async def test_feed_orders_urgent_before_important_before_general_then_by_deadline(
    make_feed: Callable[..., Awaitable[FeedHarness]],
) -> None:
    h = await make_feed()
    due = {  # id → (urgency, hours until due; None = no deadline)
        1: ("general", 1),
        2: ("urgent", 20),
        3: ("important", 2),
        4: ("urgent", 5),
        5: ("general", 30),
        6: ("urgent", None),
        7: ("important", 1),
    }
    records = [
        make_record(
            n,
            urgency=level,
            due_at=None if hours is None else BASE + timedelta(hours=hours),
        )
        for n, (level, hours) in due.items()
    ]
    await h.feed.write(records)

    top = await h.feed.top(FeedQuery(limit=10))

    assert [r.id for r in top] == [make_record(n).id for n in (4, 2, 6, 7, 3, 1, 5)]
    assert [r.id for r in await h.feed.top(FeedQuery(limit=2))] == [
        make_record(4).id,
        make_record(2).id,
    ]


async def test_feed_top_filters_by_level_channel_and_category(
    make_feed: Callable[..., Awaitable[FeedHarness]],
) -> None:
    h = await make_feed()
    await h.feed.write(
        [
            make_record(1, urgency="urgent", channel="wechat", category="product"),
            make_record(2, urgency="urgent", channel="email", category="service"),
            make_record(3, urgency="general", channel="wechat", category="service"),
            make_record(4, urgency="important", channel="wechat", category="service"),
        ]
    )

    def ids(records: list[FeedbackRecord]) -> list[int]:
        return [int(r.id.rsplit("-", 1)[1]) for r in records]

    assert ids(await h.feed.top(FeedQuery(urgency="urgent"))) == [1, 2]
    assert ids(await h.feed.top(FeedQuery(channel="wechat"))) == [1, 4, 3]
    assert ids(await h.feed.top(FeedQuery(category="service"))) == [2, 4, 3]
    assert ids(await h.feed.top(FeedQuery(channel="wechat", category="service"))) == [4, 3]
    assert ids(await h.feed.top(FeedQuery(channel="wechat", limit=1))) == [1]
    assert await h.feed.top(FeedQuery(channel="phone")) == []


async def test_feed_redelivery_three_times_keeps_100_items_and_one_new_event_each(
    make_feed: Callable[..., Awaitable[FeedHarness]],
) -> None:
    h = await make_feed()
    records = [
        make_record(n, urgency=("urgent", "important", "general")[n % 3]) for n in range(100)
    ]

    await h.feed.write(records)
    await h.feed.write(records)
    await h.feed.write(records[:10] * 2)  # the same record twice in one batch
    await h.feed.write(list(reversed(records[:50])))
    await h.feed.write(records[50:])
    # a re-poll and re-run of the chain: new ingest/processing times, same content
    await h.feed.write(
        [
            dataclasses.replace(
                r,
                ingested_at=r.ingested_at + timedelta(hours=1),
                processed_at=r.processed_at + timedelta(hours=1),
            )
            for r in records
        ]
    )

    top = await h.feed.top(FeedQuery(limit=1000))
    assert sorted(r.id for r in top) == sorted(r.id for r in records)
    assert sum((await h.feed.size()).values()) == 100
    events = await h.events()
    assert [e[0] for e in events] == ["new"] * 100
    assert sorted(e[1] for e in events) == sorted(r.id for r in records)


async def test_feed_update_keeps_desk_status_and_owner(
    make_feed: Callable[..., Awaitable[FeedHarness]],
) -> None:
    h = await make_feed()
    claimed, still_open = make_record(1), make_record(2)
    await h.feed.write([claimed, still_open])
    await h.claim(claimed.id, "agent-7")

    reclassified = [
        dataclasses.replace(claimed, urgency="urgent", text_masked="升级：要向银保监会投诉"),
        dataclasses.replace(still_open, urgency="urgent"),
    ]
    await h.feed.write(reclassified)

    assert await h.desk_state(claimed.id) == ("claimed", "agent-7")
    assert (await h.stored(claimed.id)).text_masked == "升级：要向银保监会投诉"
    assert (await h.stored(claimed.id)).urgency == "urgent"
    top = await h.feed.top(FeedQuery())
    assert [r.id for r in top] == [still_open.id]  # claimed items are not handed out again
    assert top[0].urgency == "urgent"
    assert await h.feed.size() == {"urgent": 1, "important": 0, "general": 0}
    assert await h.events() == [
        ("new", claimed.id, "general"),
        ("new", still_open.id, "general"),
        ("updated", claimed.id, "urgent"),
        ("updated", still_open.id, "urgent"),
    ]

    await h.feed.write(reclassified)  # the same new version again: nothing to say
    assert len(await h.events()) == 4


async def test_feed_top_returns_the_record_as_written(
    make_feed: Callable[..., Awaitable[FeedHarness]],
) -> None:
    h = await make_feed()
    await h.feed.write([make_record(1, urgency="urgent")])
    [item] = await h.feed.top(FeedQuery())
    assert item == make_record(1, urgency="urgent")


async def test_feed_size_counts_open_items_per_level(
    make_feed: Callable[..., Awaitable[FeedHarness]],
) -> None:
    h = await make_feed()
    assert await h.feed.size() == {"urgent": 0, "important": 0, "general": 0}
    levels = ["urgent"] * 3 + ["important"] * 5 + ["general"] * 7
    await h.feed.write([make_record(n, urgency=level) for n, level in enumerate(levels)])
    await h.claim(make_record(0).id, "agent-1")

    assert await h.feed.size() == {"urgent": 2, "important": 5, "general": 7}


async def test_feed_events_are_capped(make_feed: Callable[..., Awaitable[FeedHarness]]) -> None:
    h = await make_feed(events_maxlen=100)
    await h.feed.write([make_record(n) for n in range(1000)])

    kept = len(await h.events())
    # Redis trims with MAXLEN ~ (whole stream nodes), SQLite exactly
    assert 100 <= kept <= 300
    assert sum((await h.feed.size()).values()) == 1000


async def test_feed_ping(make_feed: Callable[..., Awaitable[FeedHarness]]) -> None:
    h = await make_feed()
    await h.feed.ping()


async def test_redis_feed_keeps_the_desk_contract(redis_url: str, redis_prefix: str) -> None:
    """Key names, hash fields, score formula and stream fields the desk tools read."""
    record = make_record(1, urgency="important", due_at=datetime(2025, 3, 5, tzinfo=UTC))
    feed = RedisFeed(redis_url, prefix=redis_prefix)
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        await feed.write([record])
        stored = await client.hgetall(f"{redis_prefix}:rec:{record.id}")
        score = await client.zscore(f"{redis_prefix}:feed", record.id)
        [(_, event)] = await client.xrange(f"{redis_prefix}:events")
    finally:
        await feed.close()
        await client.aclose()

    assert decode_record(stored["json"].encode()) == record
    assert stored["urgency"] == "important"
    assert stored["status"] == "open"
    assert stored["owner"] == ""
    assert datetime.fromisoformat(stored["due_at"]) == record.due_at
    assert datetime.fromisoformat(stored["updated_at"]).tzinfo is not None
    assert score == 1 * 1e10 + datetime(2025, 3, 5, tzinfo=UTC).timestamp()
    assert event == {"type": "new", "id": record.id, "urgency": "important"}


async def test_redis_feed_down_is_transient_and_not_fatal_at_start() -> None:
    feed = RedisFeed("redis://127.0.0.1:1/0")
    try:
        await feed.start()
        with pytest.raises(TransientError):
            await feed.top(FeedQuery())
        with pytest.raises(TransientError):
            await feed.ping()
        with pytest.raises(TransientError):
            await feed.write([make_record(1)])
    finally:
        await feed.close()


# --- store -----------------------------------------------------------------------


@dataclasses.dataclass
class StoreHarness:
    url: str
    stores: list[SqlStore]
    sql: Callable[..., Awaitable[list[tuple[Any, ...]]]]
    """Raw SQL on a separate connection (`?` placeholders), as an operator or the desk would."""

    async def open(self) -> SqlStore:
        store = SqlStore(self.url)
        await store.start()
        self.stores.append(store)
        return store


@pytest.fixture(params=["postgresql", "sqlite"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Resolved outside the event loop, so the PostgreSQL variant alone is skipped
    (or fails in CI) when PostgreSQL is missing."""
    if request.param == "postgresql":
        url: str = request.getfixturevalue("pg_schema_url")
        return url
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture
async def store_env(store_url: str) -> AsyncIterator[StoreHarness]:
    if store_url.startswith("postgresql"):
        conn = await asyncpg.connect(store_url)

        async def raw_sql(sql: str, *args: Any) -> list[tuple[Any, ...]]:
            parts = sql.split("?")
            numbered = "".join(f"{p}${i}" for i, p in enumerate(parts[:-1], 1)) + parts[-1]
            return [tuple(row) for row in await conn.fetch(numbered, *args)]

        close = conn.close
    else:
        lite = await aiosqlite.connect(store_url.removeprefix("sqlite:///"))

        async def raw_sql(sql: str, *args: Any) -> list[tuple[Any, ...]]:
            async with lite.execute(sql, args) as cur:
                rows = [tuple(row) for row in await cur.fetchall()]
            await lite.commit()
            return rows

        close = lite.close
    harness = StoreHarness(store_url, [], raw_sql)
    yield harness
    for store in harness.stores:
        await store.close()
    await close()


async def test_store_round_trip_keeps_every_field(store_env: StoreHarness) -> None:
    store = await store_env.open()
    rich = make_record(1)
    sparse = make_record(
        2, sentiment=None, due_at=None, rating=None, turns=(), meta={}, reasons=(), pii_found=()
    )
    east8 = make_record(
        3, received_at=datetime(2025, 3, 3, 16, 0, tzinfo=timezone(timedelta(hours=8)))
    )
    await store.write([rich, sparse, east8])

    assert await store.get(rich.id) == rich
    assert await store.get(sparse.id) == sparse
    assert await store.get(east8.id) == east8
    assert await store.get("no-such-id") is None
    assert await store.count() == 3


async def test_store_redelivery_three_times_adds_no_rows_and_no_audit(
    store_env: StoreHarness,
) -> None:
    store = await store_env.open()
    records = [make_record(n) for n in range(100)]

    for _ in range(3):
        await store.write(records)
    await store.write(records[:10] * 2)  # the same record twice in one batch
    await store.write(
        [dataclasses.replace(r, processed_at=r.processed_at + timedelta(hours=2)) for r in records]
    )

    assert await store.count() == 100
    [(audit_rows,)] = await store_env.sql("SELECT count(*) FROM feedback_audit")
    assert audit_rows == 100
    trail = await store.audit(records[42].id)
    assert [(e["action"], e["actor"], e["record_id"]) for e in trail] == [
        ("ingested", "sql_store", records[42].id)
    ]
    assert trail[0]["detail"] == {
        "version": 1,
        "urgency": "general",
        "kind": "complaint",
        "category": "service",
    }
    assert trail[0]["at"].tzinfo is not None
    assert await store.version(records[42].id) == 1


async def test_store_reclassification_bumps_version_and_is_audited_once(
    store_env: StoreHarness,
) -> None:
    store = await store_env.open()
    first = make_record(1)
    second = dataclasses.replace(first, urgency="urgent", reasons=(Reason("regulator", "12378"),))
    await store.write([first])
    await store.write([second])
    await store.write([second])

    assert await store.get(first.id) == second
    assert await store.version(first.id) == 2
    assert [
        (e["action"], e["detail"]["version"], e["detail"]["urgency"])
        for e in await store.audit(first.id)
    ] == [
        ("ingested", 1, "general"),
        ("reclassified", 2, "urgent"),
    ]


async def test_store_update_keeps_desk_status_and_owner(store_env: StoreHarness) -> None:
    store = await store_env.open()
    record = make_record(1)
    await store.write([record])
    await store_env.sql(
        "UPDATE feedback_records SET status = ?, owner = ? WHERE id = ?",
        "claimed",
        "agent-7",
        record.id,
    )

    await store.write([dataclasses.replace(record, urgency="important", repeat_count=2)])

    stored = await store.get(record.id)
    assert stored is not None
    assert (stored.status, stored.owner) == ("claimed", "agent-7")
    assert (stored.urgency, stored.repeat_count) == ("important", 2)


async def test_store_migrations_run_once(store_env: StoreHarness) -> None:
    first = await store_env.open()
    assert first.applied_migrations == [1, 2, 3]
    await first.write([make_record(1)])

    second = await store_env.open()  # a restart, or a second worker
    assert second.applied_migrations == []
    assert await second.migrate() == []
    assert await store_env.sql("SELECT version FROM schema_migrations ORDER BY version") == [
        (1,),
        (2,),
        (3,),
    ]
    assert await second.get(make_record(1).id) == make_record(1)


async def test_store_purge_deletes_old_records_and_audits_the_count(
    store_env: StoreHarness,
) -> None:
    store = await store_env.open()
    old = [make_record(n, received_at=datetime(2019, 5, 1, tzinfo=UTC)) for n in range(3)]
    recent = make_record(9, received_at=datetime.now(UTC) - timedelta(days=30))
    await store.write([*old, recent])

    with pytest.raises(ValueError, match="3 years"):
        await store.purge_older_than(datetime.now(UTC) - timedelta(days=365))
    assert await store.count() == 4

    purged = await store.purge_older_than(datetime(2021, 1, 1, tzinfo=UTC))

    assert purged == 3
    assert await store.count() == 1
    assert await store.get(old[0].id) is None
    assert await store.get(recent.id) == recent
    rows = await store_env.sql(
        "SELECT actor, record_id, detail FROM feedback_audit WHERE action = ?", "purged"
    )
    assert len(rows) == 1
    actor, record_id, detail = rows[0]
    assert (actor, record_id) == ("sql_store", None)
    assert '"count": 3' in detail or '"count":3' in detail
    # the trail of a purged record outlives it
    assert [e["action"] for e in await store.audit(old[0].id)] == ["ingested"]


async def test_store_audit_is_append_only(store_env: StoreHarness) -> None:
    store = await store_env.open()
    record = make_record(1)
    await store.write([record])
    await store.add_audit("agent-7", "viewed_contact", record.id, {"field": "author"})

    assert [(e["actor"], e["action"], e["detail"]) for e in await store.audit(record.id)][1:] == [
        ("agent-7", "viewed_contact", {"field": "author"})
    ]
    with pytest.raises(Exception, match="append-only"):
        await store_env.sql("UPDATE feedback_audit SET actor = ?", "someone-else")
    with pytest.raises(Exception, match="append-only"):
        await store_env.sql("DELETE FROM feedback_audit")
    assert len(await store.audit(record.id)) == 2


async def test_store_keeps_records_with_nul_characters(store_env: StoreHarness) -> None:
    """PostgreSQL text/jsonb cannot hold U+0000: it is stored as U+FFFD rather than
    failing the whole batch; SQLite keeps it as is."""
    store = await store_env.open()
    record = make_record(1, text="扣款\x00失败", meta={"subject": "re:\x00"})
    await store.write([record])

    stored = await store.get(record.id)

    if store.dialect == "postgresql":
        expected = dataclasses.replace(record, text="扣款\ufffd失败", meta={"subject": "re:\ufffd"})
    else:
        expected = record
    assert stored == expected


async def test_store_ping(store_env: StoreHarness) -> None:
    store = await store_env.open()
    await store.ping()


async def test_store_database_down_is_transient_and_not_fatal_at_start() -> None:
    store = SqlStore("postgresql://postgres@127.0.0.1:1/test")
    try:
        await store.start()  # logs; the worker keeps running
        with pytest.raises(TransientError):
            await store.write([make_record(1)])
        with pytest.raises(TransientError):
            await store.ping()
    finally:
        await store.close()


# --- cursor stores ---------------------------------------------------------------


@pytest.fixture(params=["redis", "sqlite"])
def make_cursors(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], CursorStore]:
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("redis_prefix")
        return lambda: RedisCursorStore(url, prefix=prefix)
    return lambda: SqliteCursorStore(str(tmp_path / "cursors.db"))


async def test_cursor_store_round_trip_survives_reopen(
    make_cursors: Callable[[], CursorStore],
) -> None:
    cursors = make_cursors()
    try:
        assert await cursors.load("imap_main") is None
        await cursors.save("imap_main", "uidvalidity=7;uid=41")
        await cursors.save("imap_main", "uidvalidity=7;uid=42")
        await cursors.save("wx_main", "2025-03-03T08:00:00+00:00")
        assert await cursors.load("imap_main") == "uidvalidity=7;uid=42"
    finally:
        await cursors.close()

    reopened = make_cursors()
    try:
        assert await reopened.load("imap_main") == "uidvalidity=7;uid=42"
        assert await reopened.load("wx_main") == "2025-03-03T08:00:00+00:00"
        assert await reopened.load("unknown") is None
    finally:
        await reopened.close()
