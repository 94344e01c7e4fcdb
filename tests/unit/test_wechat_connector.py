"""The wechat and wecom connectors through the webhook runtime (aiohttp test server,
in-memory bus with controllable confirms, a local fake of the WeCom API): the
contract suite, then every way a callback can arrive."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from connectors.wechat.connector import KNOWN_ACCOUNTS_KEY, WechatConnector, WecomConnector
from connectors.wechat.crypto import MessageCrypto, signature
from ingest.bus.base import Q_DEAD, Q_PROCESS
from ingest.codec import decode_event
from ingest.errors import ConfigError, TransientError
from ingest.model import FeedbackEvent
from ingest.options import parse_options
from ingest.runtime import push
from ingest.testing import (
    ConfirmControlBus,
    ConnectorContract,
    MemoryCursors,
    PushRequest,
    push_client,
    send,
)
from tests.wechat_helpers import (
    CORP_ID,
    KF_SECRET,
    OA_APP_ID,
    OA_EVENTS,
    OA_KEY,
    OA_OPTIONS,
    OA_SAMPLES,
    OA_TOKEN,
    OPEN_KFID,
    XXE_PAYLOADS,
    FakeWecomApi,
    kf_callback,
    kf_page,
    kf_text,
    make_pages,
    oa_request,
    oa_text,
    wecom_options,
    wecom_request,
)

Client = TestClient[web.Request, web.Application]

# --- the contract ------------------------------------------------------------------------


class TestWechatContract(ConnectorContract):
    connector = WechatConnector
    options = {**OA_OPTIONS, "source": "官方服务号"}
    # check() has something to fail on only with app_secret: an unreachable API here,
    # a wrong secret in test_oa_check_names_the_wrong_secret below.
    bad_check_options = {**OA_OPTIONS, "app_secret": "wrong", "api_base": "http://127.0.0.1:9"}
    good_payloads = [
        OA_SAMPLES["text"],
        OA_SAMPLES["voice_recognised"],
        OA_EVENTS["subscribe"],
        oa_request(OA_SAMPLES["text"]).body,  # safe-mode envelope, decrypted with the key
    ]
    bad_payloads = [
        b"not xml",
        XXE_PAYLOADS["billion_laughs"],
        oa_text("x").replace(b"MsgId", b"X"),
    ]

    def push_request(self, connector: Any) -> PushRequest:
        return oa_request(oa_text("手机银行转账失败，钱扣了没到账", msg_id=str(time.time_ns())))


class TestWecomContract(ConnectorContract):
    connector = WecomConnector
    options = wecom_options("http://127.0.0.1:9", events="publish")
    bad_check_options = wecom_options("http://127.0.0.1:9")
    good_payloads = [
        orjson.dumps(kf_page([kf_text("MSG_A", "信用卡额度被无故降低")], "C1")),
        kf_callback(),
    ]
    bad_payloads = [
        b"{",
        b'{"errcode": 40014, "errmsg": "invalid access_token"}',
        XXE_PAYLOADS["dtd_only"],
    ]

    def push_request(self, connector: Any) -> PushRequest:
        return wecom_request(kf_callback())


# --- helpers ------------------------------------------------------------------------------


def oa(**overrides: Any) -> WechatConnector:
    return WechatConnector(
        "wx_main", parse_options(WechatConnector.Options, {**OA_OPTIONS, **overrides})
    )


@pytest.fixture
async def bus() -> AsyncIterator[ConfirmControlBus]:
    bus = ConfirmControlBus()
    await bus.start()
    yield bus
    await bus.close()


async def published(bus: ConfirmControlBus) -> list[FeedbackEvent]:
    events = []
    while (delivery := await bus.get(Q_PROCESS)) is not None:
        events.append(decode_event(delivery.body))
        await delivery.ack()
    return events


async def dead(bus: ConfirmControlBus) -> int:
    return (await bus.queue_depths()).get(Q_DEAD, 0)


async def serve(connector: Any, bus: ConfirmControlBus) -> Client:
    return await push_client(connector, bus)


# --- Official Account --------------------------------------------------------------------


async def test_oa_url_verification_echoes_echostr_only_when_signed(bus: ConfirmControlBus) -> None:
    connector = oa()
    client = await serve(connector, bus)
    try:
        ts, nonce = "1700000000", "42"
        base = push.base_path(connector)
        good = f"{base}?signature={signature(OA_TOKEN, ts, nonce)}&timestamp={ts}&nonce={nonce}"
        response = await client.get(good + "&echostr=5837397520665436492")
        assert response.status == 200 and await response.text() == "5837397520665436492"
        response = await client.get(good.replace("signature=", "signature=0") + "&echostr=1")
        assert response.status == 403
    finally:
        await client.close()


@pytest.mark.parametrize("mode", ["plaintext", "compatible", "safe"])
async def test_each_mode_publishes_one_event_then_answers_success(
    bus: ConfirmControlBus, mode: str
) -> None:
    connector = oa(mode=mode)
    client = await serve(connector, bus)
    try:
        status, body = await send(client, connector, oa_request(OA_SAMPLES["text"], mode=mode))
        assert (status, body) == (200, b"success")
        [event] = await published(bus)
        assert event.text == "信用卡被盗刷了三笔，客服电话一直打不通！"
        assert event.native_id == "24373915622311712"
    finally:
        await client.close()


async def test_forged_requests_are_403_and_never_reach_the_bus(bus: ConfirmControlBus) -> None:
    connector = oa()
    client = await serve(connector, bus)
    try:
        wrong_token = oa_request(OA_SAMPLES["text"], token="attackerToken")
        assert (await send(client, connector, wrong_token))[0] == 403
        wrong_key = MessageCrypto(OA_TOKEN, "A" * 43, OA_APP_ID)
        forged = oa_request(OA_SAMPLES["text"])
        stolen_query = dict(forged.query)
        body = oa_request(OA_SAMPLES["text"], crypto=wrong_key).body  # other Encrypt
        assert (await send(client, connector, PushRequest("POST", query=stolen_query, body=body)))[
            0
        ] == 403
        unsigned = PushRequest("POST", body=OA_SAMPLES["text"])
        assert (await send(client, connector, unsigned))[0] == 403
        downgrade = oa_request(OA_SAMPLES["text"], mode="plaintext")  # safe mode: refused
        assert (await send(client, connector, downgrade))[0] == 403
        assert await bus.ingress_depth() == 0 and await dead(bus) == 0
    finally:
        await client.close()


async def test_stale_timestamp_is_refused_unless_the_window_is_off(bus: ConfirmControlBus) -> None:
    old = str(int(time.time()) - 3600)
    for window, expected in ((300, 403), (0, 200)):
        connector = oa(replay_window_secs=window)
        client = await serve(connector, bus)
        try:
            status, body = await send(
                client, connector, oa_request(OA_SAMPLES["text"], timestamp=old)
            )
            assert status == expected, body
        finally:
            await client.close()
    assert len(await published(bus)) == 1


async def test_wechat_retry_after_success_is_answered_without_publishing_again(
    bus: ConfirmControlBus,
) -> None:
    connector = oa()
    client = await serve(connector, bus)
    try:
        request = oa_request(OA_SAMPLES["image"])
        for _ in range(4):  # the first delivery and WeChat's three retries
            assert await send(client, connector, request) == (200, b"success")
        assert len(await published(bus)) == 1
    finally:
        await client.close()


async def test_retry_after_a_broker_failure_is_processed(bus: ConfirmControlBus) -> None:
    connector = oa()
    client = await serve(connector, bus)
    try:
        request = oa_request(OA_SAMPLES["text"])
        bus.fail()
        assert (await send(client, connector, request))[0] == 503
        bus.fail(False)
        assert await send(client, connector, request) == (200, b"success")
        assert len(await published(bus)) == 1
    finally:
        await client.close()


async def test_retry_arriving_while_the_first_is_at_the_broker_waits_for_it(
    bus: ConfirmControlBus,
) -> None:
    connector = oa()
    client = await serve(connector, bus)
    try:
        request = oa_request(OA_SAMPLES["text"])
        bus.hold()
        first = asyncio.ensure_future(send(client, connector, request))
        for _ in range(200):  # until the first request is at the broker
            if bus.waiting:
                break
            await asyncio.sleep(0.01)
        retry = asyncio.ensure_future(send(client, connector, request))
        await asyncio.sleep(0.1)
        assert not first.done() and not retry.done()
        bus.release()
        assert await first == await retry == (200, b"success")
        assert len(await published(bus)) == 1
    finally:
        await client.close()


async def test_captured_plaintext_signature_cannot_carry_another_body(
    bus: ConfirmControlBus,
) -> None:
    """Plaintext mode signs no body: the nonce memory refuses a second body for a nonce."""
    connector = oa(mode="plaintext")
    client = await serve(connector, bus)
    try:
        genuine = oa_request(OA_SAMPLES["text"], mode="plaintext")
        assert (await send(client, connector, genuine))[0] == 200
        forged = PushRequest("POST", query=genuine.query, body=oa_text("伪造的投诉", msg_id="666"))
        status, body = await send(client, connector, forged)
        assert status == 403 and b"nonce" in body
        assert len(await published(bus)) == 1
    finally:
        await client.close()


@pytest.mark.parametrize("mode", ["compatible", "safe"])
async def test_an_encrypted_mode_refuses_a_plaintext_push(
    bus: ConfirmControlBus, mode: str
) -> None:
    """WeChat sends encrypt_type=aes in compatible mode too: a plaintext request is a
    genuine query with `encrypt_type` and `msg_signature` dropped and the body swapped."""
    connector = oa(mode=mode)
    client = await serve(connector, bus)
    try:
        genuine = oa_request(OA_SAMPLES["text"], mode="compatible")
        query = {
            k: v for k, v in genuine.query.items() if k not in ("encrypt_type", "msg_signature")
        }
        forged = PushRequest("POST", query=query, body=oa_text("伪造的投诉", msg_id="6666"))
        status, body = await send(client, connector, forged)
        assert status == 403 and b"plaintext push refused" in body
        assert await published(bus) == []
    finally:
        await client.close()


async def test_oversized_and_tag_flooded_bodies_are_refused_before_any_parsing(
    bus: ConfirmControlBus, api: FakeWecomApi
) -> None:
    """Anyone can post to a webhook: a body far over a real callback is refused (413)
    unread, and WeCom's envelope (parsed before its signature can be checked) may not
    hold thousands of tags."""
    connector = wecom(api.url)
    client = await serve(connector, bus)
    query = {"msg_signature": "x", "timestamp": str(int(time.time())), "nonce": "n"}
    try:
        huge = PushRequest("POST", query=query, body=b"<xml>" + b" " * 70_000 + b"</xml>")
        assert (await send(client, connector, huge))[0] == 413
        flood = PushRequest("POST", query=query, body=b"<xml>" + b"<a/>" * 5_000 + b"</xml>")
        status, body = await send(client, connector, flood)
        assert status == 400 and b"tags" in body
        assert await published(bus) == [] and await dead(bus) == 0
    finally:
        await client.close()
        await connector.close()


@pytest.mark.parametrize(
    "request_factory",
    [
        lambda: oa_request(XXE_PAYLOADS["external_entity"], mode="plaintext"),
        lambda: oa_request(b"<xml><MsgType>text</MsgType></xml>", mode="plaintext"),
        lambda: oa_request(oa_text("x"), crypto=MessageCrypto(OA_TOKEN, OA_KEY, "wxSomeoneElse")),
        lambda: PushRequest(
            "POST",
            query={**oa_request(b"").query},
            body=b"<xml><Encrypt>not base64!</Encrypt></xml>",
        ),
    ],
    ids=["xxe", "missing_fields", "wrong_receive_id", "undecryptable"],
)
async def test_authentic_but_unusable_bodies_are_dead_lettered_then_answered_success(
    bus: ConfirmControlBus, request_factory: Any
) -> None:
    connector = oa(mode="plaintext")  # with the key: encrypted pushes are decrypted too
    client = await serve(connector, bus)
    try:
        request = request_factory()
        if b"not base64" in request.body:  # sign the bogus Encrypt so only decryption fails
            ts, nonce = request.query["timestamp"], request.query["nonce"]
            query = {
                **request.query,
                "msg_signature": signature(OA_TOKEN, ts, nonce, "not base64!"),
            }
            request = PushRequest("POST", query=query, body=request.body)
        assert await send(client, connector, request) == (200, b"success")  # no retry
        assert await bus.ingress_depth() == 0 and await dead(bus) == 1
        parked = await bus.get(Q_DEAD)
        assert parked is not None and parked.body == request.body
    finally:
        await client.close()


async def test_events_are_ignored_by_default_and_published_marked_on_request(
    bus: ConfirmControlBus,
) -> None:
    for policy, expected in (("ignore", 0), ("publish", 1)):
        connector = oa(events=policy)
        client = await serve(connector, bus)
        try:
            assert await send(client, connector, oa_request(OA_EVENTS["CLICK"])) == (
                200,
                b"success",
            )
        finally:
            await client.close()
        events = await published(bus)
        assert len(events) == expected
        assert all(e.meta["feedback"] is False and e.meta["kind"] == "event" for e in events)


async def test_plus_in_the_raw_query_is_not_turned_into_a_space(bus: ConfirmControlBus) -> None:
    connector = oa()
    client = await serve(connector, bus)
    try:
        ts, nonce = "1700000000", "7"
        url = f"{push.base_path(connector)}?signature={signature(OA_TOKEN, ts, nonce)}"
        response = await client.get(f"{url}&timestamp={ts}&nonce={nonce}&echostr=ab+c/d%2B==")
        assert await response.text() == "ab+c/d+=="
    finally:
        await client.close()


async def test_oa_check_names_the_wrong_secret() -> None:
    async def token(request: web.Request) -> web.Response:
        if request.query.get("secret") == "right":
            return web.json_response({"access_token": "T", "expires_in": 7200})
        return web.json_response({"errcode": 40125, "errmsg": "invalid appsecret"})

    app = web.Application()
    app.router.add_get("/cgi-bin/token", token)
    server = TestServer(app)
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    try:
        good = oa(app_secret="right", api_base=base)
        await good.check()
        await good.close()
        bad = oa(app_secret="wrong", api_base=base)
        with pytest.raises(ConfigError) as info:
            await bad.check()
        assert info.value.key == "connectors.wx_main.app_secret"
        await bad.close()
    finally:
        await server.close()


def test_options_refuse_a_bad_key_and_a_missing_key_in_safe_mode() -> None:
    with pytest.raises(ConfigError, match="43"):
        oa(encoding_aes_key="tooShort")
    with pytest.raises(ConfigError, match="required in safe mode"):
        oa(encoding_aes_key="")
    with pytest.raises(ConfigError, match="token"):
        oa(token="has spaces in it")


# --- WeCom ----------------------------------------------------------------------------------


@pytest.fixture
async def api() -> AsyncIterator[FakeWecomApi]:
    fake = await FakeWecomApi().start()
    yield fake
    await fake.close()


def wecom(api_base: str, **extra: Any) -> WecomConnector:
    options = parse_options(WecomConnector.Options, wecom_options(api_base, **extra))
    return WecomConnector("kf_main", options)


def pulling(
    api_base: str, bus: ConfirmControlBus, cursors: MemoryCursors, **extra: Any
) -> WecomConnector:
    """A `kf_main` connector bound to an intake on `bus` with `cursors`, ready to pull."""
    connector = wecom(api_base, **extra)
    connector.bind(push.WebhookIntake("kf_main", _publisher(bus), cursors))
    return connector


async def test_wecom_url_verification_with_tencents_published_vector(
    bus: ConfirmControlBus,
) -> None:
    """WeCom's sample GET (see test_wechat_crypto): echostr percent-encoded with %2B."""
    options = {**wecom_options("http://127.0.0.1:9"), "corp_id": "wx5823bf96d3bd56c7"}
    connector = WecomConnector("kf_main", parse_options(WecomConnector.Options, options))
    client = await serve(connector, bus)
    try:
        query = (
            "msg_signature=5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3&timestamp=1409659589"
            "&nonce=263014780&echostr=P9nAzCzyDtyTWESHep1vC5X9xho%2FqYX3Zpb4yKa9SKld1DsH3Iyt3tP3"
            "zNdtp%2B4RPcs8TgAE7OaBO%2BFZXvnaqQ%3D%3D"
        )
        response = await client.get(f"{push.base_path(connector)}?{query}")
        assert response.status == 200
        assert await response.read() == b"1616140317555161061"  # plaintext only, no newline
        forged = await client.get(f"{push.base_path(connector)}?{query.replace('5c45', '6c45')}")
        assert forged.status == 403
    finally:
        await client.close()


