"""WeChat Official Account and WeCom customer service through a running worker over the
real services (RabbitMQ, Redis, PostgreSQL): real-shaped encrypted callbacks in, records
in the feed and the store out; every kind of bad request refused, counted in
/metrics and never recorded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from connectors.wechat.crypto import MessageCrypto
from ingest.abc import FeedQuery
from ingest.bus.base import Q_DEAD
from ingest.model import stable_id
from ingest.runtime import components
from ingest.settings import Settings
from ingest.testing import PushRequest
from tests.pipeline_helpers import (
    drop_redis_prefix,
    feed_records,
    open_store,
    running_worker,
    services_settings,
    stored_records,
    wait_until,
)
from tests.wechat_helpers import (
    CORP_ID,
    OA_ACCOUNT,
    OA_APP_ID,
    OA_OPTIONS,
    OPEN_KFID,
    FakeWecomApi,
    kf_callback,
    kf_text,
    make_pages,
    oa_request,
    oa_text,
    wecom_options,
    wecom_request,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def fake_api() -> AsyncIterator[FakeWecomApi]:
    api = await FakeWecomApi().start()
    yield api
    await api.close()


@pytest.fixture
async def settings(
    tmp_path: Path,
    amqp_vhost_url: str,
    redis_url: str,
    pg_database: str,
    unique: str,
    fake_api: FakeWecomApi,
) -> AsyncIterator[Settings]:
    prefix = f"test-wx-{unique}"
    connectors = {
        "wx_main": {"type": "wechat", **OA_OPTIONS},
        "kf_main": {"type": "wecom", **wecom_options(fake_api.url, retry_delay_secs=0.2)},
    }
    yield services_settings(tmp_path, amqp_vhost_url, redis_url, pg_database, prefix, connectors)
    await drop_redis_prefix(redis_url, prefix)


async def post(http: aiohttp.ClientSession, url: str, request: PushRequest) -> tuple[int, str]:
    async with http.post(url, params=dict(request.query), data=request.body) as response:
        return response.status, await response.text()


async def stored(settings: Settings, ids: list[str]) -> tuple[list[str], list[str]]:
    """(ids found in the store, ids in the feed)."""
    found = await stored_records(settings, ids)
    in_feed = await feed_records(settings, FeedQuery(limit=500))
    return [i for i in ids if i in found], [i for i in ids if i in in_feed]


async def webhook_counts(
    http: aiohttp.ClientSession, base: str, connector: str
) -> dict[str, float]:
    async with http.get(f"{base}/metrics") as response:
        text = await response.text()
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "feedback_webhook_requests_total" and (
                sample.labels.get("connector") == connector
            ):
                counts[sample.labels["outcome"]] = sample.value
    return counts


async def test_official_account_and_wecom_callbacks_land_in_feed_and_store(
    settings: Settings, fake_api: FakeWecomApi
) -> None:
    fake_api.pages[OPEN_KFID] = make_pages(
        [
            kf_text("KF_MSG_1", "我的信用卡被盗刷了，马上处理！"),
            kf_text("KF_MSG_2", "好的", origin=5),
        ],
        [kf_text("KF_MSG_3", "网点排队两个小时")],
    )
    oa_id = stable_id("wechat", OA_ACCOUNT, "24373915622399001")
    kf_ids = [stable_id("wecom", CORP_ID, m) for m in ("KF_MSG_1", "KF_MSG_3")]
    async with running_worker(settings) as base, aiohttp.ClientSession() as http:
        text = oa_text("手机银行转账失败，钱扣了但对方没收到", msg_id="24373915622399001")
        status, body = await post(http, f"{base}/webhooks/wechat/wx_main", oa_request(text))
        assert (status, body) == (200, "success")
        status, body = await post(
            http, f"{base}/webhooks/wecom/kf_main", wecom_request(kf_callback())
        )
        assert (status, body) == (200, "success")

        async def all_arrived() -> bool:
            found, in_feed = await stored(settings, [oa_id, *kf_ids])
            return len(found) == len(in_feed) == 3

        await wait_until(all_arrived, 60, "the WeChat and WeCom records in store and feed")
        servicer = stable_id("wecom", CORP_ID, "KF_MSG_2")
        assert (await stored(settings, [servicer]))[0] == []  # not customer feedback
    record = (await stored_records(settings, [oa_id])).get(oa_id)
    assert record is not None and record.native_id == "24373915622399001"
    assert record.channel == "wechat" and record.meta["feedback"] is True
    cursors = components.make_cursors(settings)
    try:
        assert await cursors.load(f"kf_main:{OPEN_KFID}") == "CURSOR_2"
    finally:
        await cursors.close()


async def test_bad_requests_get_clear_answers_are_counted_and_never_recorded(
    settings: Settings,
) -> None:
    url_path = "/webhooks/wechat/wx_main"
    genuine = oa_request(oa_text("信用卡年费乱收", msg_id="24373915622399777"))
    same_nonce_other_body = oa_request(
        oa_text("伪造", msg_id="1"),
        timestamp=genuine.query["timestamp"],
        nonce=genuine.query["nonce"],
    )
    # signed but unusable: dead-lettered, then answered "success" (no retry, no error
    # shown to the customer); unsigned or too large: refused
    cases: list[tuple[str, PushRequest, int, str]] = [
        ("forged", oa_request(oa_text("x", msg_id="2"), token="someoneElse"), 403, "forged"),
        (
            "forged_key",
            oa_request(
                oa_text("x", msg_id="3"),
                crypto=MessageCrypto(OA_OPTIONS["token"], "B" * 43, OA_APP_ID),
            ),
            200,
            "ok",
        ),
        ("stale", oa_request(oa_text("x", msg_id="4"), timestamp="1409659813"), 403, "stale"),
        ("malformed", oa_request(b"<xml><MsgType>text</MsgType></xml>"), 200, "ok"),
        (
            "wrong_encoding",
            oa_request("<xml><Content>投诉</Content></xml>".encode("gbk")),
            200,
            "ok",
        ),
        ("oversized", oa_request(b"<xml>" + b"a" * (3 * 1024 * 1024) + b"</xml>"), 413, "413"),
    ]
    async with running_worker(settings) as base, aiohttp.ClientSession() as http:
        before = await webhook_counts(http, base, "wx_main")
        for name, request, status, _ in cases:
            got, body = await post(http, base + url_path, request)
            assert got == status, (name, got, body[:200])
        assert await post(http, base + url_path, genuine) == (200, "success")
        assert await post(http, base + url_path, genuine) == (200, "success")  # a WeChat retry
        assert (await post(http, base + url_path, same_nonce_other_body))[0] == 403

        genuine_id = stable_id("wechat", OA_ACCOUNT, "24373915622399777")

        async def genuine_stored() -> bool:
            return (await stored(settings, [genuine_id]))[0] == [genuine_id]

        await wait_until(genuine_stored, 60, "the genuine message in the store")
        after = await webhook_counts(http, base, "wx_main")
        expected: dict[str, float] = {}
        for _, _, _, outcome in cases:
            expected[outcome] = expected.get(outcome, 0) + 1
        expected["ok"] = expected.get("ok", 0) + 2
        expected["replayed"] = 1
        for outcome, n in expected.items():
            assert after.get(outcome, 0) - before.get(outcome, 0) == n, (outcome, after, before)
        await asyncio.sleep(1)  # anything wrongly published would be stored by now
        async with open_store(settings) as store:
            total = await store.count()
        assert total == 1, "only the genuine message may become a record"
    async with components.make_bus(settings) as bus:
        parked = []
        while (delivery := await bus.get(Q_DEAD)) is not None:
            parked.append((dict(delivery.headers), delivery.body))
            await delivery.ack()
    # the vhost is shared by the session: only this connector's dead letters count
    kinds = sorted(
        h.get("x-error-kind", "") for h, _ in parked if h.get("x-stage") == "connector:wx_main"
    )
    assert kinds == ["malformed", "undecryptable", "wrong_encoding"], kinds
