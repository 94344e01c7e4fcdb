"""The desk API against hostile requests, on the real embedded desk of the API tests:
whatever arrives (bytes that are no UTF-8 in the token, a Last-Event-ID that is no id
of this feed, an unknown route or method, a body over the size limit) the answer is
a 4xx with the desk's JSON error, never a 500 or a stream that breaks after its 200.
Also what the desk does when its store fails in the middle of a resolution."""

# ruff: noqa: F811 - the desk fixture is imported from test_desk_api and used as a parameter

from __future__ import annotations

import asyncio
import math
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest

from ingest.desk.app import DESK_KEY
from ingest.errors import ConfigError
from tests.desk_seed import auth, desk_app, desk_settings, open_backends
from tests.integration.test_desk_api import Desk, desk  # noqa: F401

pytestmark = pytest.mark.integration


async def raw_request(desk: Desk, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes no HTTP client would (aiohttp's client encodes headers itself)."""
    reader, writer = await asyncio.open_connection(desk.client.host, desk.client.port)
    try:
        writer.write(request)
        answer = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


async def test_a_token_that_is_not_utf8_is_an_unknown_token_not_a_crash(desk: Desk) -> None:
    """Before: hashing the token raised UnicodeEncodeError, a 500 anyone could cause
    without a token."""
    for token in (b"fd_\xff\xfe", b"\xc3\x28", b"fd_test_agent_token\x80"):
        status, headers, body = await raw_request(
            desk,
            b"GET /api/me HTTP/1.1\r\nHost: desk\r\nAuthorization: Bearer "
            + token
            + b"\r\nConnection: close\r\n\r\n",
        )
        assert status == 401, token
        assert headers["content-type"].startswith("application/json")
        assert orjson.loads(body) == {"error": "unauthorized", "reason": "unknown token"}


@pytest.mark.parametrize(
    "last_event_id",
    ["abc", "1700000000000-3", "9" * 40, "-1-"],
    ids=["word", "redis_form", "huge", "dashes"],
)
async def test_a_last_event_id_that_is_no_id_of_the_feed_is_400_before_the_stream(
    desk: Desk, last_event_id: str
) -> None:
    """Before: the stream answered 200, then the catch-up read raised and the response
    broke off mid-body (a traceback in the log each time)."""
    headers = {**auth("viewer"), "Last-Event-ID": last_event_id}
    async with desk.client.get("/api/events", headers=headers) as response:
        assert response.status == 400
        assert response.headers["Content-Type"].startswith("application/json")
        answer = await response.json()
    assert answer["error"] == "bad_request" and "Last-Event-ID" in answer["reason"]
    assert desk.app[DESK_KEY].hub.subscribers == 0  # the refused stream left nothing behind


async def test_unknown_routes_and_methods_under_api_answer_json(desk: Desk) -> None:
    """Before: aiohttp's text/plain "404: Not Found" / "405: Method Not Allowed"."""
    async with desk.client.get("/api/nothing", headers=auth("agent")) as response:
        assert response.status == 404
        assert response.headers["Content-Type"].startswith("application/json")
        assert (await response.json())["error"] == "not_found"
    async with desk.client.delete("/api/feed", headers=auth("agent")) as response:
        assert response.status == 405
        assert response.headers["Content-Type"].startswith("application/json")
        assert "GET" in response.headers["Allow"]
        assert (await response.json())["error"] == "method_not_allowed"
    async with desk.client.get("/desk/nothing.js") as response:  # the page keeps its own
        assert response.status == 404


async def test_a_body_over_the_size_limit_is_413_json(desk: Desk) -> None:
    """Before: 413 with aiohttp's text/plain body."""
    claimed = await desk.post("/api/next")
    record_id = claimed[1]["item"]["id"]
    body = b'{"code": "resolved", "note": "' + b"x" * (3 * 1024 * 1024) + b'"}'
    async with desk.client.post(
        f"/api/items/{record_id}/resolve",
        data=body,
        headers={**auth("agent"), "Content-Type": "application/json"},
    ) as response:
        assert response.status == 413
        assert response.headers["Content-Type"].startswith("application/json")
        answer = await response.json()
    assert answer["error"] == "too_large" and "2097152" in answer["reason"]
    assert (await desk.get(f"/api/items/{record_id}"))[1]["item"]["status"] == "claimed"


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("lease_secs", 0),
        ("lease_secs", -5),
        ("lease_secs", 10**30),
        ("sse_heartbeat_secs", 0.0),
        ("sse_heartbeat_secs", math.nan),
        ("sse_heartbeat_secs", math.inf),
        ("feed_limit_max", 0),
        ("stats_days_max", -1),
    ],
)
async def test_desk_options_that_would_fail_every_request_fail_the_start(
    tmp_path: Path, option: str, value: Any
) -> None:
    """Before: the desk started; then a lease of -5 s or 10**30 s made every claim a 500,
    a heartbeat of 0 sent pings in a busy loop to every stream, a feed limit of 0 made
    every feed request a 400."""
    feed, store = await open_backends(tmp_path)
    try:
        with pytest.raises(ConfigError, match=f"desk.{option}"):
            desk_app(feed, store, desk_settings(tmp_path, **{option: value}))
    finally:
        await feed.close()
        await store.close()