async def run_until(connector: WecomConnector, predicate: Any, limit_secs: float = 5.0) -> None:
    """Run the connector's background pull until `predicate()` holds."""
    task = asyncio.create_task(connector.run())
    try:
        deadline = time.monotonic() + limit_secs
        while not await predicate():
            assert time.monotonic() < deadline, "timed out"
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_kf_callback_answers_at_once_then_pulls_every_page(
    bus: ConfirmControlBus, api: FakeWecomApi
) -> None:
    api.pages[OPEN_KFID] = make_pages(
        [kf_text("M1", "为什么我的房贷利率没有下调"), kf_text("M2", "好的", origin=5)],
        [kf_text("M3", "客服一直不回复")],
    )
    connector = wecom(api.url)
    cursors = MemoryCursors()
    client = await push_client(connector, bus, cursors)
    try:
        status, body = await send(client, connector, wecom_request(kf_callback(token="CB_TOKEN")))
        assert (status, body) == (200, b"success")
        assert await bus.ingress_depth() == 0  # nothing to publish yet: the callback has no content

        async def done() -> bool:
            return cursors.saved.get(f"kf_main:{OPEN_KFID}") == "CURSOR_2"

        await run_until(connector, done)
        events = await published(bus)
        assert sorted(e.native_id for e in events) == ["M1", "M3"]  # M2 is the servicer's
        syncs = [c for name, c in api.calls if name == "sync_msg"]
        assert [c.get("cursor") for c in syncs] == [None, "CURSOR_1"]
        assert all(c["token"] == "CB_TOKEN" and c["open_kfid"] == OPEN_KFID for c in syncs)
    finally:
        await client.close()
        await connector.close()


