"""Pure: one transcript payload (bytes, plus its sidecar) → one call event or one dead
letter. No I/O, no clock: the caller passes `received_at`.

The steps, each refusing with a reason a person can act on: size limit, text decoding
(UTF-8, kept with U+FFFD for a few bad bytes; GB18030 detected, since Chinese Windows
tools write it while calling it UTF-8), JSON, an optional envelope
`{"meta": {...}, "transcript": {...}}`, the format (configured or detected), the
vendor parser, call metadata (sidecar > envelope > transcript), then the event: the
customer's words as `text`, the whole dialogue as `turns`, the signals in `meta`. The
id is `stable_id("phone", source, call_id)`, so a transcript delivered twice, by file
or webhook, lands on one record.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson

from connectors.transcripts import parse_alibaba, parse_contact_lens, parse_generic
from connectors.transcripts.call import Call, Refused, obj, opt_text
from connectors.transcripts.config import DEAD_LETTER_BYTES, TranscriptsOptions
from connectors.transcripts.signals import call_signals
from ingest.abc import BadInput
from ingest.codec import MAX_MESSAGE_BYTES, MAX_TEXT_CHARS, encode_event, value_shape
from ingest.model import FeedbackEvent, Turn, stable_id
from ingest.text_bytes import mostly_utf8_text

CHANNEL = "phone"
LOCAL_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")
"""Times without an offset (as PBX exports write them) are China Standard Time (no
daylight saving since 1991: a fixed offset is exact and needs no tz database)."""
EVENT_BYTES_BUDGET = MAX_MESSAGE_BYTES - (64 << 10)
"""An event must fit in one bus message with room for headers."""
SIDECAR_FIELDS = ("call_id", "agent_id", "queue", "caller", "started_at")
_DETECTORS: tuple[tuple[str, Callable[[Mapping[str, Any]], bool]], ...] = (
    ("contact_lens", parse_contact_lens.looks_like),
    ("alibaba", parse_alibaba.looks_like),
    ("generic", parse_generic.looks_like),
)
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def decode_json(data: bytes, what: str = "transcript") -> tuple[Any, str, int]:
    """(document, encoding it was read in, U+FFFD put in for bad bytes). JSON is UTF-8
    (RFC 8259); a BOM is tolerated, UTF-8 with a few bad bytes (a stray cp1252 byte, a
    character cut) stays UTF-8 with U+FFFD in their place, UTF-16 with a BOM and
    GB18030 (GBK) are detected and read."""
    encoding, replaced = "utf-8", 0
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        content: str | bytes = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        content, encoding, replaced = _other_encoding(data, exc, what)
    try:
        return orjson.loads(content), encoding, replaced
    except orjson.JSONDecodeError as exc:
        raise Refused(f"{what} is not JSON ({encoding}): {exc}", "bad_json") from None


def _other_encoding(data: bytes, error: UnicodeDecodeError, what: str) -> tuple[str, str, int]:
    """Read as GB18030, one stray byte in a UTF-8 file turns every word into mojibake
    (盗刷 and 冻结 with them) or fails: mostly-UTF-8 bytes are tried first."""
    if data.startswith(_UTF16_BOMS):
        try:
            return data.decode("utf-16"), "utf-16", 0
        except UnicodeDecodeError:
            pass
    lenient = mostly_utf8_text(data)
    if lenient is not None:
        return lenient[0], "utf-8", lenient[1]
    try:
        return data.decode("gb18030"), "gb18030", 0
    except UnicodeDecodeError:
        raise Refused(
            f"{what} is neither UTF-8 nor GB18030: invalid byte {data[error.start]:#04x} "
            f"at offset {error.start}",
            "bad_encoding",
        ) from None


def detect(doc: Mapping[str, Any]) -> str:
    for name, looks_like in _DETECTORS:
        if looks_like(doc):
            return name
    keys = ", ".join(sorted(str(k) for k in doc)[:12])
    raise Refused(f"unknown transcript format (top-level keys: {keys or 'none'})", "unknown_format")


def _unwrap(doc: Any) -> tuple[Mapping[str, Any], dict[str, Any]]:
    """The vendor document and the envelope's call metadata, if it is wrapped."""
    top = obj(doc, "the transcript")
    if isinstance(top.get("transcript"), dict):
        meta = obj(top.get("meta", {}), "meta")
        return top["transcript"], dict(meta)
    return top, {}


def _sidecar(data: bytes | None) -> tuple[dict[str, Any], int]:
    """The sidecar's fields and the U+FFFD put in decoding it."""
    if data is None:
        return {}, 0
    try:
        doc, _, replaced = decode_json(data, "sidecar")
        return dict(obj(doc, "sidecar")), replaced
    except Refused as exc:
        raise Refused(f"sidecar .meta.json: {exc.reason}", "bad_sidecar") from None


def _vendor_time(value: Any) -> datetime | None:
    """The vendor's own time, if it reads as one (it is a fallback, never a refusal)."""
    try:
        return _when(value)
    except Refused:
        return None


