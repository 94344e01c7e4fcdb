"""Backfill rate of the review connectors: N reviews per store in the local fake stores
(tests/app_reviews_fakes.py, real-shaped pages), read from scratch.

    python bench/reviews_backfill.py [--reviews 10000] [--amqp URL] [--skip-embedded]

1. store → RabbitMQ, per store (App Store Connect, Google Play, AppGallery): the
   connector's `read(None)` batches, each published with confirms to feedback.ingress
   in a throwaway vhost and its cursor committed, as `PullScheduler.poll_once` does,
   with a progress line. The connector's own rate (HTTP paging + parsing + publish).
2. store → embedded pipeline: `feedback-ingest run --once` in-process with the Google
   Play connector (in-memory bus, classification, SQLite feed and store); timed until
   every record is stored. Reports N in, N stored, none twice.

The Apple RSS feed is left out: it never holds more than 500 reviews per storefront.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connectors.app_reviews.apple import AppStoreConnector
from connectors.app_reviews.connector import ReviewConnector
from connectors.app_reviews.google import GooglePlayConnector
from connectors.app_reviews.huawei import HuaweiAppGalleryConnector
from ingest.abc import FeedQuery
from ingest.log import configure_logging
from ingest.options import parse_options
from ingest.runtime import components
from ingest.runtime.publish import Publisher
from ingest.runtime.supervisor import Worker
from ingest.settings import settings_from_dict
from ingest.testing import MemoryCursors
from tests.app_reviews_fakes import (
    FakeStores,
    Keys,
    asc_options,
    google_options,
    huawei_options,
    running,
)

RESULTS_DIR = Path(os.environ.get("BENCH_RESULTS_DIR") or Path(__file__).parent / "results")
RESULTS = RESULTS_DIR / "reviews_backfill.json"
"""Updated in place: keys this script does not measure (poll → feed) are kept."""

STORES: list[tuple[str, type[ReviewConnector], Any]] = [
    ("app_store (Connect API)", AppStoreConnector, asc_options),
    ("google_play", GooglePlayConnector, google_options),
    ("huawei_appgallery", HuaweiAppGalleryConnector, huawei_options),
]


def progress(label: str, done: int, total: int, started: float) -> None:
    width = 30
    filled = int(width * done / max(total, 1))
    rate = done / max(time.perf_counter() - started, 1e-9)
    bar = "#" * filled + "-" * (width - filled)
    print(f"\r  {label:<24} [{bar}] {done}/{total} {rate:,.0f}/s", end="", file=sys.stderr)


async def vhost(amqp_url: str) -> tuple[str, str]:
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        raise SystemExit("rabbitmqctl is needed for a throwaway vhost")
    name = f"reviews-bench-{uuid.uuid4().hex[:8]}"
    for args in (["add_vhost", name], ["set_permissions", "-p", name, "guest", ".*", ".*", ".*"]):
        await asyncio.to_thread(subprocess.run, [ctl, *args], check=True, capture_output=True)
    return name, urlparse(amqp_url)._replace(path="/" + quote(name, safe="")).geturl()


async def to_rabbitmq(fake: FakeStores, amqp_url: str, count: int) -> list[dict[str, Any]]:
    name, url = await vhost(amqp_url)
    results = []
    try:
        settings = settings_from_dict({"broker": {"url": url}, "log": {"level": "warning"}})
        bus = components.make_bus(settings)
        await bus.start()
        publisher = Publisher(bus)
        for label, cls, options in STORES:
            table = options(fake, batch_size=500)
            connector = cls("bench", parse_options(cls.Options, table, "bench"))
            cursors = MemoryCursors()
            before = await bus.queue_depths()
            published = 0
            started = time.perf_counter()
            async for batch in connector.read(await cursors.load("bench")):
                await publisher.publish("bench", batch.events, batch.bad)
                if batch.cursor is not None:
                    await cursors.save("bench", batch.cursor)
                published += len(batch.events)
                progress(label, published, count, started)
            elapsed = time.perf_counter() - started
            print(file=sys.stderr)
            await connector.close()
            depths = await bus.queue_depths()
            queued = sum(
                depths.get(q, 0) - before.get(q, 0)
                for q in ("feedback.process", "feedback.process.urgent")
            )
            results.append(
                {
                    "store": label,
                    "published": published,
                    "in_queues": queued,
                    "secs": round(elapsed, 2),
                    "reviews_per_sec": round(published / elapsed, 1),
                }
            )
        await bus.close()
        return results
    finally:
        ctl = shutil.which("rabbitmqctl") or "rabbitmqctl"
        await asyncio.to_thread(subprocess.run, [ctl, "delete_vhost", name], capture_output=True)


async def embedded(fake: FakeStores, count: int) -> dict[str, Any]:
    state = Path(tempfile.mkdtemp(prefix="reviews-bench-state-"))
    try:
        table = google_options(fake, batch_size=500)
        settings = settings_from_dict(
            {
                "runtime": {"state_dir": str(state), "drain_timeout_secs": 600},
                "log": {"level": "warning"},
                "connectors": {"play": {"type": "google_play", **table}},
            }
        )
        started = time.perf_counter()
        stats = await Worker(settings, once=True, http=False).run()
        elapsed = time.perf_counter() - started
        store, feed = components.make_store(settings), components.make_feed(settings)
        await store.start()
        await feed.start()
        stored = await store.count()
        ids = [r.id for r in await feed.top(FeedQuery(limit=count + 10, channel="app_review"))]
        await store.close()
        await feed.close()
        return {
            "published": stats.published,
            "stored": stored,
            "in_feed": len(ids),
            "distinct_in_feed": len(set(ids)),
            "secs": round(elapsed, 2),
            "reviews_per_sec": round(count / elapsed, 1),
        }
    finally:
        shutil.rmtree(state, ignore_errors=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--reviews", type=int, default=10_000)
    parser.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--skip-rabbitmq", action="store_true")
    parser.add_argument("--skip-embedded", action="store_true")
    args = parser.parse_args()
    configure_logging("warning")
    fake = FakeStores(Keys.make())
    fake.fill(args.reviews)
    summary: dict[str, Any] = {"reviews": args.reviews}
    async with running(fake):
        if not args.skip_rabbitmq:
            summary["to_rabbitmq"] = await to_rabbitmq(fake, args.amqp, args.reviews)
            for result in summary["to_rabbitmq"]:
                print("store -> RabbitMQ (read + publish with confirms + cursor):", result)
                assert result["published"] == args.reviews == result["in_queues"], result
        if not args.skip_embedded:
            result = await embedded(fake, args.reviews)
            print("google_play -> embedded pipeline (run --once, stored):", result)
            assert result["stored"] == args.reviews == result["distinct_in_feed"], result
            summary["embedded_google_play"] = result
    merged = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    RESULTS.write_text(json.dumps({**merged, **summary}, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
