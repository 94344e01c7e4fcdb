"""`feedback-ingest store purge|export`: retention and export of the SQL store.

Records are kept at least 3 years (domain.md): the store itself refuses a purge
cutoff inside that period, and there is deliberately no flag to override it.
Exports stream (constant memory), are masked by default, and every export is
audited before the first row leaves: an unmasked one needs `--unmasked --i-know`.
"""

from __future__ import annotations

import csv
import getpass
import re
import sys
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import IO, Any, Protocol, runtime_checkable

import orjson

from ingest.errors import ConfigError
from ingest.runtime.components import make_store
from ingest.settings import Settings

_AGE = re.compile(r"(\d+)([yd])\Z")


@runtime_checkable
class Archive(Protocol):
    """What these commands need of the store (SqlStore has it)."""

    async def purge_older_than(self, cutoff: datetime) -> int: ...

    async def count_older_than(self, cutoff: datetime) -> int: ...

    def export_rows(
        self, since: datetime | None = None, *, unmasked: bool = False
    ) -> AsyncIterator[dict[str, Any]]: ...

    async def add_audit(
        self, actor: str, action: str, record_id: str | None, detail: dict[str, Any]
    ) -> None: ...

    async def close(self) -> None: ...


def cutoff_for(age: str, now: datetime) -> datetime:
    """`3y` → the same day 3 years ago; `1200d` → 1200 days ago."""
    match = _AGE.fullmatch(age.strip())
    if match is None:
        raise ConfigError("--older-than", f"{age!r}: use years or days, e.g. 3y or 1200d")
    amount, unit = int(match.group(1)), match.group(2)
    if unit == "d":
        return now - timedelta(days=amount)
    try:
        return now.replace(year=now.year - amount)
    except ValueError:  # 29 February
        return now.replace(year=now.year - amount, day=28)


def since_for(text: str | None) -> datetime | None:
    """A date (UTC midnight) or an ISO 8601 time with offset."""
    if text is None:
        return None
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError("--since", f"{text!r} is not a date or an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise ConfigError("--since", "give the time with its offset, e.g. +08:00")
    return moment


def _archive(settings: Settings) -> Archive:
    store = make_store(settings)
    if not isinstance(store, Archive):
        raise ConfigError("store.url", f"{store.name} cannot purge or export")
    return store


def actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user name in a bare container
        return "cli"


async def purge(settings: Settings, older_than: str, dry_run: bool, out: IO[str]) -> int:
    cutoff = cutoff_for(older_than, datetime.now(UTC))
    store = _archive(settings)
    try:
        if dry_run:
            count = await store.count_older_than(cutoff)
            print(f"would purge {count} records received before {cutoff.isoformat()}", file=out)
            return 0
        try:
            count = await store.purge_older_than(cutoff)
        except ValueError as exc:
            print(f"feedback-ingest: refused: {exc}", file=sys.stderr)
            return 2
        print(f"purged {count} records received before {cutoff.isoformat()}", file=out)
        return 0
    finally:
        await store.close()


async def export(
    settings: Settings,
    fmt: str,
    since: str | None,
    unmasked: bool,
    out: IO[bytes],
) -> int:
    start = since_for(since)
    store = _archive(settings)
    count = 0
    try:
        await store.add_audit(
            actor(),
            "exported_unmasked" if unmasked else "exported",
            None,
            {"format": fmt, "since": None if start is None else start.isoformat()},
        )
        rows = store.export_rows(start, unmasked=unmasked)
        if fmt == "jsonl":
            async for row in rows:
                out.write(orjson.dumps(row) + b"\n")
                count += 1
        else:
            count = await _write_csv(rows, out)
        out.flush()
    finally:
        await store.close()
    print(f"exported {count} records", file=sys.stderr)
    return 0


async def _write_csv(rows: AsyncIterator[dict[str, Any]], out: IO[bytes]) -> int:
    """UTF-8 with BOM, so Excel opens the Chinese text right; nested values as JSON."""
    out.write("\ufeff".encode())
    count = 0
    columns: Sequence[str] = ()
    line = _LineBuffer()
    writer = csv.writer(line)
    async for row in rows:
        if not columns:
            columns = list(row)
            writer.writerow(columns)
        writer.writerow(_cell(row[c]) for c in columns)
        out.write(line.take().encode())
        count += 1
    return count


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return str(value)


class _LineBuffer:
    """A file for csv.writer that hands back what was written, row by row."""

    def __init__(self) -> None:
        self._parts: list[str] = []

    def write(self, text: str) -> int:
        self._parts.append(text)
        return len(text)

    def take(self) -> str:
        text, self._parts = "".join(self._parts), []
        return text