async def test_api_answers_are_not_cached_or_sniffed(desk: Desk) -> None:
    """Before: no Cache-Control on the contact view (the customer's unmasked phone or
    e-mail) or on items, so a shared call-centre PC's browser could keep them."""
    for path, who in (
        ("/api/items/sample-001/contact?reason=回访", "agent"),
        ("/api/items/sample-001", "viewer"),
        ("/api/feed", "viewer"),
        ("/api/items/no-such", "viewer"),
        ("/api/stats", "viewer"),
    ):
        async with desk.client.get(path, headers=auth(who)) as response:
            assert response.status in (200, 403, 404), path
            assert response.headers["Cache-Control"] == "no-store", path
            assert response.headers["X-Content-Type-Options"] == "nosniff", path


async def test_an_unknown_body_field_is_400_naming_it_and_changes_nothing(desk: Desk) -> None:
    """Before: ignored, so a misspelt satisfaction was dropped from a resolution that
    cannot be sent again (200, the item resolved, no survey answer stored)."""
    _, claimed = await desk.post("/api/next")
    record_id = claimed["item"]["id"]
    body = {"code": "resolved", "satisfation": 5}
    status, answer = await desk.post(f"/api/items/{record_id}/resolve", body=body)
    assert (status, answer["error"]) == (400, "bad_request")
    assert "'satisfation'" in answer["reason"] and '"satisfaction"' in answer["reason"]
    assert (await desk.get(f"/api/items/{record_id}"))[1]["item"]["status"] == "claimed"
    for path, extra in (
        ("survey", {"satisfaction": 4, "score": 4}),
        ("escalate", {"reason": "x", "level": "urgent"}),
        ("reassign", {"to": "李四", "lease_secs": -1}),
    ):
        status, _ = await desk.post(f"/api/items/{record_id}/{path}", "supervisor", extra)
        assert status == 400, path
    status, _ = await desk.post(f"/api/items/{record_id}/resolve", body={"code": "resolved"})
    assert status == 200


async def test_the_feed_cache_does_not_grow_with_every_filter_value_a_client_tries(
    desk: Desk,
) -> None:
    """Before: each distinct filter stayed cached until someone claimed something, so a
    viewer cycling `?channel=…` grew the process without bound (20,000 requests: 20,000
    entries)."""
    cache = desk.app[DESK_KEY].open_feed
    cache.ttl_secs = 0.05
    for i in range(300):
        status, _ = await desk.get(f"/api/feed?channel=probe-{i}", who="viewer")
        assert status == 200
    await asyncio.sleep(0.1)
    assert (await desk.get("/api/feed?channel=email", who="viewer"))[0] == 200
    assert len(cache) == 1


@pytest.mark.slow
async def test_a_resolution_the_store_missed_is_stored_by_the_retry_the_503_asks_for(
    desk: Desk, tmp_path: Path
) -> None:
    """Before: the feed resolved the item, the store (locked by another writer past its
    busy timeout) raised TransientError, the answer was 503 "retry", and the retry was a
    409 "already resolved": code, note and satisfaction lost, the stored record open."""
    _, claimed = await desk.post("/api/next")
    record_id = claimed["item"]["id"]
    done = {"code": "compensated", "note": "已退还盗刷款项", "satisfaction": 5}
    other_writer = sqlite3.connect(tmp_path / "feedback.db", isolation_level=None)
    try:
        other_writer.execute("BEGIN IMMEDIATE")
        status, answer = await desk.post(f"/api/items/{record_id}/resolve", body=done)
        assert (status, answer["error"]) == (503, "unavailable")
        other_writer.execute("ROLLBACK")
    finally:
        other_writer.close()
    status, _ = await desk.post(f"/api/items/{record_id}/resolve", "agent2", done)
    assert status == 409  # not the agent who resolved it

    status, answer = await desk.post(f"/api/items/{record_id}/resolve", body=done)

    assert status == 200 and answer["stored"] is True
    outcome = await desk.store.outcome(record_id)
    assert outcome is not None
    assert (outcome.resolution_code, outcome.satisfaction) == ("compensated", 5)
    assert (await desk.store.get(record_id)).status == "resolved"  # type: ignore[union-attr]
    status, answer = await desk.post(f"/api/items/{record_id}/resolve", body=done)
    assert (status, answer["reason"]) == (409, f"{record_id}: already resolved")
