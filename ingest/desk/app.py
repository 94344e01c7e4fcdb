"""The desk's routes on the worker's aiohttp app (role `desk`): the JSON API under
`/api/`, the live stream, the OpenAPI document, and the page under `/desk/`.

An operation runs on the feed first (it is the one that can refuse: held by someone
else, already resolved), then the store records it in the audit trail; the outcome
of a resolution (code, note, satisfaction, follow-up date) lives in the store.
"""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path
from typing import Any

from aiohttp import web

from ingest.abc import DeskItem, Feed, Store
from ingest.desk import openapi, sse
from ingest.desk.auth import Tokens, principal
from ingest.desk.core import (
    STORE_RETRIES,
    Desk,
    api_errors,
    bad_request,
    body,
    date_field,
    feed_items,
    reply,
    route,
    satisfaction_field,
    statistics,
    stats_window,
    text_field,
    whoami,
)
from ingest.desk.present import (
    audit_view,
    item_view,
    outcome_view,
    record_view,
    turns_view,
)
from ingest.desk.store import DeskStore
from ingest.errors import ConfigError, Conflict, PermanentError
from ingest.log import get_logger
from ingest.sealed import unseal
from ingest.settings import DeskSettings, Settings

log = get_logger("ingest.desk")
STATIC = Path(__file__).parent / "static"
DESK_KEY = web.AppKey("desk", Desk)
HISTORY_LIMIT = 20
RESOLUTION_CODES = ("resolved", "explained", "compensated", "transferred", "rejected", "duplicate")
"""已解决, 已解释说明, 已补偿, 已转办, 不予支持, 重复投诉: what the page offers; the API
takes any short code so a site can add its own."""


def mount(app: web.Application, feed: Feed, store: Store, settings: Settings) -> Desk:
    """Add the desk to the worker's web app; fails the start on a wrong feed, store or token."""
    from ingest.abc import DeskFeed

    if not isinstance(feed, DeskFeed):
        raise ConfigError("roles", f"the desk needs a feed with desk operations, not {feed.name}")
    if not isinstance(store, DeskStore):
        raise ConfigError("store.url", f"the desk needs a store with outcomes, not {store.name}")
    check_settings(settings.desk)
    tokens = Tokens(settings.desk.tokens)
    if not tokens:
        log.warning("desk_without_tokens", hint="add one: feedback-ingest desk token --role agent")
    desk = Desk(feed, store, tokens, sse.EventHub(feed), settings)
    app[DESK_KEY] = desk

    async def start_hub(_: web.Application) -> None:
        desk.hub.start()

    async def stop_hub(_: web.Application) -> None:
        await desk.hub.stop()  # ends every live stream, so shutdown does not wait on them

    app.middlewares.append(api_errors)
    app.on_startup.append(start_hub)
    app.on_shutdown.append(stop_hub)
    add_api(app, desk)
    add_page(app)
    return desk


LEASE_SECS_MAX = 30 * 86400
HEARTBEAT_SECS_MAX = 3600.0


def check_settings(desk: DeskSettings) -> None:
    """Values that would fail every request (a lease of 0 s or past `timedelta`'s range:
    a 500 per claim; a heartbeat of 0 or NaN: pings in a busy loop) fail the start."""
    if not 1 <= desk.lease_secs <= LEASE_SECS_MAX:
        raise ConfigError("desk.lease_secs", f"must be 1 to {LEASE_SECS_MAX} seconds")
    if not 0 < desk.sse_heartbeat_secs <= HEARTBEAT_SECS_MAX:  # False for NaN too
        raise ConfigError(
            "desk.sse_heartbeat_secs", f"must be above 0, at most {HEARTBEAT_SECS_MAX}"
        )
    for key in ("feed_limit_max", "stats_days_max"):
        if getattr(desk, key) < 1:
            raise ConfigError(f"desk.{key}", "must be at least 1")


