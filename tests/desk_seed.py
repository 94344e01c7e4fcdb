"""A desk on the embedded feed and store, seeded with the bundled samples classified by
the real chain: shared by the desk's API test, its browser test and bench/desk_load.py."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from ingest.classify import Chain, ChainSpec
from ingest.codec import event_from_dict
from ingest.desk import mount
from ingest.desk.auth import hash_token
from ingest.model import FeedbackRecord
from ingest.options import Secret
from ingest.runtime.http import build_app
from ingest.settings import ClassifySettings, Settings, settings_from_dict
from sinks.sql_store import SqlStore
from sinks.sqlite_feed import SqliteFeed

SAMPLES = Path(__file__).resolve().parents[1] / "ingest" / "data" / "samples.jsonl"
TOKENS = {
    "viewer": ("王五", "viewer", "fd_test_viewer_token"),
    "agent": ("张三", "agent", "fd_test_agent_token"),
    "agent2": ("李四", "agent", "fd_test_agent2_token"),
    "supervisor": ("赵六", "supervisor", "fd_test_supervisor_token"),
}
REPEAT_ID = "repeat-wechat-001"
"""The caller of sample-001 writes again on WeChat: the same customer_ref."""


CONTACT_KEY = "contact-key-for-desk-tests-0123456789"
"""Seals the samples' authors (ingest/sealed.py), as `[classify] contact_key` would."""


def auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[who][2]}"}


def desk_settings(state_dir: Path, **desk: Any) -> Settings:
    tokens = [{"name": n, "role": r, "sha256": hash_token(t)} for n, r, t in TOKENS.values()]
    return settings_from_dict(
        {
            "runtime": {"state_dir": str(state_dir)},
            "desk": {"tokens": tokens, "sse_heartbeat_secs": 1.0, **desk},
            "classify": {"contact_key": CONTACT_KEY},
        }
    )


def sample_events() -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in SAMPLES.read_bytes().splitlines() if line.strip()]


def classify(events: list[dict[str, Any]]) -> list[FeedbackRecord]:
    chain = Chain(ChainSpec.from_settings(ClassifySettings(contact_key=Secret(CONTACT_KEY))))
    return [chain(event_from_dict(event)) for event in events]


def sample_records(now: datetime | None = None) -> list[FeedbackRecord]:
    """The samples plus a repeat contact, received in the last hours so nothing is
    past due yet (the urgent ones first to come due)."""
    now = now or datetime.now(UTC)
    events = sample_events()
    first = events[0]
    events.append(
        {
            "id": REPEAT_ID,
            "channel": "wechat",
            "author": first["author"],
            "text": "我昨天打过电话说我妈的信用卡被盗刷，到现在还没人联系我",
        }
    )
    records = []
    for i, record in enumerate(classify(events)):
        received = now - timedelta(minutes=5 * (len(events) - i))
        hours = {"urgent": 24, "important": 48, "general": 72}[record.urgency]
        records.append(
            dataclasses.replace(
                record, received_at=received, due_at=received + timedelta(hours=hours)
            )
        )
    return records


async def open_backends(state_dir: Path) -> tuple[SqliteFeed, SqlStore]:
    feed = SqliteFeed(str(state_dir / "feed.db"))
    store = SqlStore(f"sqlite:///{state_dir / 'feedback.db'}")
    await feed.start()
    await store.start()
    return feed, store


async def seed(feed: SqliteFeed, store: SqlStore, records: list[FeedbackRecord]) -> None:
    await store.write(records)
    await feed.write(records)


def desk_app(feed: SqliteFeed, store: SqlStore, settings: Settings) -> web.Application:
    """The worker's web app with the desk mounted, as the supervisor builds it."""
    app = build_app({"feed": feed.ping, "store": store.ping})
    mount(app, feed, store, settings)
    return app