async def test_expired_access_token_is_refreshed_once(
    bus: ConfirmControlBus, api: FakeWecomApi
) -> None:
    api.pages[OPEN_KFID] = make_pages([kf_text("M1", "额度")])
    connector = pulling(api.url, bus, MemoryCursors())
    await connector.api.access_token()
    api.expire_token()
    assert await connector.pull(OPEN_KFID, "") is False
    assert api.tokens_issued == 2
    assert [e.native_id for e in await published(bus)] == ["M1"]
    await connector.close()


async def test_burst_of_callbacks_is_one_pull_per_account(
    bus: ConfirmControlBus, api: FakeWecomApi
) -> None:
    api.pages[OPEN_KFID] = make_pages([kf_text("M1", "额度")])
    cursors = MemoryCursors()
    connector = pulling(api.url, bus, cursors)
    from connectors.wechat.parse import KfNotice

    for i in range(20):
        connector.schedule(KfNotice(OPEN_KFID, f"T{i}"))

    async def done() -> bool:
        return bool(cursors.saved)

    await run_until(connector, done)
    syncs = [c for name, c in api.calls if name == "sync_msg"]
    assert len(syncs) == 1 and syncs[0]["token"] == "T19"  # the newest token
    await connector.close()


async def test_catch_up_accounts_are_pulled_at_start_from_their_saved_cursor(
    bus: ConfirmControlBus, api: FakeWecomApi
) -> None:
    """A callback missed while the worker was down: the start-up pull finds its messages."""
    api.pages[OPEN_KFID] = make_pages([kf_text("M1", "额度")], [kf_text("M2", "还款失败")])
    cursors = MemoryCursors()
    cursors.saved[f"kf_main:{OPEN_KFID}"] = "CURSOR_1"  # M1 was read before the restart
    connector = pulling(api.url, bus, cursors, catch_up_open_kfids=[OPEN_KFID])

    async def done() -> bool:
        return cursors.saved[f"kf_main:{OPEN_KFID}"] == "CURSOR_2"

    await run_until(connector, done)
    assert [e.native_id for e in await published(bus)] == ["M2"]
    await connector.close()


