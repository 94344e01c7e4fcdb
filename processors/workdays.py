"""Working days of the official Chinese calendar, for the complaint-handling deadlines
counted in working days (domain.md: result within 7 working days, 15 for complex
cases).

A day is a working day when, in this order of precedence:
1. the operator's holidays file lists it (`workdays` → working, `holidays` → not);
2. `chinese-calendar` knows its year: its public holidays and make-up working days
   (调休, e.g. Sunday 2025-09-28 and Saturday 2025-10-11 around National Day);
3. otherwise Monday to Friday. The State Council publishes a year's schedule only
   around November of the year before, so the package lags: a deadline in a year
   it does not know must never fail. The first such year logs a warning (once per
   process and year) and every deadline computed that way says so in its reason.

The operator's file (TOML, `[classify] holidays_file`) adds a year without a new
release, or corrects a known one:

    # 2027, from the State Council notice of November 2026
    holidays = [2027-01-01, [2027-02-06, 2027-02-13]]   # a date, or [first, last]
    workdays = [2027-02-14, 2027-02-20]                  # make-up working days (调休)

Dates may also be written as "YYYY-MM-DD" strings.
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import structlog

from ingest.errors import ConfigError

_warned_years: set[int] = set()


def _package_calendar() -> tuple[str, frozenset[date], frozenset[date], int, int]:
    """(name and version, holidays, make-up workdays, first year, last year) of the
    installed `chinese-calendar`; empty when it is not installed."""
    try:
        import chinese_calendar
    except ImportError:  # pragma: no cover - a declared dependency
        return ("", frozenset(), frozenset(), 0, -1)
    holidays = frozenset(chinese_calendar.holidays)
    workdays = frozenset(chinese_calendar.workdays)
    years = [day.year for day in holidays | workdays]
    version = getattr(chinese_calendar, "__version__", "?")
    return (f"chinese-calendar {version}", holidays, workdays, min(years), max(years))


def _warn_unknown_year(year: int, source: str) -> None:
    """Once per process and year; stderr (stdlib logging) when structlog is not
    configured, because stdout carries records in `feedback-ingest classify`."""
    if year in _warned_years:
        return
    _warned_years.add(year)
    fix = "add the year's holidays and make-up workdays to [classify] holidays_file"
    if structlog.is_configured():
        structlog.get_logger("processors.workdays").warning(
            "holiday_calendar_unknown_year", year=year, calendar=source, fallback="mon-fri", fix=fix
        )
    else:
        logging.getLogger("processors.workdays").warning(
            "holiday_calendar_unknown_year: %s not in %s; Monday-Friday used; %s", year, source, fix
        )


@dataclass(frozen=True)
class WorkCalendar:
    """Which days are working days; see the module docstring for the precedence."""

    extra_holidays: frozenset[date] = frozenset()
    extra_workdays: frozenset[date] = frozenset()
    operator_years: frozenset[int] = frozenset()
    """Years the operator's file covers: their days count as known, not as fallback."""
    source: str = ""
    holidays: frozenset[date] = field(default_factory=frozenset)
    workdays: frozenset[date] = field(default_factory=frozenset)
    first_year: int = 0
    last_year: int = -1

    def knows(self, year: int) -> bool:
        """Whether `year` has official data (package or operator file)."""
        return self.first_year <= year <= self.last_year or year in self.operator_years

    def is_workday(self, day: date) -> bool:
        if day in self.extra_workdays:
            return True
        if day in self.extra_holidays:
            return False
        if self.first_year <= day.year <= self.last_year:
            if day in self.workdays:
                return True
            if day in self.holidays:
                return False
        return day.weekday() < 5

    def add_workdays(self, start: date, count: int) -> tuple[date, tuple[int, ...]]:
        """The `count`-th working day after `start` (`start` itself is not counted:
        民法典 art. 201, a period counted in days starts the next day), and the
        years on the way that had no official data (Monday–Friday assumed)."""
        day, left, unknown = start, count, set()
        while left > 0:
            day += timedelta(days=1)
            if not self.knows(day.year):
                unknown.add(day.year)
            if self.is_workday(day):
                left -= 1
        for year in sorted(unknown):
            _warn_unknown_year(year, self.describe())
        return day, tuple(sorted(unknown))

    def describe(self) -> str:
        span = f" ({self.first_year}–{self.last_year})" if self.last_year >= self.first_year else ""
        extra = " + holidays file" if self.operator_years else ""
        return (self.source or "no holiday calendar") + span + extra


def _dates(value: Any, where: str, key: str) -> Iterable[date]:
    """A TOML date, a "YYYY-MM-DD" string, or a [first, last] pair (inclusive)."""
    if isinstance(value, list):
        if len(value) != 2:
            raise ConfigError(key, f"{where}: a range is [first, last], got {value!r}")
        first, last = (_one_date(v, where, key) for v in value)
        if last < first:
            raise ConfigError(key, f"{where}: range ends before it starts")
        return (first + timedelta(days=i) for i in range((last - first).days + 1))
    return (_one_date(value, where, key),)


def _one_date(value: Any, where: str, key: str) -> date:
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ConfigError(key, f"{where}: {value!r} is not a date (2027-01-01)")


def read_holidays_file(path: str, key: str = "classify.holidays_file") -> dict[str, set[date]]:
    """The operator's `holidays` and `workdays`, every error naming the file and entry."""
    try:
        doc = tomllib.loads(Path(path).read_text("utf-8"))
    except OSError as exc:
        raise ConfigError(key, f"cannot read holidays file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(key, f"holidays file {path} is not valid TOML: {exc}") from None
    unknown = set(doc) - {"holidays", "workdays"}
    if unknown:
        raise ConfigError(key, f"{path}: unknown key(s) {sorted(unknown)}: holidays, workdays")
    out: dict[str, set[date]] = {"holidays": set(), "workdays": set()}
    for name in out:
        entries = doc.get(name, [])
        if not isinstance(entries, list):
            raise ConfigError(key, f"{path}: {name} must be a list of dates")
        for i, entry in enumerate(entries):
            out[name].update(_dates(entry, f"{path}: {name}[{i}]", key))
    both = out["holidays"] & out["workdays"]
    if both:
        raise ConfigError(key, f"{path}: {min(both)} is listed as holiday and as workday")
    return out


@lru_cache(maxsize=4)
def load_calendar(holidays_file: str = "", use_package: bool = True) -> WorkCalendar:
    """The calendar for an operator file (cached: built once per process)."""
    source, holidays, workdays, first, last = (
        _package_calendar() if use_package else ("", frozenset(), frozenset(), 0, -1)
    )
    extra = (
        read_holidays_file(holidays_file)
        if holidays_file
        else {"holidays": set(), "workdays": set()}
    )
    days = extra["holidays"] | extra["workdays"]
    return WorkCalendar(
        extra_holidays=frozenset(extra["holidays"]),
        extra_workdays=frozenset(extra["workdays"]),
        operator_years=frozenset(day.year for day in days),
        source=source,
        holidays=holidays,
        workdays=workdays,
        first_year=first,
        last_year=last,
    )
