"""Plain-text tables for the terminal (demo, `feed`): pure, width-aware for CJK."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from ingest.model import FeedbackRecord

LEVEL_LABEL = {"urgent": "紧急 urgent", "important": "重要 important", "general": "一般 general"}


def display_width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def fit(text: str, width: int) -> str:
    """Cut `text` to `width` terminal columns (CJK counts 2), marking a cut with …, and pad."""
    text = text.replace("\n", " ")
    if display_width(text) > width:
        out, used = [], 0
        for ch in text:
            w = display_width(ch)
            if used + w > width - 1:
                break
            out.append(ch)
            used += w
        text = "".join(out) + "…"
    return text + " " * max(0, width - display_width(text))


def _due(due: datetime | None, tz: ZoneInfo) -> str:
    return due.astimezone(tz).strftime("%m-%d %H:%M") if due else "-"


WHY_SIGNALS = ("trigger", "escalator", "rating", "repeat", "tier")
"""Reasons that explain the level (the others explain masking, kind, deadline…)."""


def why_level(record: FeedbackRecord) -> str:
    """What a desk agent reads first: the words and signals behind the level."""
    parts = [
        r.detail.split(" · ", 1)[-1]
        for r in record.reasons
        if r.signal in WHY_SIGNALS and r.weight >= 1.0
    ]
    return "; ".join(parts) or "no trigger word"


def feed_table(
    records: Sequence[FeedbackRecord], timezone: str = "Asia/Shanghai", text_width: int = 40
) -> str:
    tz = ZoneInfo(timezone)
    columns = [
        ("#", 3),
        ("level", 14),
        ("due", 11),
        ("channel", 10),
        ("senti", 5),
        ("why", 44),
        ("text (masked)", text_width),
    ]
    lines = ["  ".join(fit(name, w) for name, w in columns).rstrip()]
    lines.append("  ".join("-" * w for _, w in columns))
    for i, r in enumerate(records, 1):
        reasons = why_level(r)
        senti = f"{r.sentiment.score:.2f}" if r.sentiment else "-"
        cells = [
            str(i),
            LEVEL_LABEL.get(r.urgency, r.urgency),
            _due(r.due_at, tz),
            r.channel,
            senti,
            reasons or "-",
            r.text_masked or r.text,
        ]
        lines.append(
            "  ".join(fit(c, w) for c, (_, w) in zip(cells, columns, strict=True)).rstrip()
        )
    return "\n".join(lines)
