"""Record-by-record accounting after a chaos run.

For every input the generator sent: its id is in the SQL store once (and its audit
trail has exactly one `ingested` row), in the feed once (a `rec` hash, in the open
feed or resolved, one `new` event), or, for a deliberately malformed input, in the
dead-letter queue. Anything else is reported: ids missing (lost), ids written twice
or records no input explains (duplicated), good inputs parked (dead, unexpected),
messages left in a work queue (stuck).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from tests.chaos.inputs import Sent, bad_key

LABELS = ("file_drop", "wechat", "transcripts")


@dataclass
class Observed:
    stored: set[str] = field(default_factory=set)
    ingested_rows: Counter[str] = field(default_factory=Counter)
    feed: set[str] = field(default_factory=set)
    """ids with a feed item (`rec` hash / feed_items row)."""
    feed_open_or_resolved: set[str] = field(default_factory=set)
    new_events: Counter[str] | None = None
    """`new` events per id; None when the capped stream was trimmed."""
    dead: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    queues: dict[str, int] = field(default_factory=dict)


@dataclass
class Row:
    label: str
    sent: int = 0
    malformed: int = 0
    stored: int = 0
    in_feed: int = 0
    dead: int = 0
    lost: int = 0
    duplicated: int = 0
    dead_unexpected: int = 0
    dead_copies: int = 0


@dataclass
class Report:
    rows: list[Row]
    total: Row
    stuck: dict[str, int]
    failures: list[str]
    examples: dict[str, list[str]]

    @property
    def ok(self) -> bool:
        return not self.failures

    def table(self) -> str:
        head = (
            f"{'channel':<12} {'sent':>7} {'malformed':>9} {'stored':>7} {'in feed':>7} "
            f"{'dead':>5} {'lost':>5} {'duplicated':>10} {'dead?':>5} {'dead x2':>7}"
        )
        lines = [head, "-" * len(head)]
        for row in [*self.rows, self.total]:
            lines.append(
                f"{row.label:<12} {row.sent:>7} {row.malformed:>9} {row.stored:>7} "
                f"{row.in_feed:>7} {row.dead:>5} {row.lost:>5} {row.duplicated:>10} "
                f"{row.dead_unexpected:>5} {row.dead_copies:>7}"
            )
        lines.append(
            "sent = good inputs; dead = malformed inputs found parked; dead? = parked "
            "messages no malformed input explains; dead x2 = extra copies of a parked input"
        )
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": [vars(r) for r in [*self.rows, self.total]],
            "stuck": self.stuck,
            "failures": self.failures,
        }


def dead_key(headers: dict[str, str], body: bytes) -> str:
    return bad_key(headers.get("x-input-ref", ""), body)


def account(sent: Sent, seen: Observed) -> Report:
    rows = {label: Row(label) for label in LABELS}
    failures: list[str] = list(sent.problems)
    examples: dict[str, list[str]] = {}

    def example(kind: str, what: str) -> None:
        examples.setdefault(kind, [])
        if len(examples[kind]) < 5:
            examples[kind].append(what)

    for event_id, label in sent.ids.items():
        row = rows[label]
        row.sent += 1
        stored = event_id in seen.stored
        in_feed = event_id in seen.feed_open_or_resolved
        row.stored += stored
        row.in_feed += in_feed
        if not (stored and in_feed):
            row.lost += 1
            example("lost", f"{label} {event_id} stored={stored} in_feed={in_feed}")
        twice = seen.ingested_rows.get(event_id, 0) > 1 or (
            seen.new_events is not None and seen.new_events.get(event_id, 0) > 1
        )
        if twice:
            row.duplicated += 1
            example("duplicated", f"{label} {event_id} ingested={seen.ingested_rows[event_id]}")
    strangers = (seen.stored | seen.feed) - set(sent.ids)
    for event_id in sorted(strangers):
        example("duplicated", f"record {event_id} that no input explains")

    dead_seen: Counter[str] = Counter(dead_key(h, b) for h, b in seen.dead)
    for key, label in sent.bad.items():
        row = rows[label]
        row.malformed += 1
        if dead_seen.get(key, 0):
            row.dead += 1
            row.dead_copies += dead_seen[key] - 1
        else:
            row.lost += 1
            example("lost", f"{label} malformed input {key} not parked")
    for headers, body in seen.dead:
        if dead_key(headers, body) not in sent.bad:
            feedback_id = headers.get("x-feedback-id", "")
            label = sent.ids.get(feedback_id, "")
            target = rows[label] if label else rows["file_drop"]
            target.dead_unexpected += 1
            reason = headers.get("x-error") or headers.get("x-first-death-reason", "")
            digest = hashlib.sha256(body).hexdigest()[:12]
            example("dead_unexpected", f"{feedback_id or digest}: {reason[:160]}")

    total = Row("TOTAL")
    for row in rows.values():
        for name, value in vars(row).items():
            if name != "label":
                setattr(total, name, getattr(total, name) + value)
    total.duplicated += len(strangers)
    stuck = {q: n for q, n in seen.queues.items() if n and q != "feedback.dead"}
    if total.lost:
        failures.append(f"{total.lost} lost")
    if total.duplicated:
        failures.append(f"{total.duplicated} duplicated")
    if total.dead_unexpected:
        failures.append(f"{total.dead_unexpected} good inputs dead-lettered")
    if stuck:
        failures.append(f"messages stuck in work queues: {stuck}")
    return Report(list(rows.values()), total, stuck, failures, examples)


# --- reading what the services hold ---------------------------------------------


async def observe_services(
    pg_url: str, redis_url: str, prefix: str, amqp_url: str, events_maxlen: int = 100_000
) -> Observed:
    import asyncpg
    import redis.asyncio as aioredis

    from ingest.bus.amqp import AmqpBus
    from ingest.bus.base import Q_DEAD

    seen = Observed()
    conn = await asyncpg.connect(pg_url)
    try:
        seen.stored = {r["id"] for r in await conn.fetch("SELECT id FROM feedback_records")}
        rows = await conn.fetch(
            "SELECT record_id, count(*) AS n FROM feedback_audit "
            "WHERE action = 'ingested' GROUP BY record_id"
        )
        seen.ingested_rows = Counter({r["record_id"]: int(r["n"]) for r in rows})
    finally:
        await conn.close()

    client = aioredis.Redis.from_url(redis_url)
    try:
        rec_prefix = f"{prefix}:rec:"
        async for key in client.scan_iter(f"{rec_prefix}*", count=2000):
            seen.feed.add(key.decode().removeprefix(rec_prefix))
        in_feed = {m.decode() for m in await client.zrange(f"{prefix}:feed", 0, -1)}
        claimed = {m.decode() for m in await client.zrange(f"{prefix}:claimed", 0, -1)}
        seen.feed_open_or_resolved = set(in_feed | claimed)
        for event_id in seen.feed - seen.feed_open_or_resolved:  # resolved items leave the feed
            status = await client.hget(f"{rec_prefix}{event_id}", "status")
            if status == b"resolved":
                seen.feed_open_or_resolved.add(event_id)
        length = await client.xlen(f"{prefix}:events")
        if length < events_maxlen * 0.95:
            news: Counter[str] = Counter()
            last = "-"
            while True:
                page = await client.xrange(f"{prefix}:events", min=last, max="+", count=5000)
                if last != "-":
                    page = page[1:]
                if not page:
                    break
                for _, fields in page:
                    if fields.get(b"type") == b"new":
                        news[fields.get(b"id", b"").decode()] += 1
                last = page[-1][0].decode()
            seen.new_events = news
    finally:
        await client.aclose()

    async with AmqpBus(amqp_url, timeout_secs=30) as bus:
        seen.queues = await bus.queue_depths()
        while (delivery := await bus.get(Q_DEAD)) is not None:
            seen.dead.append((dict(delivery.headers), delivery.body))
            await delivery.ack()
    return seen


def observe_embedded(state_dir: Path) -> Observed:
    seen = Observed()
    with sqlite3.connect(state_dir / "feedback.db") as db:
        seen.stored = {r[0] for r in db.execute("SELECT id FROM feedback_records")}
        seen.ingested_rows = Counter(
            {
                r[0]: r[1]
                for r in db.execute(
                    "SELECT record_id, count(*) FROM feedback_audit "
                    "WHERE action = 'ingested' GROUP BY record_id"
                )
            }
        )
    with sqlite3.connect(state_dir / "feed.db") as db:
        rows = list(db.execute("SELECT id, status FROM feed_items"))
        seen.feed = {r[0] for r in rows}
        seen.feed_open_or_resolved = set(seen.feed)
        seen.new_events = Counter(
            r[0] for r in db.execute("SELECT id FROM feed_events WHERE type = 'new'")
        )
    dead_db = state_dir / "dead.db"
    if dead_db.exists():
        with sqlite3.connect(dead_db) as db:
            for body, headers in db.execute("SELECT body, headers FROM parked ORDER BY row"):
                seen.dead.append((orjson.loads(headers), bytes(body)))
    return seen
