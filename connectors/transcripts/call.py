"""The vendor-neutral call every format parser produces (channels.md §4.5: "normalise
all vendors to turns"), plus the small readers the parsers share.

Parsers never raise anything but `Refused`: a payload they cannot use becomes one
dead letter with a reason that names the field, never a crash.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ingest.model import Role

MAX_OFFSET_MS = 1 << 40
"""Offsets beyond ~35 years are not a call: refused rather than overflowing downstream."""
MAX_NUMBER = 1e15
MAX_COUNT = 1 << 31


class Refused(Exception):
    """This payload cannot become a call event; `kind` is a bounded metric label."""

    def __init__(self, reason: str, kind: str = "bad_shape") -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


@dataclass(frozen=True, slots=True)
class CallTurn:
    """One utterance with everything the signals need (richer than `ingest.model.Turn`)."""

    role: Role
    text: str
    start_ms: int
    end_ms: int
    energy: float | None = None
    """Vendor loudness/emotion energy (Alibaba EmotionValue 1-10, Contact Lens mean
    LoudnessScore, generic `energy`): comparable within a call, not across vendors."""
    sentiment: float | None = None
    """-1 negative .. +1 positive (vendor labels mapped, or the generic value)."""
    label: str = ""
    """The vendor's own per-turn sentiment label, e.g. NEGATIVE."""
    rate: float | None = None
    """Speech rate: characters (Chinese) or words per minute."""


@dataclass(frozen=True, slots=True)
class Silence:
    begin_ms: int
    end_ms: int


@dataclass(frozen=True, slots=True)
class Interruptions:
    total: int
    by_customer: int
    """Customer turns that start while an agent turn is still running."""
    by_agent: int


@dataclass(slots=True)
class Call:
    """A parsed call before it becomes a `FeedbackEvent`."""

    format: str
    turns: list[CallTurn]
    call_id: str = ""
    agent_id: str = ""
    queue: str = ""
    caller: str = ""
    started_at: Any = None
    """As found (ISO 8601 string or Unix seconds); validated when the event is built."""
    produced_at: Any = None
    """When the vendor produced the transcript (Unix ms or ISO 8601): the event's
    `received_at` when the call's start is unknown, so a re-delivery changes nothing."""
    duration_ms: int | None = None
    vendor_silences: list[Silence] | None = None
    """Silence the vendor measured (Contact Lens NonTalkTime); None: use gaps."""
    vendor_interruptions: Interruptions | None = None
    """Interruptions the vendor measured from the audio; None: count overlaps of turns."""
    vendor: dict[str, Any] = field(default_factory=dict)
    """Vendor extras kept in meta: ids, sentiment scores, categories, issues."""
    energy_scale: str = ""


# --- readers: each names the field it refuses ----------------------------------------


def obj(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise Refused(f"{where} must be an object, got {type(value).__name__}")
    return value


def items(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise Refused(f"{where} must be a list, got {type(value).__name__}")
    return value


def text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise Refused(f"{where} must be a string, got {type(value).__name__}")
    return value


def opt_text(value: Any, where: str) -> str:
    """Ids may arrive as numbers; kept as strings (a vendor id can exceed 2^53)."""
    if value is None:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return text(value, where).strip()


def number(value: Any, where: str) -> float:
    """A finite number of sane size (sums and means of them cannot overflow)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or abs(value) > MAX_NUMBER
    ):
        raise Refused(f"{where} must be a number, got {value!r:.40}")
    return float(value)


def count(value: Any, where: str) -> int:
    """A small non-negative integer: a track number, a count."""
    n = number(value, where)
    if not 0 <= n <= MAX_COUNT or n != int(n):
        raise Refused(f"{where} must be a whole number 0..{MAX_COUNT}, got {value!r:.40}")
    return int(n)


def opt_number(value: Any, where: str) -> float | None:
    return None if value is None else number(value, where)


def offset_ms(value: Any, where: str) -> int:
    ms = number(value, where)
    if not 0 <= ms <= MAX_OFFSET_MS:
        raise Refused(f"{where} must be an offset in ms (0..2^40), got {value!r:.40}")
    return round(ms)


def span(begin: Any, end: Any, where: str) -> tuple[int, int]:
    start_ms = offset_ms(begin, f"{where} begin")
    end_ms = offset_ms(end, f"{where} end")
    if end_ms < start_ms:
        raise Refused(f"{where} ends ({end_ms} ms) before it begins ({start_ms} ms)")
    return start_ms, end_ms