async def test_an_account_pulled_before_is_caught_up_at_start_without_configuration(
    bus: ConfirmControlBus, api: FakeWecomApi
) -> None:
    """A callback answered just before a restart queued its pull in memory only, and WeCom
    sends no second callback: every account pulled before is pulled again at start-up
    from its saved cursor, with no `catch_up_open_kfids` to keep up to date."""
    api.pages[OPEN_KFID] = make_pages([kf_text("M1", "额度")])
    cursors = MemoryCursors()
    first = pulling(api.url, bus, cursors, catch_up_open_kfids=[OPEN_KFID])

    async def remembered() -> bool:
        return f"kf_main:{KNOWN_ACCOUNTS_KEY}" in cursors.saved

    await run_until(first, remembered)
    await first.close()
    assert [e.native_id for e in await published(bus)] == ["M1"]
    cursor_after_m1 = cursors.saved[f"kf_main:{OPEN_KFID}"]

    # the restart: M2 arrived and was announced, but the worker stopped before pulling
    api.pages[OPEN_KFID] = make_pages([kf_text("M1", "额度")], [kf_text("M2", "还款失败")])
    cursors.saved[f"kf_main:{OPEN_KFID}"] = cursor_after_m1
    restarted = pulling(api.url, bus, cursors)  # no catch_up_open_kfids

    async def m2_read() -> bool:
        return cursors.saved[f"kf_main:{OPEN_KFID}"] != cursor_after_m1

    await run_until(restarted, m2_read)
    assert [e.native_id for e in await published(bus)] == ["M2"]
    await restarted.close()


