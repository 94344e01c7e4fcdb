"""End to end over the real services: a running Worker (RabbitMQ, processors, Redis
feed, PostgreSQL store) polls local fakes of the App Store (RSS and Connect API),
Google Play and AppGallery. Every review lands once in the store and the feed; an
edited review updates its record (same id, version 2) instead of adding one; polls
that find nothing new change nothing; a new review reaches the feed within one poll
interval (measured)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from ingest.abc import FeedQuery
from ingest.model import FeedbackRecord, stable_id
from ingest.settings import Settings
from tests.app_reviews_fakes import (
    APPLE_APP,
    HUAWEI_APP,
    PACKAGE,
    FakeStores,
    Keys,
    asc_item,
    asc_options,
    google_item,
    google_options,
    huawei_item,
    huawei_options,
    rss_entry,
    rss_options,
    running,
)
from tests.pipeline_helpers import (
    drop_redis_prefix,
    feed_records,
    running_worker,
    services_settings,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
POLL_SECS = 1.0
KEYS = Keys.make()


@dataclass
class Running:
    settings: Settings
    fake: FakeStores
    store_url: str


@pytest.fixture
async def worker(
    tmp_path: Path, amqp_vhost_url: str, redis_url: str, pg_database: str, unique: str
) -> AsyncIterator[Running]:
    prefix = f"test-{unique}"
    async with running(FakeStores.with_fixtures(KEYS)) as fake:
        fast = {"poll_interval_secs": POLL_SECS, "max_retries": 1}
        connectors = {
            "ios_cn": {"type": "app_store", **rss_options(fake, **fast)},
            "ios_api": {"type": "app_store", **asc_options(fake, **fast)},
            "play": {"type": "google_play", **google_options(fake, **fast)},
            "agc": {"type": "huawei_appgallery", **huawei_options(fake, **fast)},
        }
        settings = services_settings(
            tmp_path, amqp_vhost_url, redis_url, pg_database, prefix, connectors
        )
        try:
            async with running_worker(settings):  # the worker stops before the fake does
                yield Running(settings, fake, pg_database)
        finally:
            await drop_redis_prefix(redis_url, prefix)


def expected_ids(fake: FakeStores) -> dict[str, str]:
    """record id → native id of every review the fakes hold."""
    out = {}
    for e in fake.rss["cn"]:
        out[stable_id("app_review", "app_store", APPLE_APP, e["id"]["label"])] = e["id"]["label"]
    for i in fake.asc:
        out[stable_id("app_review", "app_store", APPLE_APP, i["id"])] = i["id"]
    for g in fake.google:
        out[stable_id("app_review", "google_play", PACKAGE, g["reviewId"])] = g["reviewId"]
    for h in fake.huawei:
        out[stable_id("app_review", "huawei_appgallery", HUAWEI_APP, str(h["reviewId"]))] = str(
            h["reviewId"]
        )
    return out


async def in_feed(settings: Settings) -> dict[str, FeedbackRecord]:
    return await feed_records(settings, FeedQuery(limit=500, channel="app_review"))


async def rows(url: str) -> dict[str, tuple[int, str, int | None]]:
    """record id → (version, text, rating) of every app_review row in PostgreSQL."""
    conn = await asyncpg.connect(url)
    try:
        found = await conn.fetch(
            "SELECT id, version, text, rating FROM feedback_records WHERE channel = 'app_review'"
        )
    except asyncpg.UndefinedTableError:
        return {}  # the store sink has not migrated yet
    finally:
        await conn.close()
    return {r["id"]: (r["version"], r["text"], r["rating"]) for r in found}


async def test_every_store_lands_once_an_edit_updates_and_repolls_add_nothing(
    worker: Running,
) -> None:
    run = worker
    wanted = expected_ids(run.fake)
    assert len(wanted) == 13

    async def all_stored() -> bool:
        return set(await rows(run.store_url)) == set(wanted)

    await wait_until(all_stored, 60, "13 reviews from four sources in PostgreSQL")
    feed = await in_feed(run.settings)
    assert set(wanted) <= set(feed), "every review is in the Redis feed"
    sources = {r.source for r in feed.values()}
    assert sources == {
        f"app_store:{APPLE_APP}",
        f"google_play:{PACKAGE}",
        f"huawei_appgallery:{HUAWEI_APP}",
    }
    play = next(r for r in feed.values() if r.native_id.startswith("gp:AOqpTOG1"))
    assert (play.rating, play.meta["app_version"], play.meta["device"]) == (1, "8.2.1", "HWVOG")

    # An edit: the same Google review, new words and stars, a newer lastModified.
    target = run.fake.google[1]
    record_id = stable_id("app_review", "google_play", PACKAGE, target["reviewId"])
    comment = target["comments"][0]["userComment"]
    comment.update(
        text="人脸识别不过\t更新：网点帮我重新采集了照片，现在可以了。",
        starRating=4,
        lastModified={"seconds": str(int(time.time())), "nanos": 0},
    )

    async def updated() -> bool:
        version, _, stars = (await rows(run.store_url))[record_id]
        return version == 2 and stars == 4

    await wait_until(updated, 30, "the edited review to update its record")
    await asyncio.sleep(POLL_SECS * 3)  # several more polls that find nothing new
    stored = await rows(run.store_url)
    assert set(stored) == set(wanted), "an edit is not a second record"
    assert "网点帮我重新采集" in stored[record_id][1]
    versions = {rid: v for rid, (v, _, _) in stored.items()}
    assert versions.pop(record_id) == 2
    assert set(versions.values()) == {1}, "re-polls rewrote nothing"
    feed = await in_feed(run.settings)
    assert feed[record_id].rating == 4


async def test_a_new_review_reaches_the_feed_within_one_poll_interval(worker: Running) -> None:
    run = worker
    await wait_until(lambda: _count_at_least(run, 13), 60, "the fixture reviews to be stored first")
    now = datetime.now(UTC)
    new = {
        stable_id("app_review", "app_store", APPLE_APP, "12999999999"): lambda: run.fake.rss[
            "cn"
        ].append(rss_entry("12999999999", now, 1)),
        stable_id("app_review", "app_store", APPLE_APP, "00000099-live-0001"): lambda: (
            run.fake.asc.append(asc_item("00000099-live-0001", now, 1))
        ),
        stable_id("app_review", "google_play", PACKAGE, "gp:live-0001"): lambda: (
            run.fake.google.append(google_item("gp:live-0001", now, 1))
        ),
        stable_id("app_review", "huawei_appgallery", HUAWEI_APP, "hw-live-0001"): lambda: (
            run.fake.huawei.append(huawei_item("hw-live-0001", now - timedelta(seconds=1), 1))
        ),
    }
    latencies: dict[str, float] = {}
    for record_id, arrive in new.items():
        arrive()
        started = time.perf_counter()
        while record_id not in await in_feed(run.settings):
            assert time.perf_counter() - started < 30, f"{record_id} never reached the feed"
            await asyncio.sleep(0.05)
        latencies[record_id] = time.perf_counter() - started
    worst = max(latencies.values())
    print(
        f"\npoll-to-feed latency (poll interval {POLL_SECS}s): "
        + ", ".join(f"{v:.2f}s" for v in latencies.values())
    )
    # One poll interval at most until the poll, plus the pipeline (broker, processors,
    # Redis): well under a second here.
    assert worst < POLL_SECS + 2.0, latencies


async def _count_at_least(run: Running, n: int) -> bool:
    return len(await rows(run.store_url)) >= n
