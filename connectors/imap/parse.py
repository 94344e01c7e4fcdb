"""One RFC 5322 message (raw bytes) → a `FeedbackEvent`, a `Skipped` (auto-reply,
bounce, empty) or a `BadInput` (oversized, unparseable). Pure: no I/O, no clock needed
for the id, so the same bytes always give the same event id.

Ids: `stable_id("email", native_id)` where native_id is the Message-ID without angle
brackets, or, for a message without one, `sha256:` + a hash of its Date, From and Subject
headers and its raw body. So the same mail read twice (a re-poll, a worker killed before
the cursor commit, a mailbox whose UIDVALIDITY changed, the same mail in two folders)
lands on the same record downstream.
"""

from __future__ import annotations

import binascii
import email
import email.header
import email.utils
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import Message
from typing import Any

from connectors.imap.text import (
    decode_bytes,
    html_to_text,
    strip_quotes,
    strip_subject_prefixes,
)
from ingest.abc import BadInput
from ingest.codec import MAX_MESSAGE_BYTES, MAX_TEXT_CHARS
from ingest.model import FeedbackEvent, stable_id

CHANNEL = "email"
RAW_KEEP_BYTES = MAX_MESSAGE_BYTES // 2
"""A dead-lettered message keeps at most this many of its first bytes: a dead letter is
one bus message (1 MiB) with its headers. The whole mail stays on the IMAP server."""
MAX_BODY_CHARS = 4 * MAX_TEXT_CHARS
"""Body text cleaned per mail: the event keeps MAX_TEXT_CHARS; the margin is for the
quoted history and signature cut away from what is read. A longer body's
`meta.text_truncated_from_chars` is therefore at most about this."""
MAX_HTML_CHARS = 10 * MAX_TEXT_CHARS
"""HTML read per part: markup is several times its text (Outlook's about 4 times), and
what is cut is the end of the mail, where the quoted history sits."""
MAX_PARTS = 500
MAX_DEPTH = 30
MAX_REFERENCES = 20
_HTML_STUB = re.compile(
    r"(html|超文本).{0,40}(client|viewer|客户端|阅读|查看|显示)|不支持.{0,10}(html|超文本)",
    re.I | re.S,
)
_AUTO_REPLY_SUBJECT = re.compile(
    r"^\s*(自动回复|自動回覆|自动答复|Automatic reply|Auto(-| )?reply|Autoreply|"
    r"Out of (the )?Office|AutoAntwort|Réponse automatique)\s*[:：]",
    re.I,
)
_BOUNCE_SENDER = re.compile(r"^(mailer-daemon|postmaster)@", re.I)
_BASE64_LINE = re.compile(rb"^[A-Za-z0-9+/]+=*$")
_MSGID = re.compile(r"<([^<>\s]{1,500})>")


@dataclass(frozen=True, slots=True)
class MailContext:
    """Where a message came from; everything here is optional for offline parsing."""

    connector: str = "imap"
    source: str = ""
    folder: str = "INBOX"
    internaldate: datetime | None = None
    """The server's arrival time (IMAP INTERNALDATE): `received_at` when known."""
    raw_ref: str = ""
    size: int | None = None
    """RFC822.SIZE as the server reported it, when only part of the mail was fetched."""


@dataclass(frozen=True, slots=True)
class Skipped:
    """Not feedback on purpose (an auto-reply, a bounce, an empty mail): counted, not
    dead-lettered. `reason` is a short bounded label, `detail` says why."""

    reason: str
    detail: str
    native_id: str = ""


Outcome = FeedbackEvent | Skipped | BadInput


def parse_message(raw: bytes, ctx: MailContext, *, max_message_bytes: int) -> Outcome:
    """The outcome of one message; never raises for bad input."""
    size = ctx.size if ctx.size is not None else len(raw)
    if size > max_message_bytes:
        return BadInput(
            f"message is {size} bytes, the limit (max_message_bytes) is {max_message_bytes}",
            raw[:RAW_KEEP_BYTES],
            ref=ctx.raw_ref,
            kind="oversized",
        )
    if not raw.strip():
        return BadInput("empty message", raw, ref=ctx.raw_ref, kind="malformed")
    try:
        return _parse(raw, ctx)
    except RecursionError:
        reason = "MIME structure nested too deeply"
    except Exception as exc:  # the stdlib email package has parse bugs on hostile input
        reason = f"unparseable message: {type(exc).__name__}: {str(exc)[:200]}"
    return BadInput(reason, raw[:RAW_KEEP_BYTES], ref=ctx.raw_ref, kind="malformed")


