"""The desk's part of the SQL store on PostgreSQL and SQLite: complaint outcomes
(resolution, satisfaction, follow-up) each with its audit row, a customer's history
across channels, audited views of contact data, the streaming export, and the
upgrade of a store made before migration 3."""

# ruff: noqa: F811 - the store fixtures are imported from test_sinks and used as parameters

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta

import pytest

from sinks import sql_store
from sinks.sql_desk import EXPORT_PAGE, Outcome
from sinks.sql_store import SqlStore

# The store fixtures of the sink tests (a PostgreSQL schema or a SQLite file per test);
# imported so pytest finds them here too.
from tests.integration.test_sinks import (  # noqa: F401
    StoreHarness,
    make_record,
    pg_schema_url,
    store_env,
    store_url,
)

pytestmark = pytest.mark.integration


async def test_resolution_is_stored_with_status_owner_and_audited(
    store_env: StoreHarness,
) -> None:
    store = await store_env.open()
    record = make_record(1)
    await store.write([record])
    at = datetime(2025, 3, 4, 9, 30, tzinfo=UTC)

    await store.record_resolution(record.id, "refunded", "退款已原路退回", "agent-7", at)

    assert await store.outcome(record.id) == Outcome(
        resolution_code="refunded",
        resolution_note="退款已原路退回",
        resolved_by="agent-7",
        resolved_at=at,
    )
    stored = await store.get(record.id)
    assert stored is not None and (stored.status, stored.owner) == ("resolved", "agent-7")
    [entry] = [e for e in await store.audit(record.id) if e["action"] == "resolved"]
    assert entry["actor"] == "agent-7"
    assert entry["detail"] == {
        "code": "refunded",
        "note": "退款已原路退回",
        "resolved_at": at.isoformat(),
    }
    # the pipeline re-sending the record keeps the desk's outcome and status
    await store.write([dataclasses.replace(record, urgency="urgent")])
    assert (await store.outcome(record.id)).resolution_code == "refunded"  # type: ignore[union-attr]
    assert (await store.get(record.id)).status == "resolved"  # type: ignore[union-attr]


async def test_satisfaction_and_follow_up_are_recorded_and_audited(
    store_env: StoreHarness,
) -> None:
    store = await store_env.open()
    record = make_record(1)
    await store.write([record])

    await store.record_satisfaction(record.id, 4, "survey-bot")
    await store.record_satisfaction(record.id, 5, "agent-7")  # a corrected answer
    await store.schedule_follow_up(record.id, date(2025, 3, 10), "agent-7")

    outcome = await store.outcome(record.id)
    assert outcome is not None
    assert (outcome.satisfaction, outcome.follow_up_on) == (5, date(2025, 3, 10))
    assert outcome.resolved_at is None
    assert [(e["actor"], e["action"], e["detail"]) for e in await store.audit(record.id)][1:] == [
        ("survey-bot", "satisfaction_recorded", {"satisfaction": 4}),
        ("agent-7", "satisfaction_recorded", {"satisfaction": 5}),
        ("agent-7", "follow_up_scheduled", {"follow_up_on": "2025-03-10"}),
    ]
    for bad in (0, 6, True):
        with pytest.raises(ValueError, match="1 to 5"):
            await store.record_satisfaction(record.id, bad, "agent-7")
    with pytest.raises(Exception, match="satisfaction"):  # the database refuses it too
        await store_env.sql("UPDATE feedback_records SET satisfaction = ?", 9)
    assert (await store.outcome(record.id)).satisfaction == 5  # type: ignore[union-attr]


async def test_outcome_writes_to_an_unknown_record_raise_key_error_and_audit_nothing(
    store_env: StoreHarness,
) -> None:
    store = await store_env.open()
    with pytest.raises(KeyError):
        await store.record_resolution("nope", "fixed", "", "agent-7")
    with pytest.raises(KeyError):
        await store.record_satisfaction("nope", 3, "agent-7")
    with pytest.raises(KeyError):
        await store.schedule_follow_up("nope", date(2025, 1, 1), "agent-7")
    assert await store.outcome("nope") is None
    assert await store_env.sql("SELECT count(*) FROM feedback_audit") == [(0,)]


async def test_customer_records_lists_the_other_records_newest_first(
    store_env: StoreHarness,
) -> None:
    store = await store_env.open()
    wechat = make_record(1, customer_ref="cust-a", channel="wechat")
    call = make_record(2, customer_ref="cust-a", channel="phone")
    review = make_record(3, customer_ref="cust-a")
    other = make_record(4, customer_ref="cust-b")
    anonymous = [make_record(5, customer_ref=""), make_record(6, customer_ref="")]
    await store.write([wechat, call, review, other, *anonymous])

    history = await store.customer_records("cust-a", exclude_id=call.id)

    assert history == [review, wechat]
    assert [r.id for r in await store.customer_records("cust-a")] == [review.id, call.id, wechat.id]
    assert [r.id for r in await store.customer_records("cust-a", limit=1)] == [review.id]
    assert await store.customer_records("") == []
    assert await store.customer_records("cust-z") == []


