"""What the complaint desk and the operators read and write in the SQL store beside
the pipeline's records: the outcome of a complaint (resolution, satisfaction,
follow-up date), a customer's history across channels, and the streaming export.

Every change here writes its audit row in the same transaction, so the trail is
complete: who resolved, who recorded a survey answer, who exported what.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime
from typing import Any

import orjson

from ingest.codec import parse_time
from sinks.sql_backends import Backend, Tx

OUTCOME_COLUMNS = (
    "resolution_code",
    "resolution_note",
    "resolved_by",
    "resolved_at",
    "satisfaction",
    "follow_up_on",
)
MASKED_EXPORT_OMITS = frozenset({"meta", "raw_ref"})
"""Records hold masked text only; these two are what may still lead to a person:
channel extras (a form's own columns, an e-mail header) and where the raw payload,
with the customer's unmasked words, is kept. They leave only in an unmasked export."""
EXPORT_PAGE = 1000


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    resolution_code: str = ""
    resolution_note: str = ""
    resolved_by: str = ""
    resolved_at: datetime | None = None
    satisfaction: int | None = None
    """The customer's answer on the five-point scale (4-5 count as satisfied for CSAT)."""
    follow_up_on: date | None = None


Append = Callable[[Tx, str, str, str | None, dict[str, Any]], Any]
"""SqlStore._append: (tx, actor, action, record_id, detail)."""


async def update_audited(
    backend: Backend,
    append: Append,
    record_id: str,
    sets: dict[str, Any],
    actor: str,
    action: str,
    detail: dict[str, Any],
) -> None:
    """UPDATE one record and append its audit row, or KeyError if there is no such record."""
    assignments = ", ".join(f"{column} = ?" for column in sets)
    async with backend.transaction() as tx:
        changed = await tx.execute(
            f"UPDATE feedback_records SET {assignments} WHERE id = ?", *sets.values(), record_id
        )
        if changed == 0:
            raise KeyError(record_id)
        await append(tx, actor, action, record_id, detail)


def date_param(backend: Backend, day: date) -> Any:
    return day if backend.dialect == "postgresql" else day.isoformat()


def outcome_from_row(row: dict[str, Any]) -> Outcome:
    resolved_at = row["resolved_at"]
    follow_up = row["follow_up_on"]
    return Outcome(
        resolution_code=row["resolution_code"],
        resolution_note=row["resolution_note"],
        resolved_by=row["resolved_by"],
        resolved_at=None if resolved_at is None else parse_time(resolved_at, "resolved_at"),
        satisfaction=None if row["satisfaction"] is None else int(row["satisfaction"]),
        follow_up_on=(
            None
            if follow_up is None
            else follow_up
            if isinstance(follow_up, date)
            else date.fromisoformat(follow_up)
        ),
    )


def check_satisfaction(score: int) -> None:
    if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 5:
        raise ValueError(f"satisfaction is 1 to 5 (five-point scale), got {score!r}")


async def export_rows(
    backend: Backend,
    columns: tuple[str, ...],
    json_columns: frozenset[str],
    time_columns: frozenset[str],
    since: datetime | None,
    unmasked: bool,
) -> AsyncIterator[dict[str, Any]]:
    """Every record received at or after `since`, oldest first, a page at a time (keyset
    on received_at, id), so an export of years of records runs in constant memory."""
    chosen = [c for c in columns if unmasked or c not in MASKED_EXPORT_OMITS]
    select = ", ".join(chosen)
    floor = backend.time_param(since or datetime(1970, 1, 1, tzinfo=UTC))
    last: tuple[Any, str] | None = None
    while True:
        if last is None:
            where, args = "received_at >= ?", [floor]
        else:
            where = "(received_at > ? OR (received_at = ? AND id > ?))"
            args = [last[0], last[0], last[1]]
        async with backend.reading() as tx:
            rows = await tx.fetch(
                f"SELECT {select} FROM feedback_records WHERE {where} "
                f"ORDER BY received_at, id LIMIT {EXPORT_PAGE}",
                *args,
            )
        for row in rows:
            yield _plain(row, json_columns, time_columns)
        if len(rows) < EXPORT_PAGE:
            return
        last = (rows[-1]["received_at"], rows[-1]["id"])


def _plain(
    row: dict[str, Any], json_columns: frozenset[str], time_columns: frozenset[str]
) -> dict[str, Any]:
    """JSON-ready values whatever the dialect: parsed JSON, ISO times and dates."""
    out: dict[str, Any] = {}
    for column, value in row.items():
        if value is None:
            out[column] = None
        elif column in json_columns and isinstance(value, str):
            out[column] = orjson.loads(value)
        elif column in time_columns:
            out[column] = parse_time(value, column).isoformat()
        elif isinstance(value, date):
            out[column] = value.isoformat()
        else:
            out[column] = value
    return out