def _parse(raw: bytes, ctx: MailContext) -> Outcome:
    msg = email.message_from_bytes(raw, policy=policy.compat32)
    if not _looks_like_mail(msg):
        return BadInput(
            "not an e-mail message: no From, Date, Subject or Message-ID header",
            raw[:RAW_KEEP_BYTES],
            ref=ctx.raw_ref,
            kind="malformed",
        )
    message_id = _message_id(header_text(msg, "Message-ID"))
    native_id = message_id or "sha256:" + _content_hash(msg, raw)
    skipped = _automatic(msg)
    if skipped:
        return Skipped(skipped[0], skipped[1], native_id)
    subject = " ".join(header_text(msg, "Subject").split())
    from_name, author = _address(msg, "From")
    body = _Body()
    body.collect(msg, 0)
    text_body = body.text()
    if _is_dsn(body):
        return Skipped("bounce", "multipart/report delivery status", native_id)
    text_body = _drop_trailing_address(text_body, author)
    clean_subject = strip_subject_prefixes(subject)
    parts = [p for p in (clean_subject, text_body) if p]
    if not text_body and body.attachments:
        names = "、".join(a["name"] or a["type"] for a in body.attachments[:10])
        parts.append(f"（无正文，附件：{names}）")
    if not parts:
        return Skipped("empty", "no subject, no text and no attachment", native_id)
    text = "\n".join(parts)
    meta = _meta(msg, message_id, subject, from_name, body, ctx)
    if len(text) > MAX_TEXT_CHARS:
        meta["text_truncated_from_chars"] = len(text)
        text = text[:MAX_TEXT_CHARS]
    replaced = text.count("\ufffd")
    if replaced:  # bytes no charset could read: says why a word may be missing
        meta["replacement_chars"] = replaced
    received = ctx.internaldate or _received_at(msg)
    fields: dict[str, Any] = {}
    if received is not None:
        fields["received_at"] = received
    return FeedbackEvent(
        id=stable_id(CHANNEL, native_id),
        channel=CHANNEL,
        text=text,
        source=ctx.source,
        native_id=native_id,
        author=author,
        meta=meta,
        raw_ref=ctx.raw_ref,
        **fields,
    )


def _drop_trailing_address(text: str, address: str) -> str:
    """Foxmail signs with the sender's bare address above the quoted history."""
    lines = text.split("\n")
    while address and lines and lines[-1].strip().lower() in (address, ""):
        lines.pop()
    return "\n".join(lines).strip()


def _looks_like_mail(msg: Message) -> bool:
    return any(raw_header(msg, h) is not None for h in ("From", "Date", "Subject", "Message-ID"))


# --- headers ----------------------------------------------------------------------


def raw_headers(msg: Message, name: str) -> list[str]:
    """Every value of a header as received (8-bit bytes kept as surrogate escapes): the
    compat32 accessors would wrap 8-bit values in `Header` objects that fail on str()."""
    wanted = name.lower()
    return [str(v) for k, v in msg.raw_items() if k.lower() == wanted]


def raw_header(msg: Message, name: str) -> str | None:
    values = raw_headers(msg, name)
    return values[0] if values else None


def header_text(msg: Message, name: str) -> str:
    """A header decoded: RFC 2047 words (adjacent words' bytes joined before decoding, so
    a character split across words survives), GB labels read as GB18030, encoded words
    inside quotes, and raw 8-bit headers (UTF-8, else GB18030)."""
    value = raw_header(msg, name)
    return "" if value is None else decode_header_value(value)


def decode_header_value(value: str) -> str:
    raw = value.encode("ascii", "surrogateescape")
    if not raw.isascii():  # raw 8-bit header (no encoded words)
        text, _ = decode_bytes(raw)
        return _unfold(text)
    try:
        pieces = email.header.decode_header(value)
    except (ValueError, IndexError, AssertionError, LookupError):
        return _unfold(value)
    out = []
    for chunk, charset in pieces:
        if isinstance(chunk, str):
            out.append(chunk)
        else:
            out.append(decode_bytes(chunk, charset)[0])
    return _unfold("".join(out))


def _unfold(text: str) -> str:
    return re.sub(r"\r?\n[ \t]+", " ", text).replace("\x00", "").strip()