async def test_views_of_contact_data_are_audited(store_env: StoreHarness) -> None:
    store = await store_env.open()
    record = make_record(1)
    await store.write([record])

    await store.record_contact_view("agent-7", record.id, ["author"], reason="回访")

    [entry] = [e for e in await store.audit(record.id) if e["action"] == "viewed_contact"]
    assert (entry["actor"], entry["detail"]) == (
        "agent-7",
        {"fields": ["author"], "reason": "回访"},
    )


async def test_export_streams_every_record_in_pages_masked_unless_asked(
    store_env: StoreHarness,
) -> None:
    store = await store_env.open()
    base = datetime(2025, 1, 1, tzinfo=UTC)
    count = EXPORT_PAGE * 2 + 5  # crosses page boundaries; equal times test the keyset
    records = [make_record(n, received_at=base + timedelta(minutes=n // 3)) for n in range(count)]
    for start in range(0, count, 500):
        await store.write(records[start : start + 500])
    await store.record_satisfaction(records[7].id, 2, "agent-7")

    rows = [row async for row in store.export_rows()]

    assert [r["id"] for r in rows] == [r.id for r in records]
    assert "meta" not in rows[0] and "raw_ref" not in rows[0]
    assert rows[0]["text"] == records[0].text and rows[0]["author"] == "nick***"
    assert rows[0]["turns"][0]["text"] == "我的卡被冻结了"
    assert rows[0]["received_at"] == base.isoformat()
    assert rows[7]["satisfaction"] == 2 and rows[8]["satisfaction"] is None

    since = base + timedelta(minutes=600)
    recent = [row async for row in store.export_rows(since, unmasked=True)]
    assert [r["id"] for r in recent] == [r.id for r in records if r.received_at >= since]
    assert recent[0]["meta"] == records[1800].meta and recent[0]["raw_ref"]


async def test_a_store_made_before_migration_3_is_upgraded_in_place(
    store_env: StoreHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = sql_store.load_migrations
    monkeypatch.setattr(sql_store, "load_migrations", lambda d: real(d)[:2])
    old = await store_env.open()
    assert old.applied_migrations == [1, 2]
    await old.write([make_record(1)])
    await old.close()
    monkeypatch.setattr(sql_store, "load_migrations", real)

    upgraded = SqlStore(store_env.url)
    store_env.stores.append(upgraded)
    await upgraded.start()

    assert upgraded.applied_migrations == [3]
    assert await upgraded.get(make_record(1).id) == make_record(1)
    assert await upgraded.outcome(make_record(1).id) == Outcome()
    await upgraded.record_satisfaction(make_record(1).id, 5, "agent-7")


async def test_desk_reads_and_writes_with_nul_characters_never_fail_the_database(
    store_env: StoreHarness,
) -> None:
    """Any client can put %00 in a path id or U+0000 in a resolution note. PostgreSQL text
    cannot hold it: before, every such read or write was a database error (a 500 for a
    viewer's GET, and a resolution lost after the feed had already closed the item).
    Ids and text are taken as the store writes them (U+FFFD on PostgreSQL)."""
    store = await store_env.open()
    record = make_record(1, customer_ref="cust\x00a")
    await store.write([record])
    nul = "\ufffd" if store.dialect == "postgresql" else "\x00"

    assert await store.get("sample\x00") is None
    assert await store.outcome("sample\x00") is None
    assert await store.audit("sample\x00") == []
    assert [r.id for r in await store.customer_records("cust\x00a")] == [record.id]
    with pytest.raises(KeyError):
        await store.record_satisfaction("sample\x00", 3, "agent-7")

    await store.record_resolution(record.id, "done\x00", "退款\x00完成", "agent\x007")
    await store.record_contact_view("agent-7", record.id, ["author"], reason="回访\x00")

    outcome = await store.outcome(record.id)
    assert outcome is not None
    assert (outcome.resolution_code, outcome.resolution_note, outcome.resolved_by) == (
        f"done{nul}",
        f"退款{nul}完成",
        f"agent{nul}7",
    )
    actions = {e["action"]: e for e in await store.audit(record.id)}
    assert actions["viewed_contact"]["detail"]["reason"] == f"回访{nul}"
    assert actions["resolved"]["actor"] == f"agent{nul}7"
