"""The supervisor's figures, each definition on a small table (ingest.desk.stats)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ingest.desk.stats import StatRow, compute

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
SINCE = NOW - timedelta(days=2)


def row(age_hours: float, **kw: object) -> StatRow:
    fields: dict[str, object] = {
        "received_at": NOW - timedelta(hours=age_hours),
        "channel": "phone",
        "urgency": "general",
        "category": "service",
        **kw,
    }
    return StatRow(**fields)  # type: ignore[arg-type]


def test_no_rows_gives_no_rates_rather_than_zero() -> None:
    figures = compute([], now=NOW, since=SINCE)
    assert figures["timeout"]["rate"] is None and figures["timeout"]["within_goal"] is None
    assert figures["csat"]["rate"] is None
    assert figures["handling_secs"]["median"] is None
    assert all(bucket["total"] == 0 for bucket in figures["volume"])


def test_buckets_are_local_days_of_the_configured_timezone() -> None:
    # 16:30 UTC on the 23rd is 00:30 on the 24th in Shanghai
    late_evening_utc = row(
        (NOW - datetime(2026, 11, 23, 16, 30, tzinfo=UTC)).total_seconds() / 3600
    )
    figures = compute([late_evening_utc], now=NOW, since=SINCE, timezone="Asia/Shanghai")
    counts = {b["bucket"]: b["total"] for b in figures["volume"]}
    assert counts["2026-11-24"] == 1 and counts["2026-11-23"] == 0
    hourly = compute([late_evening_utc], now=NOW, since=SINCE, bucket="hour")
    assert {b["bucket"]: b["total"] for b in hourly["volume"]}["2026-11-24T00:00"] == 1


@pytest.mark.parametrize(
    ("rows", "due", "late", "rate"),
    [
        ([row(5, due_at=NOW + timedelta(hours=1))], 0, 0, None),  # not due yet: not counted
        ([row(5, due_at=NOW - timedelta(hours=1))], 1, 1, 1.0),  # open past due: late
        (
            [
                row(
                    5,
                    due_at=NOW - timedelta(hours=1),
                    status="resolved",
                    resolved_at=NOW - timedelta(hours=2),
                )
            ],
            1,
            0,
            0.0,
        ),
        (
            [
                row(
                    5,
                    due_at=NOW - timedelta(hours=3),
                    status="resolved",
                    resolved_at=NOW - timedelta(hours=2),
                )
            ],
            1,
            1,
            1.0,
        ),
    ],
    ids=["open-not-due", "open-past-due", "resolved-on-time", "resolved-late"],
)
def test_timeout_rate_counts_what_has_come_due(
    rows: list[StatRow], due: int, late: int, rate: float | None
) -> None:
    timeout = compute(rows, now=NOW, since=SINCE)["timeout"]
    assert (timeout["due"], timeout["late"], timeout["rate"]) == (due, late, rate)


def test_csat_is_answers_of_four_or_five_over_all_answers() -> None:
    rows = [row(1, satisfaction=s) for s in (5, 4, 3, 1)] + [row(1)]
    csat = compute(rows, now=NOW, since=SINCE)["csat"]
    assert (csat["responses"], csat["satisfied"], csat["rate"]) == (4, 2, 0.5)


def test_rows_outside_the_window_are_left_out() -> None:
    figures = compute([row(49), row(1)], now=NOW, since=SINCE)
    assert figures["records"] == 1
