"""The `deadline` step: `due_at` = `received_at` + the hours the level allows
(domain.md: urgent handled within 24 h, important answered within 48 h,
general handled within 72 h).

Counted from when the channel received the feedback, not when it was
processed, so a backlog never buys time. Calendar hours for now; working days
and the official holiday calendar (调休) come later as a change of this step.

Options (`[classify.options.deadline]`): `urgent_hours` (24), `important_hours`
(48), `general_hours` (72), `timezone` ("Asia/Shanghai", only for the local time
shown in the reason; `due_at` itself is an aware UTC datetime).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ingest.model import FeedbackRecord, Reason
from processors import step_options


@dataclass(frozen=True)
class DeadlineOptions:
    urgent_hours: float = 24.0
    important_hours: float = 48.0
    general_hours: float = 72.0
    timezone: str = "Asia/Shanghai"

    def __post_init__(self) -> None:
        for name in ("urgent_hours", "important_hours", "general_hours"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {self.timezone!r}") from None


class Deadline:
    """Sets `due_at` from `received_at` and the urgency level."""

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self.options = step_options(DeadlineOptions, options, "deadline")
        self._zone = ZoneInfo(self.options.timezone)
        self._hours = {
            "urgent": self.options.urgent_hours,
            "important": self.options.important_hours,
            "general": self.options.general_hours,
        }

    def __call__(self, record: FeedbackRecord) -> FeedbackRecord:
        hours = self._hours[record.urgency]
        due_at = record.received_at + timedelta(hours=hours)
        local = due_at.astimezone(self._zone).strftime("%Y-%m-%d %H:%M %Z")
        detail = f"{record.urgency}: {hours:g} h after it was received, due {local}"
        return replace(record, due_at=due_at, reasons=(*record.reasons, Reason("deadline", detail)))
