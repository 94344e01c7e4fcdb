"""What the Redis and SQLite feeds share for the desk's operations, so both answer
the same way: the hot fields an item is read back with, how they turn into a
`DeskItem`, lease arithmetic and the outcome codes the atomic operations return."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from ingest.abc import DeskItem
from ingest.codec import decode_record
from ingest.errors import Conflict
from ingest.model import STATUSES, URGENCY_LEVELS, Status, Urgency
from sinks._shared import LEVEL_SPAN, utc_iso

ITEM_FIELDS = (
    "json",
    "status",
    "owner",
    "urgency",
    "lease_expires_at",
    "breached",
    "escalated",
    "repeat_count",
    "linked_to",
)
"""The hash fields (Redis) or columns (SQLite) an item is read back with, in order."""

REASSIGN_LEASE_SECS = 1800
"""A reassigned item's lease: the receiving agent may be busy, give them half an hour."""

_STATUS: dict[str, Status] = {status: status for status in STATUSES}
_URGENCY: dict[str, Urgency] = {level: level for level in URGENCY_LEVELS}


def lease_until(now: datetime, lease_secs: int) -> tuple[float, str]:
    """(epoch seconds, UTC ISO text) of a lease that starts now."""
    if lease_secs <= 0:
        raise ValueError("lease_secs must be positive")
    until = now + timedelta(seconds=lease_secs)
    return until.timestamp(), utc_iso(until)


def rank_zero_score(score: float) -> float:
    """The same deadline at level `urgent` (rank 0): what escalation re-scores to."""
    return score % LEVEL_SPAN


def _text(value: str | bytes | int | None) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


def desk_item(hot: Mapping[str, str | bytes | int | None]) -> DeskItem:
    """The record as the processors sent it (`json`), with the desk's live fields on
    top: status, owner, urgency (escalation) and repeat_count (repeat links) are the
    feed's once stored, so they override what the json says."""
    body = hot["json"]
    record = decode_record(body if isinstance(body, bytes) else _text(body).encode())
    urgency = _URGENCY.get(_text(hot.get("urgency")), record.urgency)
    repeats = _text(hot.get("repeat_count"))
    record = dataclasses.replace(
        record,
        status=_STATUS.get(_text(hot.get("status")), record.status),
        owner=_text(hot.get("owner")),
        urgency=urgency,
        repeat_count=int(repeats) if repeats.isdigit() else record.repeat_count,
    )
    lease = _text(hot.get("lease_expires_at"))
    return DeskItem(
        record=record,
        status=record.status,
        owner=record.owner,
        lease_expires_at=datetime.fromisoformat(lease).astimezone(UTC) if lease else None,
        breached=_text(hot.get("breached")) == "1",
        escalated=_text(hot.get("escalated")) == "1",
        linked_to=_text(hot.get("linked_to")),
    )


def refuse(code: str, record_id: str, detail: str) -> None:
    """Turn an operation's refusal into the interface's exceptions: `missing` → KeyError,
    `conflict` → Conflict (with the reason the agent is shown)."""
    if code == "missing":
        raise KeyError(record_id)
    if code == "conflict":
        raise Conflict(f"{record_id}: {detail}")
    raise RuntimeError(f"unexpected feed outcome {code!r} for {record_id}")


def conflict_reason(status: str, owner: str, agent: str) -> str:
    """Why `agent` may not act on an item held in `status` by `owner`."""
    if status == "resolved":
        return "already resolved"
    if status == "claimed" and owner and owner != agent:
        return f"held by {owner}"
    return "not claimed by you"