async def test_a_damaged_list_of_known_accounts_is_ignored_not_fatal(
    bus: ConfirmControlBus, api: FakeWecomApi
) -> None:
    api.pages[OPEN_KFID] = make_pages([kf_text("M1", "额度")])
    cursors = MemoryCursors()
    cursors.saved[f"kf_main:{KNOWN_ACCOUNTS_KEY}"] = '{"not": "a list"'
    connector = pulling(api.url, bus, cursors, catch_up_open_kfids=[OPEN_KFID])

    async def repaired() -> bool:
        return cursors.saved[f"kf_main:{KNOWN_ACCOUNTS_KEY}"] == f'["{OPEN_KFID}"]'

    await run_until(connector, repaired)
    await connector.close()


async def test_wecom_json_envelope_and_forged_and_stale(
    bus: ConfirmControlBus, api: FakeWecomApi
) -> None:
    connector = wecom(api.url, events="publish")
    client = await serve(connector, bus)
    try:
        assert (await send(client, connector, wecom_request(kf_callback(), json_envelope=True)))[
            0
        ] == 200
        other = MessageCrypto("otherToken", "B" * 43, CORP_ID)
        assert (await send(client, connector, wecom_request(kf_callback(), crypto=other)))[0] == 403
        old = str(int(time.time()) - 1000)
        assert (await send(client, connector, wecom_request(kf_callback(), timestamp=old)))[
            0
        ] == 403
        unsigned = PushRequest("POST", query={"msg_signature": "x"}, body=b"<xml>")
        assert (await send(client, connector, unsigned))[0] == 403  # before the body is read
        query = {"msg_signature": "x", "timestamp": str(int(time.time())), "nonce": "n"}
        garbage = PushRequest("POST", query=query, body=b"<xml>")
        assert (await send(client, connector, garbage))[0] == 400
        assert len(await published(bus)) == 1 and await dead(bus) == 0
    finally:
        await client.close()
        await connector.close()


