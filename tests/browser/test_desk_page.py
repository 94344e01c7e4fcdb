"""The desk page driven as a person would, in Debian's Chromium (headless, through
Playwright with the system browser: nothing is downloaded): log in with a token,
see the feed, claim the top item, resolve it, watch it leave the feed; a record
written meanwhile appears without a reload (live stream); a supervisor sees the
statistics. Screenshots go to tests/artifacts/."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ingest.runtime.http import HttpServer
from tests.conftest import IN_CI
from tests.desk_seed import TOKENS, desk_app, desk_settings, open_backends, sample_records, seed

pytestmark = pytest.mark.integration

CHROMIUM = os.environ.get("FEEDBACK_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


def require_browser() -> Any:
    """Playwright's async API and the system Chromium; a skip locally, a failure in CI."""
    problem = ""
    try:
        from playwright import async_api
    except ImportError:
        problem = "playwright is not installed (pip install -e '.[test]')"
    if not problem and not Path(CHROMIUM).exists():
        problem = f"no Chromium at {CHROMIUM} (apt-get install -y chromium)"
    if problem:
        if IN_CI:
            pytest.fail(f"{problem} (CI=true: a missing browser is a failure, not a skip)")
        pytest.skip(problem)
    return async_api


@asynccontextmanager
async def desk_page(
    api: Any, base_url: str, problems: list[str] | None = None
) -> AsyncIterator[Any]:
    """The desk page open in a fresh headless Chromium, closed afterwards; console errors
    and page errors from the first load on go to `problems` when given."""
    async with api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 900}, locale="zh-CN")
            if problems is not None:
                page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e: problems.append(str(e)))
            await page.goto(f"{base_url}/desk/")
            yield page
        finally:
            await browser.close()


async def log_in(page: Any, token: str) -> None:
    await page.fill("#login-token", token)
    await page.click("#login-submit")


@dataclasses.dataclass
class Running:
    base_url: str
    feed: Any
    store: Any
    records: list[Any]


@pytest.fixture
async def running_desk(tmp_path: Path) -> AsyncIterator[Running]:
    feed, store = await open_backends(tmp_path)
    records = sample_records()
    await seed(feed, store, records)
    server = HttpServer(desk_app(feed, store, desk_settings(tmp_path)), "127.0.0.1", 0)
    await server.start()
    try:
        yield Running(f"http://127.0.0.1:{server.port}", feed, store, records)
    finally:
        await server.close()
        await feed.close()
        await store.close()


async def test_agent_logs_in_claims_the_top_item_resolves_it_and_it_leaves_the_feed(
    running_desk: Running,
) -> None:
    api = require_browser()
    expect = api.expect
    ARTIFACTS.mkdir(exist_ok=True)
    rank = {"urgent": 0, "important": 1, "general": 2}
    top = min(running_desk.records, key=lambda r: (rank[r.urgency], r.due_at, r.id))
    problems: list[str] = []
    async with desk_page(api, running_desk.base_url, problems) as page:
        await log_in(page, "wrong-token")
        await expect(page.locator("#login-error")).to_have_text("令牌无效")
        problems.clear()  # the 401 of the wrong token is logged by the browser

        await log_in(page, TOKENS["agent"][2])
        await expect(page.locator("#me")).to_contain_text("张三")
        await expect(page.locator("#live")).to_have_text("● 实时")
        first = page.locator("#feed [data-testid=feed-item]").first
        await expect(first).to_have_attribute("data-id", top.id)
        await expect(first).to_have_class("item urgent")
        await expect(first.locator(".countdown")).to_contain_text("剩余")

        # a new urgent record reaches the open page through the live stream
        fresh = dataclasses.replace(
            running_desk.records[0],
            id="live-001",
            due_at=datetime.now(UTC) + timedelta(hours=23),
            customer_ref="cref-live",
        )
        await running_desk.store.write([fresh])
        await running_desk.feed.write([fresh])
        await expect(page.locator('#feed [data-id="live-001"]')).to_have_count(1, timeout=10_000)

        await first.locator("[data-testid=claim]").click()
        await expect(page.locator(f'#mine [data-id="{top.id}"]')).to_have_count(1)
        await expect(page.locator(f'#feed [data-id="{top.id}"]')).to_have_count(0)
        await expect(page.locator("[data-testid=detail-text]")).to_be_visible()
        await expect(page.locator("[data-testid=history]")).to_be_visible()
        await page.screenshot(path=str(ARTIFACTS / "desk_claimed.png"), full_page=True)

        await page.select_option("[data-testid=resolve-code]", "compensated")
        await page.fill("[data-testid=resolve-note]", "已为客户冻结卡片并登记争议交易")
        await page.select_option("[data-testid=resolve-satisfaction]", "5")
        await page.click("[data-testid=resolve-submit]")
        await expect(page.locator(f'#mine [data-id="{top.id}"]')).to_have_count(0)
        await expect(page.locator(f'.item[data-id="{top.id}"]')).to_have_count(0)
        await expect(page.locator("#detail")).to_contain_text("已补偿")
        await page.screenshot(path=str(ARTIFACTS / "desk_page.png"))
    assert problems == []
    outcome = await running_desk.store.outcome(top.id)
    assert (outcome.resolution_code, outcome.resolved_by, outcome.satisfaction) == (
        "compensated",
        "张三",
        5,
    )


async def test_supervisor_sees_statistics_with_charts(running_desk: Running) -> None:
    api = require_browser()
    ARTIFACTS.mkdir(exist_ok=True)
    async with desk_page(api, running_desk.base_url) as page:
        await log_in(page, TOKENS["supervisor"][2])
        await page.click("#tab-stats")
        chart = page.locator("[data-testid=volume-chart] rect")
        await api.expect(chart.first).to_be_visible()
        await api.expect(page.locator("#stats")).to_contain_text("超时率")
        channels = page.locator(".chart").nth(1).locator("rect")
        await api.expect(channels).to_have_count(4)  # phone, app_review, email, wechat
        await page.screenshot(path=str(ARTIFACTS / "desk_stats.png"), full_page=True)


async def test_the_page_drops_a_last_event_id_the_feed_refuses_and_goes_live_again(
    running_desk: Running,
) -> None:
    """The page resumes the stream after the last event id it saw. An id the feed does not
    know (the desk moved from the SQLite feed to Redis, whose ids look different) is a
    400: the page must reconnect without it, not retry it every 3 s and stay offline."""
    api = require_browser()
    expect = api.expect
    async with desk_page(api, running_desk.base_url) as page:
        await log_in(page, TOKENS["viewer"][2])
        await expect(page.locator("#live")).to_have_text("● 实时")

        await page.evaluate("() => { state.lastEventId = '1700000000000-3'; startStream(); }")
        await expect(page.locator("#live")).to_have_text("● 重连中")
        await expect(page.locator("#live")).to_have_text("● 实时", timeout=10_000)

        fresh = dataclasses.replace(
            running_desk.records[0], id="live-after-400", customer_ref="cref-live"
        )
        await running_desk.store.write([fresh])
        await running_desk.feed.write([fresh])
        await expect(page.locator('#feed [data-id="live-after-400"]')).to_have_count(
            1, timeout=10_000
        )
