"""The desk's operations on the feed, proved on real Redis and on the embedded SQLite
feed with the same tests: exclusive claims under contention (tasks and processes),
lease expiry, SLA breaches marked once, pipeline updates that keep the desk's state,
reassign / escalate / resolve and their refusals, repeat-complaint links, and the
event stream a live consumer reads.
"""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ingest.abc import DeskFeed, FeedQuery
from ingest.errors import Conflict
from ingest.model import FeedbackRecord
from sinks.redis_feed import RedisFeed
from sinks.sqlite_feed import SqliteFeed
from tests.integration.test_sinks import make_record
from tests.pipeline_helpers import drop_redis_prefix

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
MakeFeed = Callable[[], Awaitable[DeskFeed]]


def rec(n: int, *, due_in_hours: float | None = 48, **changes: Any) -> FeedbackRecord:
    """A record due relative to now, with no customer (so nothing links) unless asked."""
    due = None if due_in_hours is None else NOW + timedelta(hours=due_in_hours)
    return make_record(n, **{"due_at": due, "customer_ref": "", "repeat_count": 0, **changes})


@pytest.fixture
async def redis_desk_prefix(redis_url: str, unique: str) -> AsyncIterator[str]:
    prefix = f"test-desk:{unique}"
    yield prefix
    await drop_redis_prefix(redis_url, prefix)


