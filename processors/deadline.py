"""The `deadline` step: `due_at` from the urgency level, and the complaint-handling
deadlines of domain.md in `meta["deadlines"]`.

`due_at` = `received_at` + the hours the level allows (urgent handled within 24 h,
important answered within 48 h, general handled within 72 h): calendar hours, the
contract the feed orders by and the SLA sweeper checks.

For complaints (option `workday_kinds`) the complaint process's own deadlines are
added, as local ISO times in the institution's timezone:

    acknowledge_by        受理 / 首问负责制: received + 24 h
    first_handling_by     first handling: received + 72 h
    resolve_by            result to the customer: 7 working days
    resolve_complex_by    complex cases: 15 working days

Working days follow the official calendar with its make-up days (`processors.workdays`).
As the law counts periods in days (民法典 art. 201), the day of receipt is not
counted and a period ends at the end of its last day (23:59:59 local). The
follow-up visit (回访, 3 working days after handling) depends on when handling
ends, which the desk knows and this step does not.

Everything is counted from when the channel received the feedback, not when it
was processed, so a backlog never buys time.

Options (`[classify.options.deadline]`): `urgent_hours` (24), `important_hours`
(48), `general_hours` (72), `acknowledge_hours` (24), `first_handling_hours` (72),
`resolve_workdays` (7), `resolve_complex_workdays` (15), `workday_kinds`
(["complaint"]); from `[classify]`: `timezone` ("Asia/Shanghai") and
`holidays_file` (extra holidays and make-up workdays, see `processors.workdays`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ingest.model import FeedbackRecord, Reason
from processors import step_options
from processors.workdays import WorkCalendar, load_calendar


@dataclass(frozen=True)
class DeadlineOptions:
    urgent_hours: float = 24.0
    important_hours: float = 48.0
    general_hours: float = 72.0
    acknowledge_hours: float = 24.0
    first_handling_hours: float = 72.0
    resolve_workdays: int = 7
    resolve_complex_workdays: int = 15
    workday_kinds: tuple[str, ...] = ("complaint",)
    timezone: str = "Asia/Shanghai"
    holidays_file: str = ""

    def __post_init__(self) -> None:
        for name in (
            "urgent_hours",
            "important_hours",
            "general_hours",
            "acknowledge_hours",
            "first_handling_hours",
            "resolve_workdays",
            "resolve_complex_workdays",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {self.timezone!r}") from None


class Deadline:
    """Sets `due_at` from the level, and `meta["deadlines"]` for complaints."""

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self.options = step_options(DeadlineOptions, options, "deadline")
        self._zone = ZoneInfo(self.options.timezone)
        self._hours = {
            "urgent": self.options.urgent_hours,
            "important": self.options.important_hours,
            "general": self.options.general_hours,
        }
        self.calendar: WorkCalendar = load_calendar(self.options.holidays_file)
        self._acknowledge = timedelta(hours=self.options.acknowledge_hours)
        self._first_handling = timedelta(hours=self.options.first_handling_hours)
        self._days: dict[date, tuple[str, str, str, tuple[Reason, ...]]] = {}

    def __call__(self, record: FeedbackRecord) -> FeedbackRecord:
        hours = self._hours[record.urgency]
        due_at = record.received_at + timedelta(hours=hours)
        local = due_at.astimezone(self._zone).strftime("%Y-%m-%d %H:%M %Z")
        detail = f"{record.urgency}: {hours:g} h after it was received, due {local}"
        reasons = (*record.reasons, Reason("deadline", detail))
        meta = record.meta
        if record.kind in self.options.workday_kinds:
            deadlines, more = self._process_deadlines(record)
            meta = {**meta, "deadlines": deadlines}
            reasons += more
        return replace(record, due_at=due_at, meta=meta, reasons=reasons)

    def _for_day(self, day: date) -> tuple[str, str, str, tuple[Reason, ...]]:
        """resolve_by, resolve_complex_by, the reason's working-day part and a fallback
        reason, for complaints received on local `day`: the same for every record of
        the day, so computed once (the cache is cleared now and then: a worker runs
        for months)."""
        found = self._days.get(day)
        if found is not None:
            return found
        opts = self.options
        resolve, unknown = self.calendar.add_workdays(day, opts.resolve_workdays)
        complex_, unknown_complex = self.calendar.add_workdays(day, opts.resolve_complex_workdays)
        detail = (
            f"result within {opts.resolve_workdays} working days by {resolve} "
            f"({opts.resolve_complex_workdays} if complex: {complex_}); "
            f"calendar {self.calendar.describe()}"
        )
        fallback: tuple[Reason, ...] = ()
        years = sorted(set(unknown) | set(unknown_complex))
        if years:
            listed = ", ".join(str(year) for year in years)
            why = (
                f"no official holiday data for {listed}: Monday–Friday assumed "
                "(add the year to classify.holidays_file)"
            )
            fallback = (Reason("calendar_fallback", why, 0.0),)
        if len(self._days) > 1024:
            self._days.clear()
        found = self._days[day] = (self._end_of(resolve), self._end_of(complex_), detail, fallback)
        return found

    def _end_of(self, day: date) -> str:
        return datetime.combine(day, time(23, 59, 59), tzinfo=self._zone).isoformat()

    def _process_deadlines(
        self, record: FeedbackRecord
    ) -> tuple[dict[str, str], tuple[Reason, ...]]:
        opts = self.options
        received = record.received_at.astimezone(self._zone)
        resolve_by, complex_by, detail, fallback = self._for_day(received.date())
        deadlines = {
            "acknowledge_by": (received + self._acknowledge).isoformat(),
            "first_handling_by": (received + self._first_handling).isoformat(),
            "resolve_by": resolve_by,
            "resolve_complex_by": complex_by,
        }
        detail = (
            f"{record.kind} received {received:%Y-%m-%d %H:%M} local: acknowledge within "
            f"{opts.acknowledge_hours:g} h, first handling within {opts.first_handling_hours:g} h, "
            + detail
        )
        return deadlines, (Reason("working_days", detail), *fallback)