def add_api(app: web.Application, desk: Desk) -> None:
    feed, store = desk.feed, desk.store
    add = app.router

    async def audit(actor: str, action: str, record_id: str, **detail: Any) -> None:
        """The feed already changed: a failed audit row is logged loudly, not undone."""
        try:
            await store.add_audit(actor, action, record_id, detail)
        except Exception as exc:
            log.error("desk_audit_failed", action=action, feedback_id=record_id, error=str(exc))

    def answer(item: DeskItem | None) -> web.Response:
        if item is not None:
            desk.changed(item)
        return reply({"item": None if item is None else item_view(item)})

    @route(desk, "viewer")
    async def me(request: web.Request) -> web.StreamResponse:
        return reply(whoami(request))

    @route(desk, "viewer")
    async def list_feed(request: web.Request) -> web.StreamResponse:
        items = await feed_items(desk, request)
        sizes = await feed.size()
        return reply({"items": [item_view(i) for i in items], "sizes": sizes})

    @route(desk, "viewer")
    async def detail(request: web.Request) -> web.StreamResponse:
        record_id = request.match_info["id"]
        item = await feed.item(record_id)
        record = item.record if item is not None else await store.get(record_id)
        if record is None:
            raise KeyError(record_id)
        history, outcome, trail = await asyncio.gather(
            store.customer_records(record.customer_ref, exclude_id=record_id, limit=HISTORY_LIMIT),
            store.outcome(record_id),
            store.audit(record_id),
        )
        return reply(
            {
                "item": item_view(item) if item is not None else record_view(record),
                "turns": turns_view(record),
                "outcome": outcome_view(outcome),
                "history": [record_view(r) for r in history],
                "audit": [audit_view(e) for e in trail],
            }
        )

    @route(desk, "agent")
    async def take_next(request: web.Request) -> web.StreamResponse:
        who = principal(request).name
        item = await feed.next(who, desk.lease_secs)
        if item is not None:
            await audit(who, "claimed", item.record.id, via="next")
        return answer(item)

    @route(desk, "agent")
    async def claim(request: web.Request) -> web.StreamResponse:
        who, record_id = principal(request).name, request.match_info["id"]
        item = await feed.claim(record_id, who, desk.lease_secs)
        await audit(who, "claimed", record_id)
        return answer(item)

    @route(desk, "agent")
    async def renew(request: web.Request) -> web.StreamResponse:
        who, record_id = principal(request).name, request.match_info["id"]
        return answer(await feed.renew(record_id, who, desk.lease_secs))

    @route(desk, "agent")
    async def release(request: web.Request) -> web.StreamResponse:
        who, record_id = principal(request).name, request.match_info["id"]
        item = await feed.release(record_id, who)
        await audit(who, "released", record_id)
        return answer(item)

    @route(desk, "agent")
    async def resolve(request: web.Request) -> web.StreamResponse:
        who, record_id = principal(request).name, request.match_info["id"]
        data = await body(request, "code", "note", "satisfaction", "follow_up_on")
        code = text_field(data, "code", required=True, limit=64)
        note = text_field(data, "note")
        satisfaction = satisfaction_field(data)
        follow_up = date_field(data, "follow_up_on")
        try:
            item = await feed.resolve(record_id, who, code, note)
        except Conflict:
            earlier = await resolved_without_outcome(desk, record_id, who)
            if earlier is None:
                raise
            item = earlier
        desk.changed(item)
        stored = await record_outcome(desk, record_id, who, code, note, satisfaction, follow_up)
        return reply({"item": item_view(item), "stored": stored})

    @route(desk, "agent")
    async def survey(request: web.Request) -> web.StreamResponse:
        """The customer's answer at the follow-up visit (回访), after the resolution."""
        who, record_id = principal(request).name, request.match_info["id"]
        data = await body(request, "satisfaction", "follow_up_on")
        satisfaction = satisfaction_field(data)
        follow_up = date_field(data, "follow_up_on")
        if satisfaction is None and follow_up is None:
            raise bad_request("give satisfaction (1-5) and/or follow_up_on")
        if satisfaction is not None:
            await store.record_satisfaction(record_id, satisfaction, who)
        if follow_up is not None:
            await store.schedule_follow_up(record_id, follow_up, who)
        return reply({"outcome": outcome_view(await store.outcome(record_id))})

    @route(desk, "supervisor")
    async def reassign(request: web.Request) -> web.StreamResponse:
        who, record_id = principal(request).name, request.match_info["id"]
        to = text_field(await body(request, "to"), "to", required=True, limit=100)
        before = await feed.item(record_id)
        item = await feed.reassign(record_id, to, who)
        await audit(who, "reassigned", record_id, to=to, **{"from": before.owner if before else ""})
        return answer(item)

    @route(desk, "agent")
    async def escalate(request: web.Request) -> web.StreamResponse:
        who, record_id = principal(request).name, request.match_info["id"]
        reason = text_field(await body(request, "reason"), "reason", required=True, limit=500)
        item = await feed.escalate(record_id, who, reason)
        await audit(who, "escalated", record_id, reason=reason)
        return answer(item)

    @route(desk, "agent")
    async def contact(request: web.Request) -> web.StreamResponse:
        """Audited before anything is shown: no audit row, no contact data (503)."""
        who, record_id = principal(request).name, request.match_info["id"]
        reason = request.query.get("reason", "")[:200]
        record = await store.get(record_id)
        if record is None:
            item = await feed.item(record_id)
            if item is None:
                raise KeyError(record_id)
            record = item.record
        meta = dict(record.meta)
        sealed = meta.pop("contact_sealed", None)
        key = desk.settings.classify.contact_key.reveal()
        fields = ["author", "meta", "raw_ref"] + (["contact"] if sealed and key else [])
        await store.record_contact_view(who, record_id, fields, reason)
        return reply(
            {
                "record_id": record.id,
                "channel": record.channel,
                "source": record.source,
                "customer_ref": record.customer_ref,
                "author": record.author,
                "contact": _open_contact(key, sealed, record.id),
                "meta": meta,
                "raw_ref": record.raw_ref,
                "audited": {"actor": who, "fields": fields, "reason": reason},
            }
        )

    @route(desk, "supervisor")
    async def stats(request: web.Request) -> web.StreamResponse:
        days, bucket = stats_window(request, desk.settings.desk.stats_days_max)
        return reply(await statistics(desk, days, bucket))

    @route(desk, "viewer")
    async def events(request: web.Request) -> web.StreamResponse:
        return await sse.stream(request, desk.hub, desk.settings.desk.sse_heartbeat_secs)

    @route(desk, "viewer")
    async def spec(_: web.Request) -> web.StreamResponse:
        return reply(openapi.document())

    add.add_get("/api/me", me)
    add.add_get("/api/feed", list_feed)
    add.add_post("/api/next", take_next)
    add.add_get("/api/items/{id}", detail)
    for name, handler in (
        ("claim", claim),
        ("renew", renew),
        ("release", release),
        ("resolve", resolve),
        ("survey", survey),
        ("reassign", reassign),
        ("escalate", escalate),
    ):
        add.add_post(f"/api/items/{{id}}/{name}", handler)
    add.add_get("/api/items/{id}/contact", contact)
    add.add_get("/api/stats", stats)
    add.add_get("/api/events", events)
    add.add_get("/api/openapi.json", spec)