async def test_wecom_check(api: FakeWecomApi) -> None:
    good = wecom(api.url)
    await good.check()
    await good.close()
    api.secret = "rotated"
    bad = wecom(api.url)
    with pytest.raises(ConfigError) as info:
        await bad.check()
    assert info.value.key == "connectors.kf_main.secret" and "40001" in info.value.reason
    await bad.close()
    down = wecom("http://127.0.0.1:9")
    with pytest.raises(TransientError):
        await down.check()
    await down.close()
    assert KF_SECRET not in repr(good.options)


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: nope\r\n\r\n{}",  # bad proxy
        b"HTTP/1.1 302 Found\r\nConnection: close\r\nLocation: /cgi-bin/gettoken?again=1\r\n"
        b"Content-Length: 0\r\n\r\n",
    ],
)
async def test_an_error_from_the_api_never_carries_the_secret_of_its_url(answer: bytes) -> None:
    """gettoken takes the secret in its query; aiohttp puts the whole URL into the text
    of a bad-answer or too-many-redirects error, which `check` prints and the pull logs."""

    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(reply, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    connector = wecom(f"http://127.0.0.1:{port}")
    try:
        with pytest.raises(TransientError) as info:
            await connector.check()
        assert KF_SECRET not in str(info.value) and "***" in str(info.value)
    finally:
        await connector.close()
        server.close()


def _publisher(bus: ConfirmControlBus) -> Any:
    from ingest.runtime.publish import Publisher

    return Publisher(bus)


async def test_nonce_memory_forgets_after_the_window_and_beyond_its_cap() -> None:
    from connectors.wechat.replay import NonceMemory

    now = [1000.0]
    memory: NonceMemory[str] = NonceMemory(300, max_entries=3, clock=lambda: now[0])
    runs: list[str] = []

    async def work(name: str) -> str:
        runs.append(name)
        return name

    for n in ("1", "2", "3"):
        await memory.once("1000", n, b"d", lambda n=n: work(n))
    assert await memory.once("1000", "1", b"d", lambda: work("again")) == "1"  # remembered
    await memory.once("1000", "4", b"d", lambda: work("4"))  # over the cap: "1" forgotten
    assert len(memory) == 3
    assert await memory.once("1000", "1", b"d", lambda: work("1b")) == "1b"
    now[0] += 301  # past the window: everything forgotten
    assert await memory.once("1000", "2", b"d", lambda: work("2b")) == "2b"
    assert len(memory) == 1
    assert runs == ["1", "2", "3", "4", "1b", "2b"]


async def test_a_nonce_stamped_ahead_is_remembered_as_long_as_its_timestamp_is_fresh() -> None:
    """A request stamped 200 s ahead passes `check_fresh` until 300 s past its stamp, so
    its nonce is remembered that long: its signature cannot carry another body later."""
    from connectors.wechat.replay import NonceMemory
    from ingest.errors import Rejected

    now = [1000.0]
    memory: NonceMemory[str] = NonceMemory(300, max_entries=10, clock=lambda: now[0])

    async def work() -> str:
        return "ok"

    await memory.once("1200", "n", b"genuine", work)
    now[0] += 301
    memory.check_fresh("1200")  # still fresh: 101 s in the past
    with pytest.raises(Rejected) as info:
        await memory.once("1200", "n", b"forged", work)
    assert info.value.kind == "replayed"