def _address(msg: Message, name: str) -> tuple[str, str]:
    """(display name decoded, address) of the first address in a header."""
    raw = raw_header(msg, name)
    if raw is None:
        return "", ""
    addresses = email.utils.getaddresses([raw])
    for display, addr in addresses:
        if addr and "@" in addr:
            return decode_header_value(display), addr.strip().lower()
    return decode_header_value(raw), ""


def _addresses(msg: Message, name: str) -> list[str]:
    return [
        addr.strip().lower()
        for _, addr in email.utils.getaddresses(raw_headers(msg, name))
        if addr and "@" in addr
    ][:50]


def _message_id(value: str) -> str:
    match = _MSGID.search(value)
    if match:
        return match.group(1)
    value = value.strip()
    return value if value and " " not in value and len(value) <= 500 else ""


def _ids(value: str) -> list[str]:
    return [m.group(1) for m in _MSGID.finditer(value)]


def _content_hash(msg: Message, raw: bytes) -> str:
    """Fallback identity of a mail without Message-ID: Date, From, Subject as sent (raw
    header values) and the raw body bytes."""
    _, sep, body = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
    digest = hashlib.sha256()
    for name in ("Date", "From", "Subject"):
        digest.update((raw_header(msg, name) or "").encode("utf-8", "surrogateescape") + b"\x1f")
    digest.update(body if sep else b"")
    return digest.hexdigest()[:32]


def _automatic(msg: Message) -> tuple[str, str] | None:
    """(reason, detail) if the mail was sent by a machine, not a customer."""
    auto = header_text(msg, "Auto-Submitted").lower()
    if auto and auto != "no":
        return "auto_reply", f"Auto-Submitted: {auto[:60]}"
    for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponder"):
        if raw_header(msg, name) is not None:
            return "auto_reply", f"{name} header"
    precedence = header_text(msg, "Precedence").lower()
    if precedence == "auto_reply":
        return "auto_reply", "Precedence: auto_reply"
    ctype = msg.get_content_type()
    report = (msg.get_param("report-type") or "") if ctype == "multipart/report" else ""
    if isinstance(report, str) and report.lower() == "delivery-status":
        return "bounce", "multipart/report; report-type=delivery-status"
    if isinstance(report, str) and report.lower() == "disposition-notification":
        return "read_receipt", "multipart/report; report-type=disposition-notification"
    sender = _address(msg, "From")[1]
    return_path = header_text(msg, "Return-Path")
    if _BOUNCE_SENDER.match(sender) or (return_path.strip() == "<>" and "report" in ctype):
        return "bounce", f"sent by {sender or 'the null sender'}"
    subject = header_text(msg, "Subject")
    if _AUTO_REPLY_SUBJECT.match(subject):
        return "auto_reply", f"subject {subject[:40]!r}"
    return None


def _received_at(msg: Message) -> datetime | None:
    """When our server received it (top Received header), else the sender's Date."""
    for value in raw_headers(msg, "Received"):
        _, _, when = value.rpartition(";")
        parsed = _date(when)
        if parsed:
            return parsed
    return _date(raw_header(msg, "Date") or "")


def _date(value: str) -> datetime | None:
    value = value.strip()
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed is None or not 1990 <= parsed.year <= 2200:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        return None


# --- body -------------------------------------------------------------------------


