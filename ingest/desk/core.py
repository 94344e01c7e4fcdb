"""What the desk's handlers share: the `Desk` they serve, answers and errors, input
checks, and the two reads with some logic in them (the filtered feed, statistics).

Every API route goes through `route()`: authenticate (401), check the role (403),
and translate the feed's refusals: `Conflict` → 409 with its reason, an unknown id
→ 404, `TransientError` (Redis or the database down) → 503, bad input → 400.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
from aiohttp import web

from ingest.abc import DeskFeed, DeskItem, FeedQuery
from ingest.desk import sse
from ingest.desk.auth import API_HEADERS, Role, Tokens, http_error, principal, requires
from ingest.desk.stats import Bucket, StatRow, compute
from ingest.desk.store import DeskStore
from ingest.errors import Conflict, TransientError
from ingest.log import get_logger
from ingest.model import URGENCY_LEVELS, URGENCY_RANK
from ingest.options import suggest
from ingest.settings import Settings

log = get_logger("ingest.desk")
STATS_CACHE_SECS = 5.0
"""Supervisors' dashboards poll: one computation serves them all for a few seconds."""
STORE_RETRIES = 3
"""The store sink may be a moment behind the feed sink: an outcome for a record it
has not written yet is retried before it is reported as not stored."""

ITEM_READS = 16
FEED_CACHE_SECS = 0.5
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class OpenFeedCache:
    """The open feed as read for one filter, shared for `ttl_secs` by every request
    asking the same (single flight): twenty agents polling cost one read of the feed.
    `clear()` after each operation of this process, so an agent's own claim shows at
    once; changes by other processes show within `ttl_secs` (and the live stream
    tells the page to look)."""

    def __init__(self, ttl_secs: float = FEED_CACHE_SECS) -> None:
        self.ttl_secs = ttl_secs
        self._entries: dict[tuple[Any, ...], tuple[float, asyncio.Future[list[DeskItem]]]] = {}

    async def get(
        self, key: tuple[Any, ...], read: Callable[[], Awaitable[list[DeskItem]]]
    ) -> list[DeskItem]:
        now = asyncio.get_running_loop().time()
        hit = self._entries.get(key)
        if hit is None or now - hit[0] >= self.ttl_secs:
            self._entries.pop(key, None)  # re-inserted last: the dict stays in time order
            hit = (now, asyncio.ensure_future(read()))
            self._entries[key] = hit
            self._drop_stale(now)
        try:
            return await asyncio.shield(hit[1])
        except Exception:
            if self._entries.get(key) is hit:
                del self._entries[key]  # the next request tries again
            raise

    def _drop_stale(self, now: float) -> None:
        """Forget reads past their ttl, oldest first: a client cycling through filter
        values (`?channel=a1`, `a2` …) must not grow the cache for as long as no one
        claims anything."""
        stale = []
        for key, (at, _) in self._entries.items():
            if now - at < self.ttl_secs:
                break
            stale.append(key)
        for key in stale:
            del self._entries[key]

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


@dataclass
class Desk:
    feed: DeskFeed
    store: DeskStore
    tokens: Tokens
    hub: sse.EventHub
    settings: Settings
    _stats: dict[tuple[int, str], tuple[float, dict[str, Any]]] = field(default_factory=dict)
    item_reads: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(ITEM_READS))
    open_feed: OpenFeedCache = field(default_factory=OpenFeedCache)

    def changed(self, item: DeskItem) -> None:
        """This process just changed `item`: its owner index and the cached feed."""
        self.hub.note(item)
        self.open_feed.clear()

    @property
    def lease_secs(self) -> int:
        return self.settings.desk.lease_secs


def reply(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, content_type="application/json", headers=API_HEADERS
    )


def bad_request(reason: str) -> web.HTTPException:
    return http_error(400, "bad_request", reason)


def route(desk: Desk, role: Role) -> Callable[[Handler], Handler]:
    guard = requires(desk.tokens, role)

    def wrap(handler: Handler) -> Handler:
        async def answered(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except Conflict as exc:
                raise http_error(409, "conflict", exc.reason) from None
            except KeyError as exc:
                record_id = request.match_info.get("id")
                if record_id is None or exc.args != (record_id,):
                    raise
                raise http_error(404, "not_found", f"no item {record_id}") from None
            except TransientError as exc:
                log.warning("desk_backend_down", error=str(exc))
                raise http_error(503, "unavailable", "feed or store unreachable; retry") from None

        answered.__name__ = handler.__name__
        return guard(answered)

    return wrap


_AIOHTTP_ERRORS = {
    404: ("not_found", "no such API route"),
    405: ("method_not_allowed", "method not allowed here"),
    413: ("too_large", ""),
}


@web.middleware
async def api_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Under `/api/` every error is the desk's JSON too: aiohttp's own answers (no such
    route, wrong method, a body over `client_max_size`) are plain text otherwise."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if (
            not request.path.startswith("/api/")
            or exc.status < 400
            or exc.content_type == "application/json"
        ):
            raise
        error, reason = _AIOHTTP_ERRORS.get(exc.status, ("http_error", ""))
        answer = reply({"error": error, "reason": reason or exc.text or exc.reason}, exc.status)
        for name in ("Allow", "WWW-Authenticate"):
            if name in exc.headers:
                answer.headers[name] = exc.headers[name]
        return answer


