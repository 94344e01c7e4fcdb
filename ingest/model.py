"""The two records that travel through the pipeline (field names are a contract:
see shared/docs/architecture.md, "Data").

`FeedbackEvent` is what a connector emits: the customer's words, raw.
`FeedbackRecord` is what the processors emit and the sinks store: the event's
fields with `text`, `author` and turn texts already masked, plus the decisions.
Both are frozen so a processor step can only produce a new value, never edit one
another step is still reading.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

Kind = Literal["complaint", "consultation", "suggestion", "praise"]
Urgency = Literal["urgent", "important", "general"]
Status = Literal["open", "claimed", "resolved"]
Role = Literal["customer", "agent", "system"]

URGENCY_LEVELS: tuple[Urgency, ...] = ("urgent", "important", "general")
URGENCY_RANK: dict[str, int] = {"urgent": 0, "important": 1, "general": 2}
KINDS: tuple[Kind, ...] = ("complaint", "consultation", "suggestion", "praise")
STATUSES: tuple[Status, ...] = ("open", "claimed", "resolved")


def utc_now() -> datetime:
    return datetime.now(UTC)


def stable_id(channel: str, *parts: str) -> str:
    """Deterministic event id from a channel's native identity: a retry, a re-poll
    or a redelivery of the same input always lands on the same record."""
    digest = hashlib.sha256("\x1f".join((channel, *parts)).encode()).hexdigest()
    return f"{channel}-{digest[:24]}"


@dataclass(frozen=True, slots=True)
class Turn:
    """One utterance of a call or thread."""

    role: Role
    text: str
    start_ms: int | None = None
    end_ms: int | None = None
    energy: float | None = None
    sentiment: float | None = None


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a decision was taken, in words a desk agent and an auditor can check."""

    signal: str
    detail: str
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class Sentiment:
    snownlp: float
    """snownlp's own score, unchanged (0 = negative .. 1 = positive)."""
    score: float
    """after the financial-domain layer, 0..1"""
    label: Literal["negative", "neutral", "positive"]


@dataclass(frozen=True, slots=True)
class FeedbackEvent:
    id: str
    channel: str
    text: str
    source: str = ""
    native_id: str = ""
    received_at: datetime = field(default_factory=utc_now)
    ingested_at: datetime = field(default_factory=utc_now)
    author: str = ""
    turns: tuple[Turn, ...] = ()
    rating: int | None = None
    lang: str = "zh"
    meta: dict[str, Any] = field(default_factory=dict)
    raw_ref: str = ""


@dataclass(frozen=True, slots=True)
class FeedbackRecord:
    # --- the event's fields (text, author and turns masked) ---
    id: str
    channel: str
    text: str
    source: str = ""
    native_id: str = ""
    received_at: datetime = field(default_factory=utc_now)
    ingested_at: datetime = field(default_factory=utc_now)
    author: str = ""
    turns: tuple[Turn, ...] = ()
    rating: int | None = None
    lang: str = "zh"
    meta: dict[str, Any] = field(default_factory=dict)
    raw_ref: str = ""
    # --- decisions ---
    text_masked: str = ""
    customer_ref: str = ""
    kind: Kind = "complaint"
    sentiment: Sentiment | None = None
    urgency: Urgency = "general"
    category: str = ""
    business: str = ""
    reasons: tuple[Reason, ...] = ()
    due_at: datetime | None = None
    status: Status = "open"
    owner: str = ""
    repeat_count: int = 0
    pii_found: tuple[str, ...] = ()
    processed_at: datetime = field(default_factory=utc_now)

    @classmethod
    def from_event(cls, event: FeedbackEvent) -> FeedbackRecord:
        """The starting point of the classification chain: the event, undecided."""
        return cls(
            id=event.id,
            channel=event.channel,
            text=event.text,
            source=event.source,
            native_id=event.native_id,
            received_at=event.received_at,
            ingested_at=event.ingested_at,
            author=event.author,
            turns=event.turns,
            rating=event.rating,
            lang=event.lang,
            meta=dict(event.meta),
            raw_ref=event.raw_ref,
            text_masked=event.text,
        )