class _Body:
    """The text parts and the attachment list of one message."""

    def __init__(self) -> None:
        self.plain: list[str] = []
        self.html: list[str] = []
        self.attachments: list[dict[str, Any]] = []
        self.types: set[str] = set()
        self.parts = 0
        self.charsets: set[str] = set()

    def collect(self, part: Message, depth: int) -> None:
        self.parts += 1
        if depth > MAX_DEPTH or self.parts > MAX_PARTS:
            raise ValueError("MIME structure too deep or too many parts")
        ctype = part.get_content_type()
        self.types.add(ctype)
        if ctype == "message/rfc822" or ctype.startswith("message/"):
            self._attachment(part, ctype)
            return
        if part.is_multipart():
            payload = part.get_payload()
            if isinstance(payload, list):
                for sub in payload:
                    if isinstance(sub, Message):
                        self.collect(sub, depth + 1)
            return
        disposition = (part.get_content_disposition() or "").lower()
        if disposition == "attachment" or ctype not in ("text/plain", "text/html"):
            if ctype in ("text/plain", "text/html") and not _filename(part):
                pass  # an inline text part labelled oddly: still text
            else:
                self._attachment(part, ctype)
                return
        data = _payload_bytes(part)
        text, codec = decode_bytes(data, part.get_content_charset(), html=ctype == "text/html")
        self.charsets.add(codec)
        (self.html if ctype == "text/html" else self.plain).append(text)

    def _attachment(self, part: Message, ctype: str) -> None:
        if len(self.attachments) >= 100:
            return
        if ctype.startswith("message/"):
            inner = part.get_payload()
            first = inner[0] if isinstance(inner, list) and inner else None
            name = header_text(first, "Subject") if isinstance(first, Message) else ""
            size = len(first.as_bytes()) if isinstance(first, Message) else 0
        else:
            name = _filename(part)
            size = len(_payload_bytes(part))
        self.attachments.append({"name": name[:200], "type": ctype, "size": size})

    def text(self) -> str:
        """The cleaned body; only its first MAX_BODY_CHARS (MAX_HTML_CHARS of each HTML
        part) are read, so a huge or hostile body costs a bounded time in the poll."""
        plain = "\n\n".join(t.strip() for t in self.plain if t.strip())
        if (plain and not _HTML_STUB.search(plain[:300])) or (plain and not self.html):
            return strip_quotes(plain[:MAX_BODY_CHARS])
        html = "\n\n".join(html_to_text(h[:MAX_HTML_CHARS]) for h in self.html)
        return strip_quotes(html[:MAX_BODY_CHARS])


def _is_dsn(body: _Body) -> bool:
    return "message/delivery-status" in body.types or "message/global-delivery-status" in body.types


def _filename(part: Message) -> str:
    """RFC 2231 (`filename*=`) or RFC 2047 encoded names, GB labels read as GB18030."""
    try:
        value = part.get_param("filename", header="content-disposition")
        if value is None:
            value = part.get_param("name", header="content-type")
    except (ValueError, IndexError, LookupError):
        return ""
    if value is None:
        return ""
    if isinstance(value, tuple):  # RFC 2231: (charset, language, %-decoded latin-1 text)
        charset, _, text = value
        data = str(text).encode("raw-unicode-escape", "replace")
        return decode_bytes(data, charset or "utf-8")[0].strip()
    return decode_header_value(str(value).strip('"'))


def _payload_bytes(part: Message) -> bytes:
    """Transfer encoding (base64, quoted-printable) undone. Broken base64 keeps the lines
    that decode (the email package would return the undecoded text instead)."""
    cte = (raw_header(part, "Content-Transfer-Encoding") or "").strip().lower()
    payload = part.get_payload()
    if cte == "base64" and isinstance(payload, str):
        raw = payload.encode("ascii", "replace")
        try:
            return binascii.a2b_base64(b"".join(raw.split()), strict_mode=True)
        except binascii.Error:
            lines = [ln.strip() for ln in raw.splitlines() if _BASE64_LINE.match(ln.strip())]
            joined = b"".join(lines).rstrip(b"=")
            joined = joined[: len(joined) - len(joined) % 4]
            try:
                return binascii.a2b_base64(joined)
            except binascii.Error:
                return b""
    data = part.get_payload(decode=True)
    if isinstance(data, bytes):
        return data
    return payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else b""


def _meta(
    msg: Message, message_id: str, subject: str, from_name: str, body: _Body, ctx: MailContext
) -> dict[str, Any]:
    in_reply_to = _ids(header_text(msg, "In-Reply-To"))
    references = _ids(header_text(msg, "References"))
    thread_root = (references or in_reply_to or [message_id])[0]
    meta: dict[str, Any] = {
        "subject": subject[:1000],
        "message_id": message_id,
        "thread_id": stable_id(CHANNEL, thread_root) if thread_root else "",
        "folder": ctx.folder,
    }
    if thread_root:
        meta["thread_root"] = thread_root
    if in_reply_to:
        meta["in_reply_to"] = in_reply_to[0]
    if references:
        meta["references"] = references[-MAX_REFERENCES:]
    if from_name:
        meta["from_name"] = from_name[:200]
    for name in ("To", "Cc"):
        addresses = _addresses(msg, name)
        if addresses:
            meta[name.lower()] = addresses
    sent = _date(raw_header(msg, "Date") or "")
    if sent:
        meta["sent_at"] = sent.isoformat()
    if body.attachments:
        meta["attachments"] = body.attachments
    if not body.plain and body.html:
        meta["html_only"] = True
    return meta
