"""End to end over the real services: transcripts of every format, by signed webhook
and by drop folder, through a running Worker (RabbitMQ, processors, Redis feed,
PostgreSQL store); a re-delivered call stays one unchanged record; a forged or stale
webhook gets 403 and leaves no trace."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest

from connectors.transcripts.signing import sign
from ingest.abc import FeedQuery
from ingest.bus.base import Q_PROCESS, Q_PROCESS_URGENT, Q_SINK_FEED, Q_SINK_STORE
from ingest.model import FeedbackRecord
from ingest.runtime import components
from ingest.settings import Settings
from tests.pipeline_helpers import (
    drop_redis_prefix,
    feed_records,
    running_worker,
    services_settings,
    stored_records,
    wait_until,
)
from tests.unit.test_transcripts import (
    ALIBABA,
    ALIBABA_V2,
    CL_110,
    CL_2022,
    GENERIC,
    SECRET,
    SOURCE,
    doc,
    drop,
    fixture,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
SINK_QUEUES = (Q_SINK_FEED, Q_SINK_STORE)


@dataclass
class Running:
    settings: Settings
    base: str
    inbox: Path


@pytest.fixture
async def running(
    tmp_path: Path, amqp_vhost_url: str, redis_url: str, pg_database: str, unique: str
) -> AsyncIterator[Running]:
    """A whole worker (connectors, processors, sinks, web server) on the real services,
    with two transcript sources: a dual-track hotline (folder + webhook) and a mono
    line whose customer is Alibaba speaker "2" (webhook only)."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    prefix = f"test-{unique}"
    connectors = {
        "calls": {
            "type": "transcripts",
            "source": SOURCE,
            "path": str(inbox),
            "secret": SECRET,
            "settle_secs": 0.0,
            "poll_interval_secs": 0.2,
        },
        "mono": {
            "type": "transcripts",
            "source": "房贷热线",
            "secret": SECRET,
            "format": "alibaba",
            "alibaba_customer_speaker": "2",
        },
    }
    settings = services_settings(
        tmp_path, amqp_vhost_url, redis_url, pg_database, prefix, connectors
    )
    try:
        async with running_worker(settings) as base:
            yield Running(settings, base, inbox)
    finally:
        await drop_redis_prefix(redis_url, prefix)


async def post(
    run: Running, connector: str, body: bytes, *, secret: str = SECRET, age_secs: float = 0
) -> tuple[int, dict[str, Any]]:
    stamp = str(int(time.time() - age_secs))
    headers = {"X-Signature": sign(secret, stamp, body), "X-Signature-Timestamp": stamp}
    async with aiohttp.ClientSession() as http:
        url = f"{run.base}/webhooks/transcripts/{connector}"
        async with http.post(url, data=body, headers=headers) as response:
            text = await response.text()
            return response.status, orjson.loads(text) if text.startswith("{") else {"text": text}


async def in_feed(settings: Settings) -> dict[str, FeedbackRecord]:
    return await feed_records(settings, FeedQuery(limit=100, channel="phone"))


async def sql(url: str, query: str, *args: Any) -> Any:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchrow(query, *args)
    finally:
        await conn.close()


