"""orjson wire format of the bus (a contract: shared/docs/architecture.md).

    feedback.ingress:    {"schema": 1, "event":  {...FeedbackEvent fields...}}
    feedback.classified: {"schema": 1, "record": {...FeedbackRecord fields...}}

Decoding is the boundary where outside bytes become typed values, so every
check lives here and every failure is a `PermanentError` saying what is wrong.
Any producer may publish to `feedback.ingress`: only `id`, `channel` and `text`
are required, everything else has a default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson

from ingest.errors import PermanentError
from ingest.model import (
    KINDS,
    STATUSES,
    URGENCY_LEVELS,
    FeedbackEvent,
    FeedbackRecord,
    Reason,
    Sentiment,
    Turn,
)

SCHEMA = 1
MAX_MESSAGE_BYTES = 1 << 20
"""A bus message above 1 MiB is refused: no customer writes that much, and one
huge body must not stall a worker."""
MAX_TEXT_CHARS = 50_000
"""Longest `text` accepted; longer feedback is truncated by connectors on purpose,
anything longer reaching the bus is a producer bug and is dead-lettered."""
_SHAPE_SAMPLE_CHARS = 1000
_ROLES = ("customer", "agent", "system")
_LABELS = ("negative", "neutral", "positive")


def _dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)


# orjson serialises (slotted) dataclasses itself, byte for byte what `asdict` would
# give, ten times faster: `asdict` deep-copies every field and was a fifth of the
# classification chain's time.


def encode_event(event: FeedbackEvent) -> bytes:
    return _dumps({"schema": SCHEMA, "event": event})


def encode_record(record: FeedbackRecord) -> bytes:
    return _dumps({"schema": SCHEMA, "record": record})


def record_to_dict(record: FeedbackRecord) -> dict[str, Any]:
    """JSON-ready dict (timestamps as ISO 8601 strings)."""
    result: dict[str, Any] = orjson.loads(_dumps(record))
    return result


def event_to_dict(event: FeedbackEvent) -> dict[str, Any]:
    result: dict[str, Any] = orjson.loads(_dumps(event))
    return result


def _envelope(body: bytes, key: str) -> Mapping[str, Any]:
    if len(body) > MAX_MESSAGE_BYTES:
        raise PermanentError(
            f"message is {len(body)} bytes, the limit is {MAX_MESSAGE_BYTES}", kind="oversized"
        )
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise PermanentError(f"not JSON: {exc}", kind="bad_json") from None
    if not isinstance(doc, dict):
        raise PermanentError("message is not a JSON object", kind="bad_schema")
    if doc.get("schema") != SCHEMA:
        raise PermanentError(
            f"unknown schema ({value_shape(doc.get('schema'))}), expected {SCHEMA!r}",
            kind="bad_schema",
        )
    inner = doc.get(key)
    if not isinstance(inner, dict):
        raise PermanentError(f"message has no {key!r} object", kind="bad_schema")
    return inner


def decode_event(body: bytes) -> FeedbackEvent:
    return event_from_dict(_envelope(body, "event"))


def decode_record(body: bytes) -> FeedbackRecord:
    return record_from_dict(_envelope(body, "record"))


# --- field readers: each names the field it refuses -------------------------


def _str(d: Mapping[str, Any], key: str, default: str | None = None) -> str:
    value = d.get(key, default)
    if value is None and default is not None:
        return default
    if isinstance(value, int) and not isinstance(value, bool) and key in ("id", "native_id"):
        return str(value)  # vendor ids are numbers in some channels; we keep strings
    if not isinstance(value, str):
        if value is None:
            raise PermanentError(f"field {key!r} is required", kind="bad_schema")
        raise PermanentError(
            f"field {key!r} must be a string, got {type(value).__name__}", kind="bad_schema"
        )
    return value


def _opt_int(d: Mapping[str, Any], key: str, lo: int, hi: int) -> int | None:
    value = d.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip().isdecimal():  # isdigit() takes "⑤", int() not
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise PermanentError(f"field {key!r} must be an integer {lo}..{hi}", kind="bad_schema")
    return value


def _opt_float(d: Mapping[str, Any], key: str) -> float | None:
    value = d.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PermanentError(f"field {key!r} must be a number", kind="bad_schema")
    return float(value)


def value_shape(value: Any) -> str:
    """What a refused value looks like, never what it says: a reason is logged and kept
    with the dead letter, and a value may be personal data (the dead letter's body
    keeps the original bytes for whoever may see them). For a string its length and
    the kinds of character in its first 1,000 ("14 characters: digits, letters
    (non-ASCII), spaces"; a longer scan would let a hostile value cost time), else its
    type."""
    if not isinstance(value, str):
        return type(value).__name__
    sample = value[:_SHAPE_SAMPLE_CHARS]
    kinds = {
        "digits": any(c.isdecimal() for c in sample),
        "letters (ASCII)": any(c.isascii() and c.isalpha() for c in sample),
        "letters (non-ASCII)": any(not c.isascii() and c.isalpha() for c in sample),
        "spaces": any(c.isspace() for c in sample),
        "other": any(not (c.isdecimal() or c.isalpha() or c.isspace()) for c in sample),
    }
    present = [kind for kind, found in kinds.items() if found]
    length = f"{len(value)} character" + ("" if len(value) == 1 else "s")
    return length + (f": {', '.join(present)}" if present else "")


def parse_time(value: Any, key: str) -> datetime:
    """ISO 8601 (offset required, or 'Z') or Unix seconds; always returned in UTC."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        try:
            parsed = datetime.fromtimestamp(float(value), UTC)
        except (OverflowError, OSError, ValueError):
            raise PermanentError(f"field {key!r} is not a valid time", kind="bad_schema") from None
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise PermanentError(  # described, not quoted: it may be personal data
                f"field {key!r} is not ISO 8601 (got {value_shape(value)})", kind="bad_schema"
            ) from None
    else:
        raise PermanentError(f"field {key!r} must be a time", kind="bad_schema")
    if parsed.tzinfo is None:
        raise PermanentError(f"field {key!r} has no UTC offset", kind="bad_schema")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 is before datetime.min in UTC
        raise PermanentError(f"field {key!r} is out of range", kind="bad_schema") from None


def _time(d: Mapping[str, Any], key: str, default: datetime) -> datetime:
    value = d.get(key)
    return default if value is None else parse_time(value, key)


def _turns(d: Mapping[str, Any]) -> tuple[Turn, ...]:
    raw = d.get("turns") or ()
    if not isinstance(raw, list | tuple):
        raise PermanentError("field 'turns' must be a list", kind="bad_schema")
    turns = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise PermanentError(f"turns[{i}] must be an object", kind="bad_schema")
        role = item.get("role", "customer")
        if role not in _ROLES:
            raise PermanentError(f"turns[{i}].role must be one of {_ROLES}", kind="bad_schema")
        turns.append(
            Turn(
                role=role,
                text=_str(item, "text", ""),
                start_ms=_opt_int(item, "start_ms", 0, 2**53),
                end_ms=_opt_int(item, "end_ms", 0, 2**53),
                energy=_opt_float(item, "energy"),
                sentiment=_opt_float(item, "sentiment"),
            )
        )
    return tuple(turns)


def _meta(d: Mapping[str, Any]) -> dict[str, Any]:
    meta = d.get("meta") or {}
    if not isinstance(meta, dict):
        raise PermanentError("field 'meta' must be an object", kind="bad_schema")
    return meta


def _text(d: Mapping[str, Any]) -> str:
    text = _str(d, "text")
    if len(text) > MAX_TEXT_CHARS:
        raise PermanentError(
            f"field 'text' has {len(text)} characters, the limit is {MAX_TEXT_CHARS}",
            kind="oversized",
        )
    return text


def event_from_dict(d: Mapping[str, Any], *, now: datetime | None = None) -> FeedbackEvent:
    now = now or datetime.now(UTC)
    event_id = _str(d, "id")
    if not event_id or len(event_id) > 200:
        raise PermanentError("field 'id' must be 1..200 characters", kind="bad_schema")
    return FeedbackEvent(
        id=event_id,
        channel=_str(d, "channel"),
        text=_text(d),
        source=_str(d, "source", ""),
        native_id=_str(d, "native_id", ""),
        received_at=_time(d, "received_at", now),
        ingested_at=_time(d, "ingested_at", now),
        author=_str(d, "author", ""),
        turns=_turns(d),
        rating=_opt_int(d, "rating", 1, 5),
        lang=_str(d, "lang", "zh"),
        meta=_meta(d),
        raw_ref=_str(d, "raw_ref", ""),
    )


def _choice(d: Mapping[str, Any], key: str, allowed: tuple[str, ...], default: str) -> Any:
    value = d.get(key, default)
    if value not in allowed:
        raise PermanentError(f"field {key!r} must be one of {allowed}", kind="bad_schema")
    return value


def _sentiment(d: Mapping[str, Any]) -> Sentiment | None:
    raw = d.get("sentiment")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise PermanentError("field 'sentiment' must be an object", kind="bad_schema")
    snow, score = _opt_float(raw, "snownlp"), _opt_float(raw, "score")
    if snow is None or score is None:
        raise PermanentError("sentiment needs 'snownlp' and 'score'", kind="bad_schema")
    return Sentiment(snownlp=snow, score=score, label=_choice(raw, "label", _LABELS, "neutral"))


def _reasons(d: Mapping[str, Any]) -> tuple[Reason, ...]:
    raw = d.get("reasons") or ()
    if not isinstance(raw, list | tuple):
        raise PermanentError("field 'reasons' must be a list", kind="bad_schema")
    out = []
    for r in raw:
        if not isinstance(r, dict):
            raise PermanentError("each reason must be an object", kind="bad_schema")
        out.append(Reason(_str(r, "signal"), _str(r, "detail", ""), _opt_float(r, "weight") or 0))
    return tuple(out)


def record_from_dict(d: Mapping[str, Any]) -> FeedbackRecord:
    event = event_from_dict(d)
    due = d.get("due_at")
    pii = d.get("pii_found") or ()
    if not isinstance(pii, list | tuple) or not all(isinstance(p, str) for p in pii):
        raise PermanentError("field 'pii_found' must be a list of strings", kind="bad_schema")
    return replace(
        FeedbackRecord.from_event(event),
        text_masked=_str(d, "text_masked", event.text),
        customer_ref=_str(d, "customer_ref", ""),
        kind=_choice(d, "kind", KINDS, "complaint"),
        sentiment=_sentiment(d),
        urgency=_choice(d, "urgency", URGENCY_LEVELS, "general"),
        category=_str(d, "category", ""),
        business=_str(d, "business", ""),
        reasons=_reasons(d),
        due_at=None if due is None else parse_time(due, "due_at"),
        status=_choice(d, "status", STATUSES, "open"),
        owner=_str(d, "owner", ""),
        repeat_count=_opt_int(d, "repeat_count", 0, 2**31) or 0,
        pii_found=tuple(pii),
        processed_at=_time(d, "processed_at", event.ingested_at),
    )
