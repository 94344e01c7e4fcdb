"""Working-day deadlines on the official Chinese calendar: real holiday weeks with their
make-up working days (调休), the institution's timezone, and the Monday–Friday
fallback (plus the operator's holidays file) for years chinese-calendar lacks."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from ingest.errors import ConfigError
from ingest.model import FeedbackEvent, FeedbackRecord
from processors import workdays
from processors.deadline import Deadline
from processors.workdays import WorkCalendar, load_calendar

CST = timezone(timedelta(hours=8))


def record(received: datetime, **fields: Any) -> FeedbackRecord:
    event = FeedbackEvent(id="d-1", channel="wechat", text="x", received_at=received)
    return replace(FeedbackRecord.from_event(event), **fields)


def deadlines(received: datetime, options: dict[str, Any] | None = None, **fields: Any) -> Any:
    return Deadline(options)(record(received, **fields))


def signals(rec: FeedbackRecord, signal: str) -> list[str]:
    return [r.detail for r in rec.reasons if r.signal == signal]


@pytest.mark.parametrize(
    ("received", "resolve_by", "resolve_complex_by"),
    [
        # National Day + Mid-Autumn 2025: Oct 1–8 off, Sunday Sep 28 and Saturday Oct 11 worked
        (datetime(2025, 9, 26, 10, 0, tzinfo=CST), "2025-10-13", "2025-10-23"),
        # Spring Festival 2026: Feb 15–23 off, Saturdays Feb 14 and Feb 28 worked
        (datetime(2026, 2, 13, 16, 0, tzinfo=CST), "2026-03-02", "2026-03-12"),
        # received on a holiday: counting starts with the next working day
        (datetime(2025, 10, 3, 9, 0, tzinfo=CST), "2025-10-16", "2025-10-28"),
        # an ordinary week: Monday + 7 working days = next Wednesday
        (datetime(2026, 11, 23, 9, 0, tzinfo=CST), "2026-12-02", "2026-12-14"),
    ],
)
def test_resolve_deadlines_skip_holidays_and_count_make_up_days(
    received: datetime, resolve_by: str, resolve_complex_by: str
) -> None:
    out = deadlines(received)
    due = out.meta["deadlines"]
    assert due["resolve_by"] == f"{resolve_by}T23:59:59+08:00"
    assert due["resolve_complex_by"] == f"{resolve_complex_by}T23:59:59+08:00"
    assert not signals(out, "calendar_fallback")


def test_process_deadlines_in_hours_and_the_level_due_at_is_unchanged() -> None:
    received = datetime(2025, 9, 26, 10, 0, tzinfo=CST)
    out = deadlines(received, urgency="important")
    assert out.due_at == received + timedelta(hours=48)  # the contract: calendar hours
    assert out.meta["deadlines"]["acknowledge_by"] == "2025-09-27T10:00:00+08:00"
    assert out.meta["deadlines"]["first_handling_by"] == "2025-09-29T10:00:00+08:00"
    reason = signals(out, "working_days")[0]
    assert "result within 7 working days by 2025-10-13" in reason
    assert "(15 if complex: 2025-10-23)" in reason
    assert "chinese-calendar" in reason


def test_weekends_only_would_be_wrong_around_national_day() -> None:
    """The package's make-up days matter: Monday–Friday alone gives Oct 7, inside the
    holiday, for the same complaint."""
    plain = WorkCalendar()
    official = load_calendar()
    start = date(2025, 9, 26)
    assert plain.add_workdays(start, 7)[0] == date(2025, 10, 7)
    assert official.add_workdays(start, 7) == (date(2025, 10, 13), ())
    assert official.is_workday(date(2025, 9, 28)) and official.is_workday(date(2025, 10, 11))
    assert not official.is_workday(date(2025, 10, 6))


def test_days_are_counted_in_the_institutions_timezone() -> None:
    """00:30 on Sunday Sep 28 in Shanghai is still Saturday in UTC: the local day counts."""
    received = datetime(2025, 9, 27, 16, 30, tzinfo=UTC)
    assert deadlines(received).meta["deadlines"]["resolve_by"] == "2025-10-14T23:59:59+08:00"
    utc = deadlines(received, {"timezone": "UTC"}).meta["deadlines"]["resolve_by"]
    assert utc == "2025-10-13T23:59:59+00:00"


def test_only_complaints_get_process_deadlines_and_meta_is_kept() -> None:
    received = datetime(2026, 3, 2, 9, 0, tzinfo=CST)
    question = deadlines(received, kind="consultation", meta={"openid": "o-1"})
    assert question.meta == {"openid": "o-1"} and not signals(question, "working_days")
    assert question.due_at is not None
    complaint = deadlines(received, meta={"openid": "o-1"})
    assert complaint.meta["openid"] == "o-1" and "resolve_by" in complaint.meta["deadlines"]
    both = deadlines(
        received, {"workday_kinds": ["complaint", "consultation"]}, kind="consultation"
    )
    assert "deadlines" in both.meta


def test_workday_counts_are_options() -> None:
    out = deadlines(datetime(2026, 2, 13, 16, 0, tzinfo=CST), {"resolve_workdays": 1})
    assert out.meta["deadlines"]["resolve_by"] == "2026-02-14T23:59:59+08:00"  # a Saturday, worked
    with pytest.raises(ConfigError, match="resolve_workdays must be positive"):
        Deadline({"resolve_workdays": 0})


# --- years the package does not know -------------------------------------------------


@pytest.fixture
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workdays, "_warned_years", set())
    monkeypatch.setattr(workdays.structlog, "is_configured", lambda: False)


def test_unknown_year_falls_back_to_weekdays_with_one_warning(
    fresh_warnings: None, caplog: pytest.LogCaptureFixture
) -> None:
    calendar = load_calendar()
    assert calendar.last_year >= 2026 and not calendar.knows(2999)
    received = datetime(2026, 12, 28, 9, 0, tzinfo=CST)
    with caplog.at_level(logging.WARNING, logger="processors.workdays"):
        first = deadlines(received)
        deadlines(received + timedelta(hours=1))
        Deadline()(record(received))  # a new step instance in the same process
    # Friday 2027-01-01 counts as a working day: nobody has told us otherwise
    assert first.meta["deadlines"]["resolve_by"] == "2027-01-06T23:59:59+08:00"
    assert (
        "no official holiday data for 2027: Monday–Friday assumed"
        in signals(first, "calendar_fallback")[0]
    )
    warnings = [r for r in caplog.records if "holiday_calendar_unknown_year" in r.getMessage()]
    assert len(warnings) == 1 and "2027" in warnings[0].getMessage()


def test_operator_holidays_file_adds_a_year(tmp_path: Path, fresh_warnings: None) -> None:
    path = tmp_path / "holidays.toml"
    path.write_text(
        "holidays = [2027-01-01, ['2027-02-06', '2027-02-12']]\nworkdays = [2027-02-13]\n",
        "utf-8",
    )
    out = deadlines(datetime(2026, 12, 28, 9, 0, tzinfo=CST), {"holidays_file": str(path)})
    assert out.meta["deadlines"]["resolve_by"] == "2027-01-07T23:59:59+08:00"
    assert not signals(out, "calendar_fallback")
    assert "holidays file" in signals(out, "working_days")[0]
    calendar = load_calendar(str(path))
    assert not calendar.is_workday(date(2027, 2, 8)) and calendar.is_workday(date(2027, 2, 13))
    assert workdays._warned_years == set()


def test_holidays_file_comes_from_the_classify_section(tmp_path: Path) -> None:
    from ingest.classify import Chain, ChainSpec
    from ingest.settings import ClassifySettings

    path = tmp_path / "holidays.toml"
    path.write_text("holidays = [2027-01-01]\n", "utf-8")
    chain = Chain(ChainSpec.from_settings(ClassifySettings(holidays_file=str(path))))
    event = FeedbackEvent(
        id="t", channel="wechat", text="卡被盗刷了", received_at=datetime(2026, 12, 28, tzinfo=CST)
    )
    assert chain(event).meta["deadlines"]["resolve_by"].startswith("2027-01-07")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("holidays = [2027-13-01]", "not valid TOML"),
        ("holidays = ['tomorrow']", r"holidays\[0\]: 'tomorrow' is not a date"),
        ("holidays = [[2027-02-12, 2027-02-06]]", "range ends before it starts"),
        ("holidays = [2027-01-01]\nworkdays = [2027-01-01]", "listed as holiday and as workday"),
        ("holiday = [2027-01-01]", r"unknown key\(s\) \['holiday'\]"),
        ("holidays = 2027-01-01", "holidays must be a list of dates"),
    ],
)
def test_bad_holidays_file_is_a_config_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "holidays.toml"
    path.write_text(content, "utf-8")
    with pytest.raises(ConfigError, match=message) as error:
        Deadline({"holidays_file": str(path)})
    assert error.value.key == "classify.holidays_file"


def test_missing_holidays_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read holidays file"):
        load_calendar(str(tmp_path / "nope.toml"))
