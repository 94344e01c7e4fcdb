"""Pure parsing for both flavours: callback XML (or WeCom's JSON envelope) and WeCom
`sync_msg` pages → `FeedbackEvent`s with deterministic ids. No I/O, no clock.

XML goes through defusedxml with DTDs, entity declarations and external references
all refused (XXE, billion laughs). Message ids stay strings: a WeChat MsgId is a
64-bit integer beyond 2^53.

Events (follow, menu, scan, location, WeCom system rows, servicer messages) are
parsed into events too, marked `meta.kind = "event"` (or "servicer") and
`meta.feedback = false`, so the connector can ignore or publish them on purpose
and nothing downstream can mistake them for a customer's words.
"""

from __future__ import annotations

import hashlib
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from defusedxml import DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden
from defusedxml.ElementTree import fromstring

from ingest.abc import BadInput
from ingest.codec import MAX_TEXT_CHARS
from ingest.errors import PermanentError
from ingest.model import FeedbackEvent, stable_id

CHANNEL_OA = "wechat"
CHANNEL_WECOM = "wecom"

_DECLARED_ENCODING = re.compile(rb"^\s*<\?xml[^>]*encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']")
_CDATA = re.compile(rb"<!\[CDATA\[.*?\]\]>", re.S)
MAX_XML_TAGS = 200
"""Most tags (outside CDATA) a callback may hold: a real one has a few dozen, and
building the tree of a body of thousands costs the event loop seconds before any
signature over it can be checked (WeCom's envelope is parsed to find what is signed)."""
_SNAKE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")

PLACEHOLDERS = {
    "image": "[图片]",
    "voice": "[语音]",
    "video": "[视频]",
    "shortvideo": "[小视频]",
    "file": "[文件]",
    "location": "[位置]",
    "link": "[链接]",
    "business_card": "[名片]",
    "miniprogram": "[小程序]",
    "msgmenu": "[菜单消息]",
    "channels_shop_product": "[视频号商品]",
    "channels_shop_order": "[视频号订单]",
    "merged_msg": "[聊天记录]",
    "channels": "[视频号]",
}
"""Text of a message without words: the type is kept in meta, the media by id."""

EVENT_LABELS = {
    "subscribe": "关注",
    "unsubscribe": "取消关注",
    "SCAN": "扫码",
    "LOCATION": "上报位置",
    "CLICK": "点击菜单",
    "VIEW": "打开菜单链接",
    "kf_msg_or_event": "客服消息通知",
}

PRIVATE_FIELDS = frozenset(
    {"Location_X", "Location_Y", "Latitude", "Longitude", "Precision", "Label", "Encrypt"}
)
"""Never copied into meta: meta is not masked downstream (a place is personal data;
the label still reaches `text`, which is masked), and Encrypt is the ciphertext."""
_TEXT_FIELDS = frozenset(
    {"ToUserName", "FromUserName", "CreateTime", "MsgType", "MsgId", "Content", "Recognition"}
)
"""Fields that become the event's own fields, not meta."""


# --- XML ----------------------------------------------------------------------