async def body(request: web.Request, *fields: str) -> dict[str, Any]:
    """The JSON object of the request; a key not in `fields` is a 400 that names it, so a
    misspelt `satisfaction` is not silently dropped from a resolution (final once sent)."""
    if not request.can_read_body:
        return {}
    try:
        data = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise bad_request("body is not JSON") from None
    if not isinstance(data, dict):
        raise bad_request("body must be a JSON object")
    for key in data:
        if key not in fields:
            raise bad_request(f"unknown field {key[:64]!r}" + suggest(key[:64], fields))
    return data


def text_field(data: dict[str, Any], key: str, *, required: bool = False, limit: int = 2000) -> str:
    value = data.get(key, "")
    if not isinstance(value, str):
        raise bad_request(f"{key} must be a string")
    value = value.strip()
    if required and not value:
        raise bad_request(f"{key} is required")
    if len(value) > limit:
        raise bad_request(f"{key} is longer than {limit} characters")
    return value


def satisfaction_field(data: dict[str, Any]) -> int | None:
    value = data.get("satisfaction")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
        raise bad_request("satisfaction is an integer 1 to 5")
    return value


def date_field(data: dict[str, Any], key: str) -> date | None:
    value = data.get(key)
    if value in (None, ""):
        return None
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise bad_request(f"{key} must be a date YYYY-MM-DD") from None


# --- reading ---------------------------------------------------------------------


def _sort_key(item: DeskItem) -> tuple[int, int, float, str]:
    due = item.record.due_at
    return (
        URGENCY_RANK.get(item.record.urgency, 9),
        0 if item.breached else 1,
        due.timestamp() if due else float("inf"),
        item.record.id,
    )


async def _items(desk: Desk, ids: list[str]) -> list[DeskItem]:
    """Each item's live fields (breached, lease, escalated, repeat link), read with at
    most `ITEM_READS` reads in flight for the whole process: twenty agents asking
    for fifty items each must not open a thousand Redis connections."""

    async def one(record_id: str) -> DeskItem | None:
        async with desk.item_reads:
            return await desk.feed.item(record_id)

    found = await asyncio.gather(*(one(record_id) for record_id in ids))
    return [item for item in found if item is not None]


def _flag(request: web.Request, key: str) -> bool | None:
    raw = request.query.get(key)
    if raw is None or raw == "":
        return None
    if raw.lower() in ("1", "true", "yes"):
        return True
    if raw.lower() in ("0", "false", "no"):
        return False
    raise bad_request(f"{key} must be true or false")


def _limit(request: web.Request, maximum: int) -> int:
    try:
        limit = int(request.query.get("limit", "50"))
    except ValueError:
        raise bad_request("limit must be an integer") from None
    if not 1 <= limit <= maximum:
        raise bad_request(f"limit must be 1 to {maximum}")
    return limit


async def feed_items(desk: Desk, request: web.Request) -> list[DeskItem]:
    """Open items most pressing first; with `owner`, the items that agent holds."""
    q = request.query
    level = q.get("level") or None
    if level is not None and level not in URGENCY_LEVELS:
        raise bad_request(f"level must be one of {', '.join(URGENCY_LEVELS)}")
    channel, category = q.get("channel") or None, q.get("category") or None
    business, owner = q.get("business") or None, q.get("owner") or None
    breached = _flag(request, "breached")
    limit = _limit(request, desk.settings.desk.feed_limit_max)
    if owner is not None:
        held = await _items(desk, desk.hub.held_by(owner))
        items = sorted(
            (i for i in held if i.status == "claimed" and i.owner == owner), key=_sort_key
        )
    else:
        post_filtered = business is not None or breached is not None
        fetch = limit * 5 if post_filtered else limit

        async def read() -> list[DeskItem]:
            query = FeedQuery(limit=fetch, urgency=level, channel=channel, category=category)
            records = await desk.feed.top(query)
            return await _items(desk, [r.id for r in records])

        items = await desk.open_feed.get((level, channel, category, fetch), read)
    chosen = [
        i
        for i in items
        if (level is None or i.record.urgency == level)
        and (channel is None or i.record.channel == channel)
        and (category is None or i.record.category == category)
        and (business is None or i.record.business == business)
        and (breached is None or i.breached == breached)
    ]
    return chosen[:limit]


def now_utc() -> datetime:
    return datetime.now(UTC)


def stats_window(request: web.Request, max_days: int) -> tuple[int, Bucket]:
    try:
        days = int(request.query.get("days", "7"))
    except ValueError:
        raise bad_request("days must be an integer") from None
    if not 1 <= days <= max_days:
        raise bad_request(f"days must be 1 to {max_days}")
    bucket = request.query.get("bucket", "hour" if days <= 2 else "day")
    if bucket not in ("hour", "day"):
        raise bad_request("bucket must be hour or day")
    return days, "hour" if bucket == "hour" else "day"


async def statistics(desk: Desk, days: int, bucket: Bucket) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    cached = desk._stats.get((days, bucket))
    if cached is not None and loop.time() - cached[0] < STATS_CACHE_SECS:
        return cached[1]
    now = now_utc()
    since = now - timedelta(days=days)
    rows = [StatRow.from_export(row) async for row in desk.store.export_rows(since)]
    figures = compute(
        rows, now=now, since=since, bucket=bucket, timezone=desk.settings.classify.timezone
    )
    figures["backlog"] = await desk.feed.size()
    figures["claimed"] = len(desk.hub.owners)
    desk._stats[(days, bucket)] = (loop.time(), figures)
    return figures


def whoami(request: web.Request) -> dict[str, str]:
    who = principal(request)
    return {"name": who.name, "role": who.role}
