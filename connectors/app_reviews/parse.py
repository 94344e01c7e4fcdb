"""What the three stores' parsers share (pure, no I/O, no clock): JSON loading, the
event every review becomes, and the result of parsing one page.

Event shape: channel `app_review`, source `<store>:<app>`, id = stable_id(channel,
store, app, review id) so an edited review updates its record instead of adding one;
`received_at` = when the store last changed the review (or created it); `rating` the
stars; `author` the reviewer's nickname; app version, country/territory and device
in `meta`, with the store's own field values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from connectors.app_reviews.cursor import Found
from ingest.abc import BadInput
from ingest.codec import MAX_TEXT_CHARS
from ingest.errors import PermanentError
from ingest.model import FeedbackEvent, stable_id

CHANNEL = "app_review"
APP_STORE = "app_store"
GOOGLE_PLAY = "google_play"
HUAWEI = "huawei_appgallery"
MAX_ID_CHARS = 200
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
"""Review times outside these are the store's error: dead-lettered, never a watermark
(a year-9999 time would put every later review behind it)."""
INT64 = 2**63
"""Integers in meta stay within a signed 64-bit range (orjson and bigint columns);
larger ones are kept as their digits."""


@dataclass(slots=True)
class Page:
    """One page of a store's answer: the reviews, the items that could not be used,
    and where the next page is (a link, a token, or a flag, depending on the store)."""

    found: list[Found] = field(default_factory=list)
    bad: list[BadInput] = field(default_factory=list)
    next: str | None = None
    has_more: bool | None = None
    """None: the answer does not say (AppGallery without `hasNext`)."""
    skipped: int = 0
    """Items that are not reviews with words: app metadata entries, ratings without text."""
    last_page: int | None = None
    total: int | None = None


class Skip(Exception):
    """Not a review with words (app metadata, rating only): counted, not dead-lettered."""


def load_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise PermanentError(f"{what}: not JSON ({exc})", kind="bad_json") from None
    if not isinstance(doc, dict):
        raise PermanentError(f"{what}: expected a JSON object", kind="bad_schema")
    return doc


def each_item(
    items: Any,
    page: Page,
    parse_one: Callable[[Any], Found],
    *,
    ref: Callable[[Any], str],
) -> None:
    """Parse every item of a list into `page`: a bad item becomes a `BadInput` with its
    own bytes, the others still arrive."""
    if items is None:
        return
    if not isinstance(items, list):
        raise PermanentError("the review list is not a JSON array", kind="bad_schema")
    for item in items:
        try:
            page.found.append(parse_one(item))
        except Skip:
            page.skipped += 1
        except PermanentError as exc:
            raw = orjson.dumps(item)
            page.bad.append(BadInput(str(exc), raw, ref=ref(item), kind=exc.kind))
        except Exception as exc:
            # A reader we did not think of: still one review, never the whole page. The
            # reason names the type only (a message may quote the customer's words).
            reason = f"unexpected {type(exc).__name__} while reading this review"
            raw = orjson.dumps(item)
            page.bad.append(BadInput(reason, raw, ref=ref(item), kind="unexpected"))


def review_event(
    *,
    store: str,
    app: str,
    review_id: str,
    text: str,
    at: datetime,
    author: str,
    rating: int | None,
    meta: Mapping[str, Any],
    connector: str,
) -> Found:
    body = text.strip()
    if not body:
        raise Skip()
    event = FeedbackEvent(
        id=stable_id(CHANNEL, store, app, review_id),
        channel=CHANNEL,
        source=f"{store}:{app}",
        native_id=review_id,
        text=body[:MAX_TEXT_CHARS],
        received_at=at,
        author=author.strip(),
        rating=rating,
        meta={
            "store": store,
            "app_id": app,
            **{k: int64_or_digits(v) for k, v in meta.items() if v is not None},
        },
        raw_ref=f"{CHANNEL}:{connector}/{store}/{app}/{review_id}",
    )
    return Found(event, review_id, epoch_ms(at))


def int64_or_digits(value: Any) -> Any:
    """`value`, or its digits when it is an integer beyond 64 bits (orjson refuses those)."""
    if isinstance(value, int) and not -INT64 <= value < INT64:
        return str(value)
    return value


def epoch_ms(moment: datetime) -> int:
    """Exact integer milliseconds (float timestamps round 1443676826.713 down a ms)."""
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def title_and_body(title: str, body: str) -> str:
    """Apple reviews have both; a title often says it all (「登录闪退」), so keep it."""
    title, body = title.strip(), body.strip()
    if not title or body.startswith(title):
        return body
    return f"{title}\n{body}" if body else title


# --- field readers: a wrong type is a PermanentError naming the field --------------


def obj(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PermanentError(f"{name} must be an object", kind="bad_schema")
    return value


def opt_str(value: Any, name: str) -> str:
    if value is None:
        return ""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise PermanentError(f"{name} must be a string", kind="bad_schema")
    return value


def review_id(value: Any, name: str) -> str:
    """Vendor ids as strings (AppGallery sends numbers for some accounts)."""
    text = opt_str(value, name).strip()
    if not text or len(text) > MAX_ID_CHARS:
        raise PermanentError(f"{name} must be a non-empty id", kind="missing_id")
    return text


def rating(value: Any, name: str) -> int:
    """1-5, as a number or a digit string (Apple's RSS and some AppGallery answers)."""
    if isinstance(value, str):
        value = _decimal(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
        raise PermanentError(f"{name} must be a star rating 1-5", kind="bad_rating")
    return value


def opt_int(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = _decimal(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise PermanentError(f"{name} must be an integer", kind="bad_schema")
    return value


def _decimal(text: str) -> int | None:
    """The integer a string spells, else None: `"²".isdigit()` is true but `int("²")`
    fails, so only `int()` itself can say."""
    try:
        return int(text)
    except ValueError:
        return None


def iso_time(value: Any, name: str) -> datetime:
    text = opt_str(value, name)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise PermanentError(f"{name} is not an ISO 8601 time", kind="bad_time") from None
    if parsed.tzinfo is None:
        raise PermanentError(f"{name} has no UTC offset", kind="bad_time")
    # Checked before converting: 9999-12-31T23:00-08:00 has no UTC datetime.
    return in_range(parsed, name).astimezone(UTC)


def epoch_ms_time(ms: int, name: str) -> datetime:
    try:
        moment = datetime.fromtimestamp(ms / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        raise PermanentError(f"{name} is not a valid time", kind="bad_time") from None
    return in_range(moment, name)


def in_range(moment: datetime, name: str) -> datetime:
    if not EARLIEST <= moment < LATEST:
        raise PermanentError(f"{name} is not between 2000 and 2100", kind="bad_time")
    return moment