def parse_xml(data: bytes) -> dict[str, str]:
    """The children of a callback's `<xml>` root as tag → stripped text (one nested
    level flattened as "Parent.Child"). Raises `PermanentError` saying what is wrong."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PermanentError(f"body is not UTF-8: {exc}", kind="wrong_encoding") from None
    tags = _CDATA.sub(b"", data).count(b"<")
    if tags > MAX_XML_TAGS:
        raise PermanentError(
            f"XML with {tags} tags; a callback has a few dozen (at most {MAX_XML_TAGS})",
            kind="malformed",
        )
    declared = _DECLARED_ENCODING.match(data)
    if declared and declared.group(1).lower() not in (b"utf-8", b"utf8"):
        raise PermanentError(
            f"XML declares encoding {declared.group(1).decode()!r}; WeChat sends UTF-8",
            kind="wrong_encoding",
        )
    try:
        root = fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DTDForbidden:
        raise PermanentError(
            "XML with a DTD refused (XXE protection)", kind="xml_forbidden"
        ) from None
    except EntitiesForbidden:
        raise PermanentError(
            "XML declaring entities refused (entity-expansion protection)", kind="xml_forbidden"
        ) from None
    except ExternalReferenceForbidden:
        raise PermanentError(
            "XML referencing an external entity refused", kind="xml_forbidden"
        ) from None
    except (ET.ParseError, ValueError) as exc:
        raise PermanentError(f"not well-formed XML: {exc}", kind="malformed") from None
    if root.tag != "xml":
        raise PermanentError(f"root element is <{root.tag}>, expected <xml>", kind="malformed")
    fields: dict[str, str] = {}
    for child in root:
        fields[child.tag] = (child.text or "").strip()
        for sub in child:
            fields[f"{child.tag}.{sub.tag}"] = (sub.text or "").strip()
    return fields


@dataclass(frozen=True, slots=True)
class Envelope:
    """The outer body of an encrypted callback (the compatible mode's plaintext
    fields are in `fields`)."""

    encrypt: str
    to_user: str
    fields: Mapping[str, str]


def parse_envelope(data: bytes) -> Envelope:
    """`<xml><ToUserName/><Encrypt/>…</xml>` or WeCom's JSON `{"tousername", "encrypt",
    "agentid"}` (older samples capitalise the keys: both accepted)."""
    if data.lstrip().startswith(b"{"):
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise PermanentError(f"not JSON: {exc}", kind="malformed") from None
        if not isinstance(doc, dict):
            raise PermanentError("JSON envelope must be an object", kind="malformed")
        lower = {str(k).lower(): v for k, v in doc.items()}
        fields = {k: str(v) for k, v in lower.items() if isinstance(v, str | int)}
    else:
        fields = {k.lower(): v for k, v in parse_xml(data).items()}
    encrypt = fields.get("encrypt", "")
    if not encrypt:
        raise PermanentError("encrypted callback without Encrypt", kind="malformed")
    return Envelope(encrypt=encrypt, to_user=fields.get("tousername", ""), fields=fields)


def _required(fields: Mapping[str, str], name: str) -> str:
    value = fields.get(name, "")
    if not value:
        raise PermanentError(f"missing <{name}>", kind="malformed")
    return value


def _unix_time(value: Any, name: str) -> datetime:
    try:
        seconds = int(value)
        return datetime.fromtimestamp(seconds, UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        raise PermanentError(f"{name} {value!r} is not Unix seconds", kind="malformed") from None


def _digest(secret: str) -> str:
    """A short stand-in for a credential that must not be stored (the pull token)."""
    return hashlib.sha256(secret.encode()).hexdigest()[:16] if secret else ""


def _snake(tag: str) -> str:
    return _SNAKE.sub("_", tag.replace(".", "_")).lower()


def _clip(text: str, meta: dict[str, Any]) -> str:
    if len(text) > MAX_TEXT_CHARS:
        meta["text_truncated_from_chars"] = len(text)
        return text[:MAX_TEXT_CHARS]
    return text


# --- Official Account -----------------------------------------------------------


def _oa_text(msg_type: str, fields: Mapping[str, str], meta: dict[str, Any]) -> str:
    if msg_type == "text":
        return _required(fields, "Content")
    if msg_type == "voice" and fields.get("Recognition"):
        meta["asr"] = True
        return fields["Recognition"]
    if msg_type == "event":
        event = _required(fields, "Event")
        key = fields.get("EventKey", "")
        return f"[事件] {EVENT_LABELS.get(event, event)}" + (f" {key}" if key else "")
    placeholder = PLACEHOLDERS.get(msg_type, f"[{msg_type}]")
    detail = fields.get("Label") or fields.get("Title") or ""
    return f"{placeholder} {detail}" if detail else placeholder


def oa_event(fields: Mapping[str, str], source: str = "", connector: str = "") -> FeedbackEvent:
    """One Official Account message or event (decrypted XML fields) → an event.
    Dedup key: MsgId; events have none: FromUserName + CreateTime + Event + EventKey."""
    account = _required(fields, "ToUserName")
    author = _required(fields, "FromUserName")
    created = _required(fields, "CreateTime")
    received_at = _unix_time(created, "CreateTime")
    msg_type = _required(fields, "MsgType")
    is_event = msg_type == "event"
    if is_event:
        event = _required(fields, "Event")
        native_id = "|".join((author, created, event, fields.get("EventKey", "")))
    else:
        native_id = _required(fields, "MsgId")
    meta: dict[str, Any] = {
        "kind": "event" if is_event else "message",
        "feedback": not is_event,
        "msg_type": msg_type,
        "account": account,
    }
    for tag, value in fields.items():
        if value and tag not in _TEXT_FIELDS and tag not in PRIVATE_FIELDS:
            meta[_snake(tag)] = value
    text = _clip(_oa_text(msg_type, fields, meta), meta)
    return FeedbackEvent(
        id=stable_id(CHANNEL_OA, account, native_id),
        channel=CHANNEL_OA,
        text=text,
        source=source or account,
        native_id=native_id,
        received_at=received_at,
        author=author,
        meta=meta,
        raw_ref=f"{CHANNEL_OA}:{connector}/{account}/{native_id}",
    )


def parse_oa_message(
    message: bytes, source: str = "", connector: str = ""
) -> tuple[list[FeedbackEvent], list[BadInput]]:
    """A decrypted (or plaintext) Official Account message → one event or one BadInput."""
    try:
        return [oa_event(parse_xml(message), source, connector)], []
    except PermanentError as exc:
        return [], [BadInput(str(exc), message, f"{CHANNEL_OA}:{connector}", exc.kind)]


# --- WeCom customer service -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KfNotice:
    """A `kf_msg_or_event` callback: which account has news and the pull token."""

    open_kfid: str
    token: str


def parse_wecom_callback(
    message: bytes, source: str = "", connector: str = ""
) -> tuple[KfNotice | None, FeedbackEvent]:
    """A decrypted WeCom callback → the pull notice (None for other events) and the
    callback recorded as an event (meta.kind = "event"). Raises `PermanentError`."""
    fields = parse_xml(message)
    corp_id = _required(fields, "ToUserName")
    created = _required(fields, "CreateTime")
    received_at = _unix_time(created, "CreateTime")
    event = _required(fields, "Event")
    open_kfid = fields.get("OpenKfId", "")
    token = fields.get("Token", "")
    notice = KfNotice(open_kfid, token) if event == "kf_msg_or_event" and open_kfid else None
    if event == "kf_msg_or_event" and notice is None:
        raise PermanentError("kf_msg_or_event without OpenKfId", kind="malformed")
    who = fields.get("FromUserName", "") or open_kfid
    native_id = "|".join((who, created, event, fields.get("EventKey", "") or _digest(token)))
    meta: dict[str, Any] = {"kind": "event", "feedback": False, "msg_type": "event"}
    meta.update(
        (_snake(t), v)
        for t, v in fields.items()
        if v
        and t not in PRIVATE_FIELDS
        and t not in ("Token", "ToUserName", "CreateTime", "MsgType")
    )
    record = FeedbackEvent(
        id=stable_id(CHANNEL_WECOM, corp_id, native_id),
        channel=CHANNEL_WECOM,
        text=f"[事件] {EVENT_LABELS.get(event, event)}",
        source=source or open_kfid or corp_id,
        native_id=native_id,
        received_at=received_at,
        author=fields.get("FromUserName", ""),
        meta=meta,
        raw_ref=f"{CHANNEL_WECOM}:{connector}/{corp_id}/{native_id}",
    )
    return notice, record


_ORIGIN_KIND = {3: "message", 4: "event", 5: "servicer"}


def _kf_text(msg_type: str, body: Mapping[str, Any]) -> str:
    if msg_type == "text":
        content = body.get("content")
        if not isinstance(content, str) or not content.strip():
            raise PermanentError("text message without content", kind="malformed")
        return content
    if msg_type == "event":
        return f"[事件] {body.get('event_type', '')}".rstrip()
    placeholder = PLACEHOLDERS.get(msg_type, f"[{msg_type}]")
    detail = next((str(body[k]) for k in ("title", "name", "product_title") if body.get(k)), "")
    return f"{placeholder} {detail}" if detail else placeholder


def kf_event(
    item: Mapping[str, Any], corp_id: str, source: str = "", connector: str = ""
) -> FeedbackEvent:
    """One `sync_msg` row → an event. Only origin 3 (the WeChat customer) is feedback."""
    msgid = item.get("msgid")
    if not isinstance(msgid, str | int) or isinstance(msgid, bool) or not str(msgid):
        raise PermanentError("row without msgid", kind="malformed")
    msg_type = item.get("msgtype")
    if not isinstance(msg_type, str) or not msg_type:
        raise PermanentError(f"row {msgid}: no msgtype", kind="malformed")
    origin = item.get("origin")
    if not isinstance(origin, int) or isinstance(origin, bool):
        raise PermanentError(f"row {msgid}: origin {origin!r} is not an integer", kind="malformed")
    received_at = _unix_time(item.get("send_time"), "send_time")
    body = item.get(msg_type) or {}
    if not isinstance(body, dict):
        raise PermanentError(f"row {msgid}: {msg_type} is not an object", kind="malformed")
    open_kfid = str(item.get("open_kfid", "") or body.get("open_kfid", ""))
    kind = _ORIGIN_KIND.get(origin, "event")
    meta: dict[str, Any] = {
        "kind": kind,
        "feedback": origin == 3,
        "msg_type": msg_type,
        "origin": origin,
        "open_kfid": open_kfid,
    }
    if item.get("servicer_userid"):
        meta["servicer_userid"] = str(item["servicer_userid"])
    meta.update(
        (k, v)
        for k, v in body.items()
        if k not in ("content", "latitude", "longitude", "address", "name", "open_kfid")
        and isinstance(v, str | int | float)
        and not isinstance(v, bool)
    )
    text = _clip(_kf_text(msg_type, body), meta)
    author = item.get("external_userid") or body.get("external_userid") or ""
    native_id = str(msgid)
    return FeedbackEvent(
        id=stable_id(CHANNEL_WECOM, corp_id, native_id),
        channel=CHANNEL_WECOM,
        text=text,
        source=source or open_kfid or corp_id,
        native_id=native_id,
        received_at=received_at,
        author=str(author),
        meta=meta,
        raw_ref=f"{CHANNEL_WECOM}:{connector}/{open_kfid}/{native_id}",
    )


def _row_bytes(row: Any) -> bytes:
    try:
        return orjson.dumps(row)
    except TypeError:  # integers beyond 64 bits: keep something readable
        return repr(row).encode()


def parse_sync_msg(
    doc: Any, corp_id: str, source: str = "", connector: str = ""
) -> tuple[list[FeedbackEvent], list[BadInput]]:
    """A `sync_msg` response page → events; a bad row becomes a BadInput with its JSON
    while the good rows next to it still arrive. Raises `PermanentError` if the page
    itself is not a successful response."""
    if not isinstance(doc, dict):
        raise PermanentError("sync_msg response must be a JSON object", kind="malformed")
    if doc.get("errcode", 0) != 0:
        raise PermanentError(
            f"sync_msg error {doc.get('errcode')}: {doc.get('errmsg', '')}", kind="api_error"
        )
    rows = doc.get("msg_list", [])
    if not isinstance(rows, list):
        raise PermanentError("msg_list must be a list", kind="malformed")
    events: list[FeedbackEvent] = []
    bad: list[BadInput] = []
    for i, row in enumerate(rows):
        raw = _row_bytes(row)
        try:
            if not isinstance(row, dict):
                raise PermanentError(f"msg_list[{i}] is not an object", kind="malformed")
            events.append(kf_event(row, corp_id, source, connector))
        except PermanentError as exc:
            bad.append(
                BadInput(str(exc), raw, f"{CHANNEL_WECOM}:{connector}/msg_list[{i}]", exc.kind)
            )
    return events, bad