async def test_every_format_by_webhook_and_folder_reaches_feed_and_store(running: Running) -> None:
    run = running
    meta = {"file_name": CL_110, "agent_id": "W0311"}
    wrapped = orjson.dumps({"meta": meta, "transcript": doc(CL_110)})
    answers = [
        await post(run, "calls", fixture(GENERIC)),
        await post(run, "calls", wrapped),
        await post(run, "calls", fixture(CL_2022)),
        await post(run, "mono", fixture(ALIBABA_V2)),
    ]
    assert [status for status, _ in answers] == [200] * 4, answers
    drop(run.inbox, ALIBABA + ".meta.json", fixture(ALIBABA + ".meta.json"))
    drop(run.inbox, ALIBABA, fixture(ALIBABA))
    ids = {answer["call_id"]: answer["id"] for _, answer in answers}

    async def file_stored() -> bool:
        return (run.inbox / "done" / ALIBABA).exists()

    await wait_until(file_stored, 30, "the dropped transcript to be committed")
    records: dict[str, FeedbackRecord] = {}

    async def all_stored() -> bool:
        records.update(await stored_records(run.settings, list(ids.values())))
        by_call = {r.native_id: r for r in (await in_feed(run.settings)).values()}
        if "CC20240301091522-0001" in by_call:
            ids["CC20240301091522-0001"] = by_call["CC20240301091522-0001"].id
            records.update(await stored_records(run.settings, [ids["CC20240301091522-0001"]]))
        return len(records) == 5

    await wait_until(all_stored, 60, "five calls in the store")
    assert (run.inbox / "done" / (ALIBABA + ".meta.json")).exists()
    feed = await in_feed(run.settings)
    expected_turns = {
        "GZ-PBX-20240304-000731": 6,
        "6f1b3c2e-8d4a-4b9e-9c1f-2a7e5d0b3c41": 9,
        "0e4c7a91-3f2b-4d8e-a6c5-9b1d2e3f4a5b": 6,
        "3f5d4c0c399511e98dc025f34473a1b2": 6,
        "CC20240301091522-0001": 13,
    }
    for call_id, record_id in ids.items():
        record = records[record_id]
        assert (record.channel, record.native_id) == ("phone", call_id)
        assert len(record.turns) == expected_turns[call_id]
        assert record.meta["signals"]["customer_talk_ratio"] is not None
        assert record_id in feed and len(feed[record_id].turns) == len(record.turns)
        assert feed[record_id].meta["signals"] == record.meta["signals"]
    by_call = {r.native_id: r for r in records.values()}
    assert by_call["3f5d4c0c399511e98dc025f34473a1b2"].source == "房贷热线"
    assert by_call["6f1b3c2e-8d4a-4b9e-9c1f-2a7e5d0b3c41"].meta["agent_id"] == "W0311"
    dropped = by_call["CC20240301091522-0001"]
    assert dropped.meta["queue"] == "信用卡中心-盗刷专线"
    assert dropped.meta["signals"]["customer_interruptions"] == 1
    assert "13812345678" not in dropped.author, "the caller's number is masked downstream"
    cl = by_call["6f1b3c2e-8d4a-4b9e-9c1f-2a7e5d0b3c41"]
    assert cl.meta["vendor"]["sentiment"]["last_quarter_customer"] == -4.6


async def test_a_redelivered_call_stays_one_record_and_forged_ones_leave_none(
    running: Running,
) -> None:
    run = running
    status, first = await post(run, "calls", fixture(GENERIC))
    assert status == 200
    for _ in range(2):  # the sender retried: same call, same answer
        status, again = await post(run, "calls", fixture(GENERIC))
        assert (status, again["id"]) == (200, first["id"])
    forged = orjson.loads(fixture(GENERIC))
    forged["call_id"] = "FORGED-0001"
    body = orjson.dumps(forged)
    assert (await post(run, "calls", body, secret="not-the-shared-secret"))[0] == 403
    status, answer = await post(run, "calls", body, age_secs=3600)
    assert (status, answer["text"]) == (403, "timestamp is more than 300s away from now")
    marker = orjson.loads(fixture(GENERIC))
    marker["call_id"] = "MARKER-0001"
    status, last = await post(run, "calls", orjson.dumps(marker))
    assert status == 200

    async def drained() -> bool:
        if not await stored_records(run.settings, [last["id"]]):
            return False
        async with components.make_bus(run.settings) as bus:
            depths = await bus.queue_depths()
        return not any(depths.get(q, 0) for q in (Q_PROCESS, Q_PROCESS_URGENT, *SINK_QUEUES))

    await wait_until(drained, 60, "every delivery to be processed")
    url = run.settings.store_url
    by_call = "SELECT count(*) AS n, max(version) AS v FROM feedback_records WHERE native_id = $1"
    row = await sql(url, by_call, "GZ-PBX-20240304-000731")
    assert (row["n"], row["v"]) == (1, 1), "three deliveries, one unchanged record"
    audit = await sql(
        url, "SELECT count(*) AS n FROM feedback_audit WHERE record_id = $1", first["id"]
    )
    assert audit["n"] == 1
    assert (await sql(url, by_call, "FORGED-0001"))["n"] == 0
    feed = (await in_feed(run.settings)).values()
    assert sum(r.native_id == "GZ-PBX-20240304-000731" for r in feed) == 1
