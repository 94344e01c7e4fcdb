"""One export record (a JSON object or a CSV row by column name) to a `FeedbackEvent`.

Pure and shared by both formats, so a column means the same in JSON Lines and CSV.
Every refusal is a `PermanentError` whose message names the column, for the operator
reading the dead letter.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from connectors.file_drop.config import CHANNEL_RE, FileDropOptions
from ingest.codec import MAX_TEXT_CHARS, event_from_dict, parse_time, value_shape
from ingest.errors import PermanentError
from ingest.model import FeedbackEvent, stable_id

SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")
"""Times without an offset in an export are local to the site (China has had no daylight
saving time since 1991, so a fixed offset is exact and needs no tz database)."""
_EXCEL_TIME = re.compile(r"(\d{4})/(\d{1,2})/(\d{1,2})(?: (\d{1,2}):(\d{2})(?::(\d{2}))?)?\Z")
"""Excel's zh-CN display format (2024/3/1 9:05), besides ISO 8601 (a regex: strptime is
the slowest step of a CSV import otherwise)."""


@dataclass(frozen=True, slots=True)
class DropFile:
    """The file lines come from: names them in refs, gives their ids and default time."""

    name: str
    sha256: str
    mtime: datetime
    """`received_at` of a line without a time column (the export's own time)."""
    connector: str


def to_event(
    record: Mapping[str, Any], *, line: int, file: DropFile, options: FileDropOptions
) -> FeedbackEvent:
    """One export record → event, or `PermanentError` saying what is wrong with it."""
    column = options.columns
    text, full_length = _text(record.get(options.text_column), options.text_column)
    channel = _channel(record.get(column["channel"]), options.channel)
    source = _optional_str(record.get(column["source"]), column["source"]) or options.source
    native_id = _native_id(record, options.id_column)
    if native_id:
        event_id = stable_id(channel, source, native_id)
    else:
        event_id = stable_id(channel, file.sha256, str(line))
    meta = _meta(record, options.used_columns)
    if full_length > len(text):
        meta["text_truncated_from_chars"] = full_length
    fields: dict[str, Any] = {
        "id": event_id,
        "channel": channel,
        "text": text,
        "source": source,
        "native_id": native_id,
        "received_at": _received_at(
            record.get(column["received_at"]), column["received_at"], file.mtime
        ),
        "author": _author(record.get(column["author"]), column["author"]),
        "rating": record.get(column["rating"]),
        "meta": meta,
        "raw_ref": f"file_drop:{file.connector}/{file.name}:{line}",
    }
    if record.get(column["lang"]) is not None:
        fields["lang"] = record[column["lang"]]
    return event_from_dict(fields)


def _text(value: Any, column: str) -> tuple[str, int]:
    """The text (cut to MAX_TEXT_CHARS on purpose) and its full length."""
    if value is None:
        raise PermanentError(f"no text in column {column!r}", kind="missing_text")
    if not isinstance(value, str):
        raise PermanentError(
            f"column {column!r} must be a string, got {type(value).__name__}", kind="bad_schema"
        )
    text = value.strip()
    if not text:
        raise PermanentError(f"no text in column {column!r}", kind="missing_text")
    return text[:MAX_TEXT_CHARS], len(text)


def _channel(value: Any, default: str) -> str:
    if value is None or value == "":
        return default
    if not isinstance(value, str) or not CHANNEL_RE.match(value.strip().lower()):
        raise PermanentError(  # the value is not quoted: it may be personal data
            f"channel must be lower-case letters, digits and '_' (got {value_shape(value)})",
            kind="bad_schema",
        )
    return value.strip().lower()


def _optional_str(value: Any, column: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise PermanentError(
            f"column {column!r} must be a string, got {type(value).__name__}", kind="bad_schema"
        )
    return value.strip()


def _author(value: Any, column: str) -> str:
    """Phone numbers often arrive as JSON numbers; they are identities, kept as text."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return _optional_str(value, column)


def _native_id(record: Mapping[str, Any], id_column: str) -> str:
    if not id_column:
        return ""
    value = record.get(id_column)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise PermanentError(f"no id: column {id_column!r} is empty", kind="missing_id")
    if not isinstance(value, str) or len(value.strip()) > 200:
        raise PermanentError(
            f"column {id_column!r} must be a string or integer of at most 200 characters",
            kind="bad_schema",
        )
    return value.strip()


def _meta(record: Mapping[str, Any], used: frozenset[str]) -> dict[str, Any]:
    """Every column not mapped to a field; a JSON `meta` object is merged in."""
    base = record.get("meta")
    meta: dict[str, Any] = dict(base) if isinstance(base, dict) else {}
    for key, value in record.items():
        if key not in used and not (key == "meta" and isinstance(value, dict)):
            meta[key] = value
    return meta


def _received_at(value: Any, column: str, default: datetime) -> datetime:
    """ISO 8601 or Excel's 2024/3/1 9:05; without an offset a time is Asia/Shanghai."""
    if value is None or value == "":
        return default
    try:
        if isinstance(value, str):
            return parse_time(_local_time(value.strip(), column), column)
        return parse_time(value, column)
    except (OverflowError, ValueError):
        raise PermanentError(f"column {column!r} is not a valid time", kind="bad_schema") from None


def _local_time(text: str, column: str) -> datetime:
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        match = _EXCEL_TIME.match(text)
        if not match:
            raise PermanentError(
                f"column {column!r} is not a time (ISO 8601 or YYYY-MM-DD HH:MM:SS; "
                f"got {value_shape(text)})",
                kind="bad_schema",
            ) from None
        year, month, day, hour, minute, second = (int(p) for p in match.groups(default="0"))
        parsed = datetime(year, month, day, hour, minute, second)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=SHANGHAI)
