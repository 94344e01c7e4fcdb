"""Backfill rate of the imap connector: N mails in a real Dovecot folder, read from scratch.

    python bench/imap_backfill.py [--mails 10000] [--amqp URL] [--skip-embedded]

1. imap → RabbitMQ: `PullScheduler.poll_once` (read, publish with confirms to
   feedback.ingress, commit the cursor per batch) into a throwaway vhost; timed until
   the cursor is past the last mail. This is the connector's own rate.
2. imap → embedded pipeline: `feedback-ingest backfill kefu` in-process (the same
   `run --once` runtime: in-memory bus, classification, SQLite feed and store); timed
   until every record is stored. Reports N in, N stored, none twice.

The mails are the fixtures of tests/fixtures/email (Chinese charsets, QP, base64, HTML,
attachments, quoted replies, an auto-reply and a bounce), each with a unique
Message-ID, written straight into the maildir (APPENDing 10 000 mails would time the
test setup, not the connector).
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

from connectors.imap.config import ImapOptions
from connectors.imap.connector import ImapConnector, load_cursor
from ingest.abc import FeedQuery
from ingest.backfill import Progress, run_backfill
from ingest.log import configure_logging
from ingest.options import parse_options
from ingest.runtime import components
from ingest.runtime.publish import Publisher
from ingest.runtime.pull import PullScheduler
from ingest.settings import settings_from_dict
from ingest.testing import MemoryCursors
from tests.dovecot import Dovecot, fixture_mails

RESULTS_DIR = Path(os.environ.get("BENCH_RESULTS_DIR") or Path(__file__).parent / "results")


def fill_maildir(server: Dovecot, count: int) -> int:
    """`count` mails in INBOX's maildir; returns how many are customer mail."""
    mails = fixture_mails(count)
    start = time.time() - count
    server.deliver([(raw, start + i) for i, (raw, _) in enumerate(mails)])
    return sum(customer for _, customer in mails)


def options(server: Dovecot, **extra: Any) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": server.imaps_port,
        "username": server.user,
        "password": server.password,
        "ca_file": str(server.ca_file),
        "batch_size": 500,
        **extra,
    }


async def to_rabbitmq(server: Dovecot, amqp_url: str, count: int) -> dict[str, Any]:
    vhost = f"imap-bench-{uuid.uuid4().hex[:8]}"
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        raise SystemExit("rabbitmqctl is needed for a throwaway vhost")
    await asyncio.to_thread(
        subprocess.run, [ctl, "add_vhost", vhost], check=True, capture_output=True
    )
    await asyncio.to_thread(
        subprocess.run,
        [ctl, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
        check=True,
        capture_output=True,
    )
    url = urlparse(amqp_url)._replace(path="/" + quote(vhost, safe="")).geturl()
    try:
        settings = settings_from_dict({"broker": {"url": url}, "log": {"level": "warning"}})
        bus = components.make_bus(settings)
        await bus.start()
        conn = ImapConnector("bench", parse_options(ImapOptions, options(server), "bench"))
        cursors = MemoryCursors()
        scheduler = PullScheduler([conn], Publisher(bus), cursors)
        started = time.perf_counter()
        published = await scheduler.poll_once(conn)
        elapsed = time.perf_counter() - started
        await conn.close()
        depths = await bus.queue_depths()
        await bus.close()
        last_uid = load_cursor(cursors.saved["bench"])["INBOX"][1]
        return {
            "published": published,
            "in_queues": depths.get("feedback.process", 0)
            + depths.get("feedback.process.urgent", 0),
            "cursor_last_uid": last_uid,
            "secs": round(elapsed, 2),
            "mails_per_sec": round(count / elapsed, 1),
        }
    finally:
        await asyncio.to_thread(subprocess.run, [ctl, "delete_vhost", vhost], capture_output=True)


async def embedded(server: Dovecot, count: int) -> dict[str, Any]:
    """`feedback-ingest backfill kefu` in-process (the CLI's own path, progress on stderr)."""
    state = Path(tempfile.mkdtemp(prefix="imap-bench-state-"))
    try:
        settings = settings_from_dict(
            {
                "runtime": {"state_dir": str(state), "drain_timeout_secs": 600},
                "log": {"level": "warning"},
                "connectors": {"kefu": {"type": "imap", **options(server)}},
            }
        )
        report = await run_backfill(settings, "kefu", "", Progress(sys.stderr))
        print(report.summary(), file=sys.stderr)
        store, feed = components.make_store(settings), components.make_feed(settings)
        await store.start()
        await feed.start()
        stored = await store.count()
        ids = [r.id for r in await feed.top(FeedQuery(limit=count + 10))]
        await store.close()
        await feed.close()
        return {
            "published": report.counts.published,
            "skipped": report.counts.skipped,
            "stored": stored,
            "in_feed": len(ids),
            "distinct_in_feed": len(set(ids)),
            "read_secs": round(report.read_secs, 2),
            "secs": round(report.total_secs, 2),
            "mails_per_sec": round(count / report.total_secs, 1),
        }
    finally:
        shutil.rmtree(state, ignore_errors=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=10_000)
    parser.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--skip-rabbitmq", action="store_true")
    parser.add_argument("--skip-embedded", action="store_true")
    args = parser.parse_args()
    configure_logging("warning")
    summary: dict[str, Any] = {"benchmark": "imap_backfill", "mails": args.mails}
    with Dovecot.start() as server:
        t = time.perf_counter()
        customer = fill_maildir(server, args.mails)
        summary["customer_mails"] = customer
        print(
            f"{args.mails} mails in the maildir ({customer} from customers), "
            f"{time.perf_counter() - t:.1f}s",
            flush=True,
        )
        if not args.skip_rabbitmq:
            result = await to_rabbitmq(server, args.amqp, args.mails)
            print("imap -> RabbitMQ (read + publish with confirms + cursor):", result, flush=True)
            assert result["published"] == customer == result["in_queues"], result
            summary["to_rabbitmq"] = result
        if not args.skip_embedded:
            result = await embedded(server, args.mails)
            print("imap -> embedded pipeline (backfill, stored):", result, flush=True)
            assert result["stored"] == customer == result["distinct_in_feed"], result
            summary["embedded"] = result
    (RESULTS_DIR / "imap_backfill.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