async def resolved_without_outcome(desk: Desk, record_id: str, who: str) -> DeskItem | None:
    """The item if `who` resolved it in the feed but the store never got the outcome (it
    was down, and that answer was a 503 "retry"): the retry stores it instead of a 409."""
    item = await desk.feed.item(record_id)
    if item is None or item.status != "resolved" or item.owner != who:
        return None
    outcome = await desk.store.outcome(record_id)
    return item if outcome is not None and not outcome.resolution_code else None


async def record_outcome(
    desk: Desk,
    record_id: str,
    who: str,
    code: str,
    note: str,
    satisfaction: int | None,
    follow_up: date | None,
) -> bool:
    """Store the resolution; False (and logged) if the store never got the record."""
    for attempt in range(STORE_RETRIES):
        try:
            await desk.store.record_resolution(record_id, code, note, who)
            if satisfaction is not None:
                await desk.store.record_satisfaction(record_id, satisfaction, who)
            if follow_up is not None:
                await desk.store.schedule_follow_up(record_id, follow_up, who)
            return True
        except KeyError:
            await asyncio.sleep(0.5 * (attempt + 1))
    log.error("desk_outcome_not_stored", feedback_id=record_id, code=code, hint="not in store")
    return False


def add_page(app: web.Application) -> None:
    """The page: static files that hold no data, so they need no token."""
    headers = {
        "Content-Security-Policy": (
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "connect-src 'self'; frame-ancestors 'none'"
        ),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }

    async def index(_: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html", headers=headers)

    async def to_index(_: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/desk/")

    async def asset(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = STATIC / name
        if "/" in name or name.startswith(".") or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers=headers)

    app.router.add_get("/desk", to_index)
    app.router.add_get("/desk/", index)
    app.router.add_get("/desk/{name}", asset)


__all__ = ["DESK_KEY", "RESOLUTION_CODES", "Desk", "Tokens", "mount"]


def _open_contact(key: str, sealed: Any, record_id: str) -> str | None:
    """The sealed identifier, or None when none was kept, no key is configured, or it
    was sealed under another key (rotated): the view still answers, without it."""
    if not key or not isinstance(sealed, str):
        return None
    try:
        return unseal(key, sealed, record_id)
    except PermanentError:
        log.warning("contact_unseal_failed", record_id=record_id)
        return None