def _when(value: Any) -> datetime | None:
    """ISO 8601 (no offset: China time) or Unix seconds (ms above 1e11)."""
    if value is None or value == "":
        return None
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            seconds = value / 1000 if value > 1e11 else value
            return datetime.fromtimestamp(seconds, UTC)
        if isinstance(value, str):
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            local = parsed if parsed.tzinfo else parsed.replace(tzinfo=LOCAL_TZ)
            return local.astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        pass
    raise Refused(f"started_at is not a time ({value_shape(value)})", "bad_meta")


def _apply_metadata(call: Call, meta: Mapping[str, Any]) -> None:
    for key in SIDECAR_FIELDS:
        if meta.get(key) not in (None, ""):
            value = meta[key] if key == "started_at" else opt_text(meta[key], f"meta.{key}")
            setattr(call, key, value)


def parse_call(
    data: bytes,
    options: TranscriptsOptions,
    *,
    name: str = "",
    sidecar: bytes | None = None,
) -> tuple[Call, dict[str, Any]]:
    """Bytes → (Call, what the event's meta says about decoding); raises `Refused`."""
    if len(data) > options.max_file_bytes:
        raise Refused(
            f"{len(data)} bytes, the limit is max_file_bytes = {options.max_file_bytes}",
            "oversized",
        )
    raw_doc, encoding, replaced = decode_json(data)
    doc, meta = _unwrap(raw_doc)
    sidecar_meta, sidecar_replaced = _sidecar(sidecar)
    meta.update(sidecar_meta)
    name = str(meta.get("file_name") or name)
    fmt = options.format if options.format != "auto" else detect(doc)
    if options.format != "auto" and not dict(_DETECTORS)[fmt](doc):
        raise Refused(f"not a {fmt} transcript (format = {fmt!r} is configured)", "wrong_format")
    if fmt == "alibaba":
        call = parse_alibaba.parse(doc, options)
    elif fmt == "contact_lens":
        call = parse_contact_lens.parse(doc, options, name)
    else:
        call = parse_generic.parse(doc)
    _apply_metadata(call, meta)
    return call, _decoding_meta(encoding, replaced + sidecar_replaced)


def _decoding_meta(encoding: str, replaced: int) -> dict[str, Any]:
    """`meta.encoding` when it was not UTF-8; `meta.replacement_chars` (as the imap
    connector writes it) when bad bytes were replaced: says why a word may be missing."""
    meta: dict[str, Any] = {}
    if encoding != "utf-8":
        meta["encoding"] = encoding
    if replaced:
        meta["replacement_chars"] = replaced
    return meta


def build_event(
    call: Call, options: TranscriptsOptions, *, received_at: datetime, raw_ref: str = ""
) -> FeedbackEvent:
    """The event of a parsed call; raises `Refused` if it cannot be one."""
    if not call.call_id:
        raise Refused(
            "no call id: give call_id in a sidecar or envelope (or the vendor's own id)",
            "no_call_id",
        )
    if not call.turns:
        raise Refused("the transcript has no spoken turns", "empty")
    said = [t.text for t in call.turns if t.role == "customer"]
    if not said:
        raise Refused(
            f"no customer speech among {len(call.turns)} turns: check which track or "
            "participant is the customer (alibaba_customer_channel / "
            "alibaba_customer_speaker / contact_lens_customer_role)",
            "no_customer",
        )
    if call.duration_ms is None:
        call.duration_ms = max(t.end_ms for t in call.turns)
    text = "\n".join(said)
    meta: dict[str, Any] = {
        "format": call.format,
        "call_id": call.call_id,
        "agent_id": call.agent_id,
        "queue": call.queue,
        "duration_ms": call.duration_ms,
        "signals": call_signals(call),
        "vendor": call.vendor,
    }
    if len(text) > MAX_TEXT_CHARS:
        meta["text_truncated_from_chars"] = len(text)
        text = text[:MAX_TEXT_CHARS]
    language = str(call.vendor.get("language_code") or "zh")
    event = FeedbackEvent(
        id=stable_id(CHANNEL, options.source, call.call_id),
        channel=CHANNEL,
        text=text,
        source=options.source,
        native_id=call.call_id,
        received_at=_when(call.started_at) or _vendor_time(call.produced_at) or received_at,
        author=call.caller,
        turns=tuple(
            Turn(t.role, t.text, t.start_ms, t.end_ms, t.energy, t.sentiment) for t in call.turns
        ),
        lang=language.split("-")[0].lower() or "zh",
        meta=meta,
        raw_ref=raw_ref,
    )
    size = len(encode_event(event))
    if size > EVENT_BYTES_BUDGET:
        raise Refused(f"the call is too long for one bus message ({size} bytes)", "oversized")
    return event


def parse_transcript(
    data: bytes,
    options: TranscriptsOptions,
    *,
    received_at: datetime,
    name: str = "",
    sidecar: bytes | None = None,
    ref: str = "",
) -> tuple[list[FeedbackEvent], list[BadInput]]:
    """One payload → ([event], []) or ([], [dead letter with the original bytes])."""
    try:
        call, decoding = parse_call(data, options, name=name, sidecar=sidecar)
        event = build_event(call, options, received_at=received_at, raw_ref=ref)
    except Refused as exc:
        return [], [BadInput(exc.reason, data[:DEAD_LETTER_BYTES], ref, exc.kind)]
    event.meta.update(decoding)
    return [event], []
