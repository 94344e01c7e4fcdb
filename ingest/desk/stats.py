"""The supervisor's figures (domain.md, "How the service is measured"), computed from
the store's rows of one window: pure, so each definition is tested on a table.

    volume          records per time bucket (local day or hour), by channel, level, category
    unresolved      records of the window not resolved yet, by level; `breached` of them
                    are past their deadline now
    handling time   received_at → resolved_at of the resolved ones (median, p90)
    timeout rate    of the records whose deadline has come (resolved, or due before
                    now), the share resolved late or still open past due; goal < 5 %
    CSAT            satisfied (4–5) / all survey answers
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from ingest.codec import parse_time
from ingest.model import URGENCY_LEVELS

TIMEOUT_GOAL = 0.05
CSAT_BENCHMARK = 0.886
"""National banking CSAT reported for 2024 (domain.md): a reference line on the chart."""
Bucket = Literal["hour", "day"]


@dataclass(frozen=True, slots=True)
class StatRow:
    received_at: datetime
    channel: str
    urgency: str
    category: str
    kind: str = "complaint"
    sentiment: str = ""
    due_at: datetime | None = None
    status: str = "open"
    resolved_at: datetime | None = None
    satisfaction: int | None = None

    @classmethod
    def from_export(cls, row: Mapping[str, Any]) -> StatRow:
        """A row of `Store.export_rows` (ISO times, parsed JSON)."""
        sentiment = row.get("sentiment")
        due, resolved = row.get("due_at"), row.get("resolved_at")
        satisfaction = row.get("satisfaction")
        return cls(
            received_at=parse_time(row["received_at"], "received_at"),
            channel=str(row.get("channel") or ""),
            urgency=str(row.get("urgency") or "general"),
            category=str(row.get("category") or "") or "unknown",
            kind=str(row.get("kind") or ""),
            sentiment=str(sentiment.get("label", "")) if isinstance(sentiment, dict) else "",
            due_at=None if due is None else parse_time(due, "due_at"),
            status=str(row.get("status") or "open"),
            resolved_at=None if resolved is None else parse_time(resolved, "resolved_at"),
            satisfaction=None if satisfaction is None else int(satisfaction),
        )

    @property
    def resolved(self) -> bool:
        return self.status == "resolved" or self.resolved_at is not None


def bucket_start(moment: datetime, bucket: Bucket, tz: ZoneInfo) -> datetime:
    local = moment.astimezone(tz)
    if bucket == "hour":
        return local.replace(minute=0, second=0, microsecond=0)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def bucket_label(start: datetime, bucket: Bucket) -> str:
    return start.strftime("%Y-%m-%dT%H:00" if bucket == "hour" else "%Y-%m-%d")


def _buckets(since: datetime, until: datetime, bucket: Bucket, tz: ZoneInfo) -> list[str]:
    """Every bucket of the window in order, so a quiet day shows as 0, not as a gap."""
    step = timedelta(hours=1) if bucket == "hour" else timedelta(days=1)
    labels: list[str] = []
    current = bucket_start(since, bucket, tz)
    while current < until:
        labels.append(bucket_label(current, bucket))
        # step in local wall time, then re-normalise (DST-free zones need no more)
        current = bucket_start(current + step, bucket, tz)
    return labels


def _rate(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(part / whole, 4)


def compute(
    rows: Iterable[StatRow],
    *,
    now: datetime,
    since: datetime,
    bucket: Bucket = "day",
    timezone: str = "Asia/Shanghai",
) -> dict[str, Any]:
    tz = ZoneInfo(timezone)
    labels = _buckets(since, now, bucket, tz)
    volume: dict[str, dict[str, Counter[str]]] = {
        label: {"channel": Counter(), "level": Counter(), "category": Counter()} for label in labels
    }
    totals: dict[str, Counter[str]] = {
        "channel": Counter(),
        "level": Counter(),
        "category": Counter(),
        "kind": Counter(),
        "sentiment": Counter(),
    }
    unresolved: Counter[str] = Counter()
    breached: Counter[str] = Counter()
    handling: list[float] = []
    due_count = late = 0
    answers = satisfied = 0
    count = 0
    for row in rows:
        if not since <= row.received_at < now:
            continue
        count += 1
        label = bucket_label(bucket_start(row.received_at, bucket, tz), bucket)
        if label in volume:
            volume[label]["channel"][row.channel] += 1
            volume[label]["level"][row.urgency] += 1
            volume[label]["category"][row.category] += 1
        for key, value in (
            ("channel", row.channel),
            ("level", row.urgency),
            ("category", row.category),
            ("kind", row.kind),
            ("sentiment", row.sentiment or "unknown"),
        ):
            totals[key][value] += 1
        if row.resolved:
            if row.resolved_at is not None:
                handling.append((row.resolved_at - row.received_at).total_seconds())
                if row.due_at is not None:
                    due_count += 1
                    late += row.resolved_at > row.due_at
        else:
            unresolved[row.urgency] += 1
            if row.due_at is not None and row.due_at < now:
                breached[row.urgency] += 1
                due_count += 1
                late += 1
        if row.satisfaction is not None:
            answers += 1
            satisfied += row.satisfaction >= 4
    handling.sort()
    timeout_rate = _rate(late, due_count)
    return {
        "window": {
            "since": since.isoformat(),
            "until": now.isoformat(),
            "bucket": bucket,
            "timezone": timezone,
        },
        "records": count,
        "volume": [
            {
                "bucket": label,
                "total": sum(volume[label]["level"].values()),
                **{key: dict(counter) for key, counter in volume[label].items()},
            }
            for label in labels
        ],
        "totals": {key: dict(counter) for key, counter in totals.items()},
        "unresolved": {
            "total": sum(unresolved.values()),
            "by_level": {level: unresolved[level] for level in URGENCY_LEVELS},
        },
        "breached": {
            "total": sum(breached.values()),
            "by_level": {level: breached[level] for level in URGENCY_LEVELS},
        },
        "handling_secs": {
            "resolved": len(handling),
            "median": statistics.median(handling) if handling else None,
            "p90": handling[min(len(handling) - 1, int(0.9 * len(handling)))] if handling else None,
        },
        "timeout": {
            "due": due_count,
            "late": late,
            "rate": timeout_rate,
            "goal": TIMEOUT_GOAL,
            "within_goal": None if timeout_rate is None else timeout_rate < TIMEOUT_GOAL,
        },
        "csat": {
            "responses": answers,
            "satisfied": satisfied,
            "rate": _rate(satisfied, answers),
            "benchmark": CSAT_BENCHMARK,
        },
    }
