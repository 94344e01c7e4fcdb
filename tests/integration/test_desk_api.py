"""The desk API on the real embedded feed and store, seeded with the bundled samples
classified by the real chain: who may do what (401/403), each operation and its
refusals (409, 404, 400), the audited contact view, statistics on a known seed,
the live stream (a `claimed` event, resume after Last-Event-ID) and the OpenAPI
document covering every route."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from openapi_spec_validator import validate

from ingest.desk import openapi
from ingest.desk.app import DESK_KEY
from ingest.desk.auth import Tokens
from ingest.errors import ConfigError
from ingest.model import FeedbackRecord
from sinks.sql_store import SqlStore
from sinks.sqlite_feed import SqliteFeed
from tests.desk_seed import (
    REPEAT_ID,
    TOKENS,
    auth,
    desk_app,
    desk_settings,
    open_backends,
    sample_events,
    sample_records,
    seed,
)

pytestmark = pytest.mark.integration


@dataclasses.dataclass
class Desk:
    client: TestClient[Any, Any]
    feed: SqliteFeed
    store: SqlStore
    app: web.Application
    records: list[FeedbackRecord]

    async def get(self, path: str, who: str | None = "agent", **kw: Any) -> Any:
        headers = auth(who) if who else {}
        async with self.client.get(path, headers=headers, **kw) as response:
            return response.status, await response.json()

    async def post(self, path: str, who: str | None = "agent", body: Any = None) -> Any:
        headers = auth(who) if who else {}
        async with self.client.post(path, headers=headers, json=body) as response:
            return response.status, await response.json()


async def start_desk(tmp_path: Path, records: list[FeedbackRecord]) -> Desk:
    feed, store = await open_backends(tmp_path)
    await seed(feed, store, records)
    app = desk_app(feed, store, desk_settings(tmp_path))
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    await asyncio.wait_for(app[DESK_KEY].hub.live.wait(), 5)
    return Desk(client, feed, store, app, records)


@pytest.fixture
async def desk(tmp_path: Path) -> AsyncIterator[Desk]:
    d = await start_desk(tmp_path, sample_records())
    yield d
    await d.client.close()
    await d.feed.close()
    await d.store.close()


def most_pressing(records: list[FeedbackRecord]) -> FeedbackRecord:
    rank = {"urgent": 0, "important": 1, "general": 2}
    return min(records, key=lambda r: (rank[r.urgency], r.due_at, r.id))


# --- auth ------------------------------------------------------------------------


async def test_every_route_but_healthz_and_the_page_refuses_a_request_without_token(
    desk: Desk,
) -> None:
    open_paths = {"/healthz", "/readyz", "/metrics", "/desk", "/desk/", "/desk/{name}"}
    checked = 0
    for route in desk.app.router.routes():
        path = route.resource.canonical if route.resource else ""
        if route.method == "HEAD" or path in open_paths:
            continue
        url = path.replace("{id}", "sample-001")
        async with desk.client.request(route.method, url) as response:
            assert response.status == 401, f"{route.method} {path}"
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
        checked += 1
    assert checked >= 15
    async with desk.client.get("/healthz") as response:
        assert response.status == 200


async def test_walking_the_openapi_document_every_operation_refuses_no_forged_and_low_tokens(
    desk: Desk,
) -> None:
    """Each documented operation, with no token and a forged one: 401; with a viewer
    token where the document asks for more: 403 (and never a 2xx)."""
    from ingest.desk.auth import RANK

    status, document = await desk.get("/api/openapi.json", who="viewer")
    assert status == 200
    forged = {"Authorization": "Bearer fd_" + "0" * 40}
    tried = above_viewer = 0
    for path, operations in document["paths"].items():
        url = path.replace("{id}", "sample-001")
        for method, operation in operations.items():
            role = operation["x-required-role"]
            assert role in RANK, (method, path, role)
            for headers in ({}, forged):
                async with desk.client.request(method.upper(), url, headers=headers) as r:
                    assert r.status == 401, (method, path, headers)
            async with desk.client.request(method.upper(), url, headers=auth("viewer")) as r:
                if RANK[role] > RANK["viewer"]:
                    above_viewer += 1
                    assert r.status == 403, (method, path, r.status)
                else:
                    assert r.status not in (401, 403), (method, path, r.status)
            tried += 1
    assert tried >= 15 and above_viewer >= 5


async def test_unknown_token_is_401_and_roles_below_the_route_are_403(desk: Desk) -> None:
    async with desk.client.get("/api/feed", headers={"Authorization": "Bearer nope"}) as r:
        assert r.status == 401
    status, answer = await desk.post("/api/items/sample-001/claim", who="viewer")
    assert (status, answer["error"]) == (403, "forbidden")
    assert (await desk.get("/api/items/sample-001/contact", who="viewer"))[0] == 403
    assert (await desk.get("/api/stats", who="agent"))[0] == 403
    assert (await desk.post("/api/items/sample-001/reassign", "agent", {"to": "x"}))[0] == 403
    status, me = await desk.get("/api/me", who="supervisor")
    assert (status, me) == (200, {"name": "赵六", "role": "supervisor"})


def test_token_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"desk.tokens\[0\].role"):
        Tokens([{"name": "a", "role": "admin", "sha256": "0" * 64}])
    with pytest.raises(ConfigError, match=r"desk.tokens\[1\].sha256"):
        Tokens([{"name": "a", "role": "agent", "sha256": "0" * 64}] * 2)


# --- reading -----------------------------------------------------------------------


async def test_feed_is_most_pressing_first_and_masked(desk: Desk) -> None:
    status, answer = await desk.get("/api/feed?limit=100", who="viewer")
    assert status == 200
    items = answer["items"]
    assert len(items) == len(desk.records)
    assert items[0]["id"] == most_pressing(desk.records).id
    levels = [i["urgency"] for i in items]
    assert levels == sorted(levels, key=["urgent", "important", "general"].index)
    assert answer["sizes"] == {
        level: sum(r.urgency == level for r in desk.records)
        for level in ("urgent", "important", "general")
    }
    for item in items:
        assert "meta" not in item and "raw_ref" not in item
    raw = orjson.dumps(answer).decode()
    assert "13801235678" not in raw  # sample-001's caller, masked everywhere


@pytest.mark.parametrize(
    ("query", "field", "value"),
    [
        ("level=important", "urgency", "important"),
        ("channel=email", "channel", "email"),
        ("category=service", "category", "service"),
        ("business=cards", "business", "cards"),
    ],
)
async def test_feed_filters(desk: Desk, query: str, field: str, value: str) -> None:
    status, answer = await desk.get(f"/api/feed?limit=100&{query}")
    expected = {r.id for r in desk.records if getattr(r, field) == value}
    assert status == 200 and expected
    assert {i["id"] for i in answer["items"]} == expected


async def test_breached_filter_follows_the_sweeper(desk: Desk) -> None:
    assert (await desk.get("/api/feed?breached=true"))[1]["items"] == []
    urgent = [r for r in desk.records if r.urgency == "urgent"]
    await desk.feed.sweep(max(r.due_at for r in urgent) + timedelta(seconds=1))  # type: ignore[type-var]
    _, answer = await desk.get("/api/feed?breached=true&limit=100")
    assert {i["id"] for i in answer["items"]} == {r.id for r in urgent}
    assert all(i["breached"] for i in answer["items"])
    assert (await desk.get("/api/feed?breached=maybe"))[0] == 400
    assert (await desk.get("/api/feed?level=critical"))[0] == 400
    assert (await desk.get("/api/feed?limit=0"))[0] == 400


async def test_detail_has_reasons_turns_and_the_customers_other_channels(desk: Desk) -> None:
    status, answer = await desk.get("/api/items/sample-001", who="viewer")
    assert status == 200
    assert answer["item"]["reasons"], "the desk must see why"
    assert answer["turns"] and answer["turns"][0]["role"] == "agent"
    assert [h["id"] for h in answer["history"]] == [REPEAT_ID]
    assert answer["history"][0]["channel"] == "wechat"
    assert "meta" not in answer["item"]
    assert (await desk.get("/api/items/no-such-item"))[0] == 404


# --- operations ----------------------------------------------------------------------


async def test_next_claim_renew_release_and_conflicts(desk: Desk) -> None:
    status, answer = await desk.post("/api/next")
    top = answer["item"]
    assert status == 200 and top["id"] == most_pressing(desk.records).id
    assert (top["status"], top["owner"]) == ("claimed", "张三")
    assert top["lease_expires_at"]
    status, refused = await desk.post(f"/api/items/{top['id']}/claim", who="agent2")
    assert (status, refused["error"]) == (409, "conflict")
    assert "张三" in refused["reason"]
    assert (await desk.post(f"/api/items/{top['id']}/release", who="agent2"))[0] == 409
    status, renewed = await desk.post(f"/api/items/{top['id']}/renew")
    assert status == 200 and renewed["item"]["lease_expires_at"] >= top["lease_expires_at"]
    _, mine = await desk.get("/api/feed?owner=张三")
    assert [i["id"] for i in mine["items"]] == [top["id"]]
    status, released = await desk.post(f"/api/items/{top['id']}/release")
    assert status == 200 and released["item"]["status"] == "open"
    status, claimed = await desk.post(f"/api/items/{top['id']}/claim", who="agent2")
    assert status == 200 and claimed["item"]["owner"] == "李四"
    assert (await desk.post("/api/items/nope/claim"))[0] == 404
    trail = [e["action"] for e in await desk.store.audit(top["id"])]
    assert trail[-3:] == ["claimed", "released", "claimed"]


async def test_resolve_stores_the_outcome_and_the_item_leaves_the_feed(desk: Desk) -> None:
    _, answer = await desk.post("/api/next")
    record_id = answer["item"]["id"]
    assert (await desk.post(f"/api/items/{record_id}/resolve", body={"note": "x"}))[0] == 400
    bad = {"code": "resolved", "satisfaction": 6}
    assert (await desk.post(f"/api/items/{record_id}/resolve", body=bad))[0] == 400
    done = {
        "code": "compensated",
        "note": "已退还盗刷款项",
        "satisfaction": 5,
        "follow_up_on": "2026-12-01",
    }
    status, resolved = await desk.post(f"/api/items/{record_id}/resolve", body=done)
    assert status == 200 and resolved["stored"] is True
    assert resolved["item"]["status"] == "resolved"
    _, feed = await desk.get("/api/feed?limit=100")
    assert record_id not in {i["id"] for i in feed["items"]}
    _, detail = await desk.get(f"/api/items/{record_id}")
    assert detail["outcome"] == {
        "code": "compensated",
        "note": "已退还盗刷款项",
        "resolved_by": "张三",
        "resolved_at": detail["outcome"]["resolved_at"],
        "satisfaction": 5,
        "follow_up_on": "2026-12-01",
    }
    status, again = await desk.post(f"/api/items/{record_id}/resolve", body=done)
    assert (status, again["reason"]) == (409, f"{record_id}: already resolved")
    status, survey = await desk.post(f"/api/items/{record_id}/survey", body={"satisfaction": 4})
    assert status == 200 and survey["outcome"]["satisfaction"] == 4


async def test_supervisor_reassigns_and_agents_escalate(desk: Desk) -> None:
    general = next(r for r in desk.records if r.urgency == "general")
    status, moved = await desk.post(
        f"/api/items/{general.id}/reassign", who="supervisor", body={"to": "李四"}
    )
    assert status == 200 and (moved["item"]["status"], moved["item"]["owner"]) == (
        "claimed",
        "李四",
    )
    status, raised = await desk.post(
        f"/api/items/{general.id}/escalate", body={"reason": "客户提到要向监管投诉"}
    )
    assert status == 200 and raised["item"]["urgency"] == "urgent"
    assert raised["item"]["escalated"] is True
    assert (await desk.post(f"/api/items/{general.id}/escalate", body={}))[0] == 400
    actions = [(e["actor"], e["action"]) for e in await desk.store.audit(general.id)]
    assert ("赵六", "reassigned") in actions and ("张三", "escalated") in actions


async def test_contact_view_is_audited_with_who_and_when(desk: Desk) -> None:
    before = datetime.now(UTC)
    status, contact = await desk.get("/api/items/sample-001/contact?reason=回访客户")
    assert status == 200
    assert contact["author"] and "raw_ref" in contact and "meta" in contact
    views = [e for e in await desk.store.audit("sample-001") if e["action"] == "viewed_contact"]
    assert len(views) == 1
    assert views[0]["actor"] == "张三" and views[0]["at"] >= before - timedelta(seconds=1)
    assert views[0]["detail"]["reason"] == "回访客户"
    assert (await desk.get("/api/items/no-such/contact"))[0] == 404


async def test_the_sealed_contact_opens_only_through_the_audited_endpoint(desk: Desk) -> None:
    """The raw author is stored only sealed; the contact endpoint opens it, every other
    view carries neither the identifier nor the sealed form."""
    event = next(e for e in sample_events() if e["id"] == "sample-001")
    raw_author = event["author"]
    stored = await desk.store.get("sample-001")
    assert stored is not None and raw_author not in stored.author
    assert raw_author not in str(stored.meta)
    status, detail = await desk.get("/api/items/sample-001")
    assert status == 200 and raw_author not in str(detail)
    assert "contact_sealed" not in str(detail)
    status, contact = await desk.get("/api/items/sample-001/contact?reason=回访")
    assert status == 200 and contact["contact"] == raw_author
    assert "contact_sealed" not in contact["meta"]
    views = [e for e in await desk.store.audit("sample-001") if e["action"] == "viewed_contact"]
    assert "contact" in views[-1]["detail"]["fields"]


# --- statistics ----------------------------------------------------------------------


def known_seed(now: datetime) -> list[FeedbackRecord]:
    """Four records whose figures are known: see test_stats_on_a_known_seed."""
    base = sample_records(now)[0]
    rows = [
        ("s-ontime", 10, 14, "urgent", "phone", "product"),
        ("s-late", 30, -6, "important", "email", "service"),
        ("s-breached", 80, -8, "general", "wechat", "process"),
        ("s-fresh", 2, 70, "general", "app_review", "policy"),
    ]
    return [
        dataclasses.replace(
            base,
            id=record_id,
            customer_ref=f"cref-{record_id}",
            received_at=now - timedelta(hours=age),
            due_at=now + timedelta(hours=due_in),
            urgency=level,  # type: ignore[arg-type]
            channel=channel,
            category=category,
        )
        for record_id, age, due_in, level, channel, category in rows
    ]


async def test_stats_on_a_known_seed(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    d = await start_desk(tmp_path, known_seed(now))
    try:
        for record_id, satisfaction in (("s-ontime", 5), ("s-late", 2)):
            assert (await d.post(f"/api/items/{record_id}/claim"))[0] == 200
            body = {"code": "resolved", "satisfaction": satisfaction}
            assert (await d.post(f"/api/items/{record_id}/resolve", body=body))[0] == 200
        status, stats = await d.get("/api/stats?days=7&bucket=day", who="supervisor")
        assert status == 200
        assert stats["records"] == 4
        assert stats["totals"]["channel"] == {"phone": 1, "email": 1, "wechat": 1, "app_review": 1}
        assert sum(b["total"] for b in stats["volume"]) == 4
        assert len(stats["volume"]) in (7, 8)  # local days touched by the 7-day window
        assert stats["unresolved"] == {
            "total": 2,
            "by_level": {"urgent": 0, "important": 0, "general": 2},
        }
        assert stats["breached"]["total"] == 1
        assert stats["handling_secs"]["resolved"] == 2
        assert stats["handling_secs"]["median"] == pytest.approx(20 * 3600, abs=120)
        assert stats["timeout"] == {
            "due": 3,
            "late": 2,
            "rate": 0.6667,
            "goal": 0.05,
            "within_goal": False,
        }
        assert stats["csat"]["rate"] == 0.5 and stats["csat"]["responses"] == 2
        assert stats["backlog"] == {"urgent": 0, "important": 0, "general": 2}
        assert (await d.get("/api/stats?days=1000", who="supervisor"))[0] == 400
    finally:
        await d.client.close()
        await d.feed.close()
        await d.store.close()


# --- live stream -------------------------------------------------------------------------


async def read_events(response: Any, want: int) -> list[dict[str, Any]]:
    """Parse SSE frames until `want` events arrived (comments and retry skipped)."""
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}

    async def pump() -> None:
        while len(events) < want:
            line = (await response.content.readline()).decode().rstrip("\n")
            if not line:
                if "data" in current:
                    events.append(dict(current))
                current.clear()
            elif not line.startswith(":"):
                key, _, value = line.partition(": ")
                current[key] = orjson.loads(value) if key == "data" else value

    await asyncio.wait_for(pump(), 5)
    return events


async def test_stream_delivers_claimed_and_resumes_after_last_event_id(desk: Desk) -> None:
    async with desk.client.get("/api/events", headers=auth("viewer")) as stream:
        assert stream.status == 200
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        await asyncio.sleep(0.2)
        await desk.post("/api/items/sample-002/claim")
        (claimed,) = await read_events(stream, 1)
    assert claimed["event"] == "claimed"
    assert claimed["data"]["record_id"] == "sample-002"
    assert claimed["data"]["fields"]["owner"] == "张三"
    await desk.post("/api/items/sample-002/release")
    await desk.post("/api/items/sample-003/claim")
    headers = {**auth("viewer"), "Last-Event-ID": claimed["id"]}
    async with desk.client.get("/api/events", headers=headers) as resumed:
        missed = await read_events(resumed, 2)
    assert [(e["event"], e["data"]["record_id"]) for e in missed] == [
        ("released", "sample-002"),
        ("claimed", "sample-003"),
    ]


async def test_stream_sends_heartbeats_when_idle(desk: Desk) -> None:
    async with desk.client.get("/api/events", headers=auth("viewer")) as stream:
        lines = []
        while b": ping\n" not in lines:
            lines.append(await asyncio.wait_for(stream.content.readline(), 3))


# --- the document ----------------------------------------------------------------------------


async def test_openapi_documents_every_api_route_and_validates(desk: Desk) -> None:
    assert openapi.undocumented(desk.app) == []
    status, document = await desk.get("/api/openapi.json", who="viewer")
    assert status == 200
    validate(document)
    assert set(document["paths"]) == {
        r.resource.canonical
        for r in desk.app.router.routes()
        if r.resource and r.resource.canonical.startswith("/api/")
    }


async def test_page_is_served_without_token_and_holds_no_data(desk: Desk) -> None:
    async with desk.client.get("/desk/") as page:
        assert page.status == 200
        html = await page.text()
        assert "投诉" in html and "sample-" not in html
        assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    for asset in ("desk.js", "desk.css"):
        async with desk.client.get(f"/desk/{asset}") as response:
            assert response.status == 200
    async with desk.client.get("/desk/..%2Fapp.py") as response:
        assert response.status == 404


def test_tokens_are_configured_as_hashes_only() -> None:
    settings = desk_settings(Path("/nonexistent"))
    configured = orjson.dumps(settings.desk.tokens).decode()
    assert all(token not in configured for *_, token in TOKENS.values())


def test_cli_token_prints_a_token_and_config_lines_holding_only_its_hash(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import tomllib

    from ingest.cli import main

    assert main(["desk", "token", "--role", "agent", "--name", '张"三']) == 0
    out = capsys.readouterr().out.splitlines()
    token = out[1].strip()
    config = tomllib.loads("\n".join(out[3:]))
    (entry,) = config["desk"]["tokens"]
    assert token.startswith("fd_") and token not in "\n".join(out[3:])
    principal = Tokens(config["desk"]["tokens"]).lookup(token)
    assert principal is not None and (principal.name, principal.role) == ('张"三', "agent")
    assert entry["sha256"] != token
