"""How records and feed items look in the desk's JSON: an allow-list of masked fields.

`meta` (channel extras such as a form's own columns) and `raw_ref` (where the raw,
unmasked payload is kept) may still lead to a person, so they are never part of
these views; they leave only through the audited contact endpoint.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from ingest.abc import DeskItem, FeedEvent
from ingest.model import FeedbackRecord


def iso(moment: datetime | date | None) -> str | None:
    if moment is None:
        return None
    if isinstance(moment, datetime):
        return moment.astimezone(UTC).isoformat()
    return moment.isoformat()


def record_view(record: FeedbackRecord) -> dict[str, Any]:
    """The masked record: what any token may see."""
    sentiment = record.sentiment
    return {
        "id": record.id,
        "channel": record.channel,
        "source": record.source,
        "received_at": iso(record.received_at),
        "author": record.author,
        "text": record.text_masked or record.text,
        "rating": record.rating,
        "lang": record.lang,
        "customer_ref": record.customer_ref,
        "kind": record.kind,
        "sentiment": None
        if sentiment is None
        else {"label": sentiment.label, "score": round(sentiment.score, 4)},
        "urgency": record.urgency,
        "category": record.category,
        "business": record.business,
        "reasons": [
            {"signal": r.signal, "detail": r.detail, "weight": r.weight} for r in record.reasons
        ],
        "due_at": iso(record.due_at),
        "status": record.status,
        "owner": record.owner,
        "repeat_count": record.repeat_count,
        "pii_found": list(record.pii_found),
    }


def item_view(item: DeskItem) -> dict[str, Any]:
    """A feed item: the masked record with the feed's live fields."""
    return {
        **record_view(item.record),
        "status": item.status,
        "owner": item.owner,
        "lease_expires_at": iso(item.lease_expires_at),
        "breached": item.breached,
        "escalated": item.escalated,
        "linked_to": item.linked_to,
    }


def turns_view(record: FeedbackRecord) -> list[dict[str, Any]]:
    return [
        {"role": t.role, "text": t.text, "start_ms": t.start_ms, "end_ms": t.end_ms}
        for t in record.turns
    ]


def outcome_view(outcome: Any) -> dict[str, Any] | None:
    if outcome is None or not (outcome.resolution_code or outcome.satisfaction):
        return None
    return {
        "code": outcome.resolution_code,
        "note": outcome.resolution_note,
        "resolved_by": outcome.resolved_by,
        "resolved_at": iso(outcome.resolved_at),
        "satisfaction": outcome.satisfaction,
        "follow_up_on": iso(outcome.follow_up_on),
    }


def audit_view(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "at": iso(entry["at"]),
        "actor": entry["actor"],
        "action": entry["action"],
        "detail": entry["detail"],
    }


def event_view(event: FeedEvent) -> dict[str, Any]:
    return {
        "id": event.event_id,
        "type": event.type,
        "record_id": event.record_id,
        "fields": dict(event.fields),
    }