@pytest.fixture(params=["redis", "sqlite"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str, str]:
    """(kind, url or path, prefix), resolved outside the loop so a missing Redis skips
    (or fails in CI) only the Redis variant."""
    if request.param == "redis":
        return (
            "redis",
            request.getfixturevalue("redis_url"),
            request.getfixturevalue("redis_desk_prefix"),
        )
    return "sqlite", str(tmp_path / "feed.db"), ""


def open_feed(kind: str, location: str, prefix: str) -> DeskFeed:
    if kind == "redis":
        return RedisFeed(location, prefix=prefix)
    return SqliteFeed(location)


@pytest.fixture
async def make_feed(backend: tuple[str, str, str]) -> AsyncIterator[MakeFeed]:
    """Each call: one more client of the same feed (its own connection), as another
    desk process would have."""
    made: list[DeskFeed] = []

    async def factory() -> DeskFeed:
        feed = open_feed(*backend)
        await feed.start()
        made.append(feed)
        return feed

    yield factory
    for feed in made:
        await feed.close()


async def event_types(feed: DeskFeed, after: str = "0") -> list[tuple[str, str]]:
    return [(e.type, e.record_id) for e in await feed.events(after=after, count=10_000)]


# --- exclusive claims under contention ---------------------------------------------


async def _drain(feed: DeskFeed, agent: str) -> list[str]:
    got = []
    while (item := await feed.next(agent, lease_secs=300)) is not None:
        assert item.owner == agent and item.status == "claimed"
        got.append(item.record.id)
    return got


async def test_50_concurrent_claimers_take_each_of_200_items_exactly_once(
    make_feed: MakeFeed,
) -> None:
    writer = await make_feed()
    records = [rec(n, urgency=("urgent", "important", "general")[n % 3]) for n in range(200)]
    await writer.write(records)
    claimers = [await make_feed() for _ in range(50)]

    started = time.perf_counter()
    results = await asyncio.gather(*(_drain(feed, f"agent-{i}") for i, feed in enumerate(claimers)))
    elapsed = time.perf_counter() - started

    taken = [record_id for got in results for record_id in got]
    assert Counter(taken).most_common(1)[0][1] == 1  # nobody got an item twice
    assert sorted(taken) == sorted(r.id for r in records)
    for i, got in enumerate(results):
        for record_id in got:
            item = await writer.item(record_id)
            assert item is not None and (item.status, item.owner) == ("claimed", f"agent-{i}")
    assert await writer.size() == {"urgent": 0, "important": 0, "general": 0}
    assert await writer.next("late-agent", 300) is None
    claimed = [e for e in await writer.events(count=10_000) if e.type == "claimed"]
    assert len(claimed) == 200
    print(f"\n{type(writer).__name__}: 200 claims by 50 clients in {elapsed:.3f}s")


def _claim_in_process(
    kind: str, location: str, prefix: str, worker: int, start_at: float
) -> list[str]:
    async def run() -> list[str]:
        feeds = [open_feed(kind, location, prefix) for _ in range(5)]
        # spawned processes start seconds apart on a busy machine: all begin together
        await asyncio.sleep(max(0.0, start_at - time.time()))
        try:
            results = await asyncio.gather(
                *(_drain(feed, f"proc{worker}-task{i}") for i, feed in enumerate(feeds))
            )
        finally:
            for feed in feeds:
                await feed.close()
        return [record_id for got in results for record_id in got]

    return asyncio.run(run())


async def test_claimers_in_4_processes_never_share_an_item(
    make_feed: MakeFeed, backend: tuple[str, str, str]
) -> None:
    writer = await make_feed()
    records = [rec(n) for n in range(200)]
    await writer.write(records)

    context = multiprocessing.get_context("spawn")
    loop = asyncio.get_running_loop()
    with context.Pool(4) as pool:
        results = await loop.run_in_executor(
            None,
            pool.starmap,
            _claim_in_process,
            [(*backend, w, time.time() + 6) for w in range(4)],
        )

    taken = [record_id for got in results for record_id in got]
    assert len(taken) == len(set(taken)) == 200
    assert sum(1 for got in results if got) >= 2  # the processes really competed


# --- leases ---------------------------------------------------------------------------


async def test_expired_lease_returns_the_item_to_the_feed(make_feed: MakeFeed) -> None:
    feed = await make_feed()
    first, second = rec(1, due_in_hours=1), rec(2, due_in_hours=2)
    await feed.write([first, second])
    item = await feed.next("agent-a", lease_secs=60)
    assert item is not None and item.record.id == first.id
    assert item.lease_expires_at is not None
    assert abs((item.lease_expires_at - datetime.now(UTC)).total_seconds() - 60) < 5

    assert (await feed.sweep(datetime.now(UTC))).returned == []
    assert (await feed.item(first.id)).owner == "agent-a"  # type: ignore[union-attr]

    swept = await feed.sweep(datetime.now(UTC) + timedelta(seconds=61))

    assert list(swept.returned) == [first.id]
    back = await feed.item(first.id)
    assert back is not None
    assert (back.status, back.owner, back.lease_expires_at) == ("open", "", None)
    assert [r.id for r in await feed.top(FeedQuery())] == [first.id, second.id]
    [released] = [e for e in await feed.events(count=100) if e.type == "released"]
    assert released.record_id == first.id
    assert released.fields["reason"] == "lease_expired"
    assert released.fields["owner"] == "agent-a"
    with pytest.raises(Conflict):
        await feed.renew(first.id, "agent-a", 60)
    with pytest.raises(Conflict):
        await feed.resolve(first.id, "agent-a", "fixed")
    assert (await feed.sweep(datetime.now(UTC) + timedelta(seconds=61))).returned == []
    again = await feed.next("agent-b", 60)
    assert again is not None and again.record.id == first.id


async def test_renew_extends_the_lease_past_the_sweep(make_feed: MakeFeed) -> None:
    feed = await make_feed()
    await feed.write([rec(1)])
    item = await feed.claim(rec(1).id, "agent-a", lease_secs=60)
    renewed = await feed.renew(rec(1).id, "agent-a", lease_secs=600)

    assert renewed.lease_expires_at is not None and item.lease_expires_at is not None
    assert renewed.lease_expires_at > item.lease_expires_at + timedelta(seconds=500)
    assert (await feed.sweep(datetime.now(UTC) + timedelta(seconds=120))).returned == []
    assert (await feed.item(rec(1).id)).owner == "agent-a"  # type: ignore[union-attr]


async def test_a_lease_run_out_before_the_sweep_can_be_taken_over(make_feed: MakeFeed) -> None:
    feed = await make_feed()
    await feed.write([rec(1)])
    await feed.claim(rec(1).id, "agent-a", lease_secs=1)
    with pytest.raises(Conflict, match="held by agent-a"):
        await feed.claim(rec(1).id, "agent-b", lease_secs=60)
    await asyncio.sleep(1.1)

    taken = await feed.claim(rec(1).id, "agent-b", lease_secs=60)

    assert taken.owner == "agent-b"
    types = [(e.type, e.fields.get("owner")) for e in await feed.events(count=100)]
    assert types[-2:] == [("released", "agent-a"), ("claimed", "agent-b")]


# --- SLA breaches ---------------------------------------------------------------------


async def test_sweep_marks_breaches_once_and_emits_one_event_each(make_feed: MakeFeed) -> None:
    feed = await make_feed()
    late_open, late_claimed, late_resolved = (
        rec(1, due_in_hours=-2),
        rec(2, due_in_hours=-1),
        rec(3, due_in_hours=-3),
    )
    on_time, no_deadline = rec(4, due_in_hours=5), rec(5, due_in_hours=None)
    await feed.write([late_open, late_claimed, late_resolved, on_time, no_deadline])
    await feed.claim(late_claimed.id, "agent-a", 600)
    await feed.claim(late_resolved.id, "agent-a", 600)
    await feed.resolve(late_resolved.id, "agent-a", "refunded")

    first = await feed.sweep(NOW)
    second = await feed.sweep(NOW + timedelta(minutes=1))

    assert sorted(first.breached) == sorted([late_open.id, late_claimed.id])
    assert second.breached == []
    for record_id, breached in [
        (late_open.id, True),
        (late_claimed.id, True),
        (late_resolved.id, False),
        (on_time.id, False),
        (no_deadline.id, False),
    ]:
        assert (await feed.item(record_id)).breached is breached  # type: ignore[union-attr]
    assert (await feed.item(late_claimed.id)).owner == "agent-a"  # type: ignore[union-attr]

    later = await feed.sweep(NOW + timedelta(hours=6))
    assert list(later.breached) == [on_time.id]
    breaches = [e for e in await feed.events(count=100) if e.type == "breached"]
    assert sorted(e.record_id for e in breaches) == sorted(
        [late_open.id, late_claimed.id, on_time.id]
    )
    assert all(e.fields["urgency"] == "general" and e.fields["due_at"] for e in breaches)


async def test_breached_items_come_first_within_their_level_only(make_feed: MakeFeed) -> None:
    """Score stays level_rank * 1e10 + due: a breached item is past due, so it sorts
    before every item of its level that is not, and never before a higher level."""
    feed = await make_feed()
    urgent_on_time = rec(1, urgency="urgent", due_in_hours=10)
    general_on_time = rec(2, urgency="general", due_in_hours=1)
    general_breached = rec(3, urgency="general", due_in_hours=-30)
    important_breached = rec(4, urgency="important", due_in_hours=-1)
    await feed.write([urgent_on_time, general_on_time, general_breached, important_breached])
    assert len((await feed.sweep(NOW)).breached) == 2

    order = [r.id for r in await feed.top(FeedQuery())]
    expected = [urgent_on_time, important_breached, general_breached, general_on_time]
    assert order == [r.id for r in expected]
    picked = [await feed.next(f"a{i}", 60) for i in range(4)]
    assert [p.record.id for p in picked if p] == [r.id for r in expected]


# --- pipeline updates keep the desk's state ---------------------------------------------


async def test_pipeline_updates_keep_status_owner_lease_breach_and_escalation(
    make_feed: MakeFeed,
) -> None:
    feed = await make_feed()
    claimed, escalated, breached, resolved = (
        rec(1),
        rec(2, urgency="general"),
        rec(3, due_in_hours=-1),
        rec(4),
    )
    records = [claimed, escalated, breached, resolved]
    await feed.write(records)
    held = await feed.claim(claimed.id, "agent-a", 600)
    await feed.escalate(escalated.id, "sup", "regulator mentioned")
    await feed.sweep(NOW)
    await feed.claim(resolved.id, "agent-b", 600)
    await feed.resolve(resolved.id, "agent-b", "explained")
    before = {r.id: await feed.item(r.id) for r in records}
    events_before = len(await feed.events(count=1000))

    await feed.write(records)  # redelivery: nothing to say
    await feed.write(records[::-1])
    assert len(await feed.events(count=1000)) == events_before
    assert {r.id: await feed.item(r.id) for r in records} == before

    reclassified = [
        dataclasses.replace(
            r, urgency="important", text=f"改：{r.text}", due_at=NOW + timedelta(hours=30)
        )
        for r in records
    ]
    await feed.write(reclassified)

    after = {r.id: await feed.item(r.id) for r in records}
    c = after[claimed.id]
    assert c is not None and (c.status, c.owner) == ("claimed", "agent-a")
    assert c.lease_expires_at == held.lease_expires_at
    assert c.record.text.startswith("改：") and c.record.urgency == "important"
    e = after[escalated.id]
    assert e is not None and e.escalated and e.record.urgency == "urgent"
    b = after[breached.id]
    assert b is not None and b.breached and b.status == "open"
    r = after[resolved.id]
    assert r is not None and (r.status, r.owner) == ("resolved", "agent-b")
    assert [x.id for x in await feed.top(FeedQuery())] == [escalated.id, breached.id]
    assert await feed.size() == {"urgent": 1, "important": 1, "general": 0}
    updates = [(e.type, e.fields["urgency"]) for e in await feed.events(count=1000)][events_before:]
    assert (
        updates
        == [("updated", "important"), ("updated", "urgent")] + [("updated", "important")] * 2
    )
    # the new deadlines pass: every unresolved item breaches once, `breached` not again
    later = await feed.sweep(NOW + timedelta(hours=40))
    assert sorted(later.breached) == sorted([claimed.id, escalated.id])


# --- reassign, escalate, resolve and what is refused ---------------------------------------


async def test_only_the_holder_may_renew_release_or_resolve(make_feed: MakeFeed) -> None:
    feed = await make_feed()
    item_id = rec(1).id
    await feed.write([rec(1)])
    with pytest.raises(Conflict, match="not claimed by you"):
        await feed.resolve(item_id, "agent-a", "fixed")  # open: claim first
    await feed.claim(item_id, "agent-a", 600)
    again = await feed.claim(item_id, "agent-a", 900)  # a double click renews
    assert again.owner == "agent-a"

    for attempt in (
        feed.claim(item_id, "agent-b", 600),
        feed.renew(item_id, "agent-b", 600),
        feed.release(item_id, "agent-b"),
        feed.resolve(item_id, "agent-b", "fixed"),
    ):
        with pytest.raises(Conflict, match="held by agent-a"):
            await attempt
    assert (await feed.item(item_id)).owner == "agent-a"  # type: ignore[union-attr]

    released = await feed.release(item_id, "agent-a")
    assert (released.status, released.owner) == ("open", "")
    with pytest.raises(Conflict):
        await feed.release(item_id, "agent-a")
    assert [r.id for r in await feed.top(FeedQuery())] == [item_id]


async def test_reassign_moves_the_item_with_a_fresh_lease(make_feed: MakeFeed) -> None:
    feed = await make_feed()
    held, waiting = rec(1), rec(2)
    await feed.write([held, waiting])
    await feed.claim(held.id, "agent-a", 5)

    moved = await feed.reassign(held.id, "agent-b", by="sup-1")
    given = await feed.reassign(waiting.id, "agent-c", by="sup-1")  # open items too

    assert (moved.status, moved.owner) == ("claimed", "agent-b")
    assert moved.lease_expires_at is not None
    assert moved.lease_expires_at > datetime.now(UTC) + timedelta(minutes=10)
    assert (given.status, given.owner) == ("claimed", "agent-c")
    assert await feed.top(FeedQuery()) == []
    with pytest.raises(Conflict):
        await feed.resolve(held.id, "agent-a", "fixed")
    assert (await feed.sweep(datetime.now(UTC) + timedelta(seconds=10))).returned == []
    [event, _] = [e for e in await feed.events(count=100) if e.type == "reassigned"]
    assert (event.record_id, event.fields["owner"], event.fields["from"], event.fields["by"]) == (
        held.id,
        "agent-b",
        "agent-a",
        "sup-1",
    )
    await feed.resolve(held.id, "agent-b", "fixed")


async def test_resolve_closes_the_item_for_good(make_feed: MakeFeed) -> None:
    feed = await make_feed()
    item_id = rec(1).id
    await feed.write([rec(1, urgency="urgent"), rec(2, urgency="urgent")])
    await feed.claim(item_id, "agent-a", 600)

    done = await feed.resolve(item_id, "agent-a", "refunded", note="退款已到账")

    assert (done.status, done.owner, done.lease_expires_at) == ("resolved", "agent-a", None)
    assert [r.id for r in await feed.top(FeedQuery())] == [rec(2).id]
    assert await feed.size() == {"urgent": 1, "important": 0, "general": 0}
    for refused in (
        feed.claim(item_id, "agent-b", 600),
        feed.claim(item_id, "agent-a", 600),
        feed.resolve(item_id, "agent-a", "again"),
        feed.reassign(item_id, "agent-b", "sup"),
        feed.escalate(item_id, "sup", "late"),
        feed.release(item_id, "agent-a"),
    ):
        with pytest.raises(Conflict, match="already resolved"):
            await refused
    assert (await feed.sweep(NOW + timedelta(days=30))).returned == []
    [event] = [e for e in await feed.events(count=100) if e.type == "resolved"]
    assert (event.fields["owner"], event.fields["code"]) == ("agent-a", "refunded")
    nxt = await feed.next("agent-b", 60)
    assert nxt is not None and nxt.record.id == rec(2).id


async def test_operations_on_an_unknown_item_raise_key_error(make_feed: MakeFeed) -> None:
    feed = await make_feed()
    assert await feed.item("no-such-id") is None
    for call in (
        feed.claim("no-such-id", "a", 60),
        feed.renew("no-such-id", "a", 60),
        feed.release("no-such-id", "a"),
        feed.resolve("no-such-id", "a", "x"),
        feed.reassign("no-such-id", "a", "sup"),
        feed.escalate("no-such-id", "sup", "x"),
    ):
        with pytest.raises(KeyError):
            await call
    assert await feed.next("a", 60) is None


async def test_escalate_raises_to_urgent_keeping_deadline_and_owner(make_feed: MakeFeed) -> None:
    feed = await make_feed()
    urgent_later = rec(1, urgency="urgent", due_in_hours=20)
    urgent_sooner = rec(2, urgency="urgent", due_in_hours=2)
    general = rec(3, urgency="general", due_in_hours=10)
    claimed_general = rec(4, urgency="general", due_in_hours=1)
    await feed.write([urgent_later, urgent_sooner, general, claimed_general])
    await feed.claim(claimed_general.id, "agent-a", 600)

    raised = await feed.escalate(general.id, "sup-1", "media exposure threatened")
    kept = await feed.escalate(claimed_general.id, "sup-1", "vip")
    await feed.escalate(general.id, "sup-1", "again")  # already escalated: no-op

    assert raised.escalated and raised.record.urgency == "urgent"
    assert raised.record.due_at == general.due_at
    assert (kept.status, kept.owner, kept.record.urgency) == ("claimed", "agent-a", "urgent")
    order = [r.id for r in await feed.top(FeedQuery())]
    assert order == [urgent_sooner.id, general.id, urgent_later.id]
    assert [r.id for r in await feed.top(FeedQuery(urgency="urgent"))] == order
    assert await feed.size() == {"urgent": 3, "important": 0, "general": 0}
    escalations = [e for e in await feed.events(count=100) if e.type == "escalated"]
    assert [(e.record_id, e.fields["by"], e.fields["reason"]) for e in escalations] == [
        (general.id, "sup-1", "media exposure threatened"),
        (claimed_general.id, "sup-1", "vip"),
    ]
    released = await feed.release(claimed_general.id, "agent-a")  # back in at urgent
    assert released.record.urgency == "urgent"
    assert (await feed.top(FeedQuery()))[0].id == claimed_general.id


# --- repeat complaints -------------------------------------------------------------------


async def test_repeat_complaint_links_to_the_customers_open_item(make_feed: MakeFeed) -> None:
    feed = await make_feed()
    first = rec(1, customer_ref="cust-a", channel="wechat", due_in_hours=20)
    other_customer = rec(2, customer_ref="cust-b")
    anonymous = [rec(3), rec(4)]
    await feed.write([first, other_customer, *anonymous])
    call = rec(5, customer_ref="cust-a", channel="phone", due_in_hours=10)
    review = rec(6, customer_ref="cust-a", due_in_hours=5)
    await feed.write([call])
    await feed.write([review, review])  # a redelivery does not count twice
    await feed.write([call])

    root = await feed.item(first.id)
    assert root is not None and root.record.repeat_count == 2 and root.linked_to == ""
    for repeat in (call, review):
        item = await feed.item(repeat.id)
        assert item is not None and item.linked_to == first.id and item.status == "open"
    for alone in (other_customer, *anonymous):
        item = await feed.item(alone.id)
        assert item is not None and (item.linked_to, item.record.repeat_count) == ("", 0)
    news = [e for e in await feed.events(count=100) if e.type == "new"]
    assert [e.fields.get("linked_to", "") for e in news] == ["", "", "", "", first.id, first.id]

    await feed.claim(first.id, "agent-a", 600)
    await feed.resolve(first.id, "agent-a", "refunded")
    again = rec(7, customer_ref="cust-a")
    await feed.write([again])
    # the first complaint is closed: the newest links to the most pressing open repeat
    assert (await feed.item(again.id)).linked_to == review.id  # type: ignore[union-attr]


# --- the event stream -----------------------------------------------------------------------


async def test_events_come_in_order_and_resume_after_an_id(make_feed: MakeFeed) -> None:
    feed = await make_feed()
    a, b = rec(1, urgency="urgent"), rec(2)
    await feed.write([a, b])
    await feed.claim(a.id, "agent-a", 600)
    await feed.escalate(b.id, "sup", "vip")
    await feed.resolve(a.id, "agent-a", "fixed")

    events = await feed.events()
    assert [(e.type, e.record_id) for e in events] == [
        ("new", a.id),
        ("new", b.id),
        ("claimed", a.id),
        ("escalated", b.id),
        ("resolved", a.id),
    ]
    assert all(e.fields["urgency"] == "urgent" for e in events if e.record_id == a.id)
    assert len({e.event_id for e in events}) == 5
    assert [(e.type, e.record_id) for e in await feed.events(after=events[2].event_id)] == [
        ("escalated", b.id),
        ("resolved", a.id),
    ]
    assert [e.type for e in await feed.events(count=2)] == ["new", "new"]
    assert await feed.events(after=events[-1].event_id) == []
    assert await feed.events(after="$") == []


async def test_events_block_until_something_happens(make_feed: MakeFeed) -> None:
    feed, writer = await make_feed(), await make_feed()
    await writer.write([rec(1)])
    last = (await feed.events())[-1].event_id

    async def later() -> None:
        await asyncio.sleep(0.3)
        await writer.write([rec(2)])

    task = asyncio.create_task(later())
    started = time.perf_counter()
    got = await feed.events(after=last, block_ms=5000)
    waited = time.perf_counter() - started
    await task

    assert [(e.type, e.record_id) for e in got] == [("new", rec(2).id)]
    assert 0.2 < waited < 4
    started = time.perf_counter()
    assert await feed.events(after=got[-1].event_id, block_ms=200) == []
    assert time.perf_counter() - started >= 0.15


async def test_events_after_something_that_is_no_event_id_raise_value_error(
    make_feed: MakeFeed,
) -> None:
    """`after` comes from a client's Last-Event-ID: anything the feed cannot take is a
    ValueError (the desk answers 400), not a Redis ResponseError, an int() error or a
    SQLite OverflowError."""
    feed = await make_feed()
    await feed.write([rec(1)])
    for after in ("abc", "9" * 40, "1-x", "-1-", "\u00b2", "1 2"):
        with pytest.raises(ValueError, match="not an event id"):
            await feed.events(after=after)
    assert [e.type for e in await feed.events(after="0")] == ["new"]
