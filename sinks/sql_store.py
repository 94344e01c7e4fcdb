"""SQL storage of every record plus its append-only audit trail: PostgreSQL in
production (asyncpg pool), SQLite embedded (aiosqlite), the same SQL where possible.

    feedback_records   every FeedbackRecord field as a column, plus `version` (bumped
                       when an upsert changes content), `digest` and `updated_at`, and
                       the desk's outcome columns (`sinks.sql_desk.OUTCOME_COLUMNS`)
    feedback_audit     id, at, actor, action, record_id, detail; rows are never changed
    schema_migrations  version, name, applied_at

Migrations are the files in `sinks/migrations/`: `NNNN_name.sql`, or one
`NNNN_name.<dialect>.sql` per dialect where the SQL must differ. They run at start
in one transaction, each version once.

Records are kept at least 3 years (domain.md); `purge_older_than` refuses a cutoff
that would delete anything younger, and leaves the audit trail untouched. The desk's
writes (resolution, satisfaction, follow-up) and the export live in `sinks.sql_desk`.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, date, datetime
from typing import Any, ClassVar

import orjson

from ingest.abc import Store
from ingest.codec import parse_time, record_from_dict, record_to_dict
from ingest.errors import ConfigError, TransientError
from ingest.log import get_logger
from ingest.model import FeedbackRecord
from sinks import sql_desk
from sinks._shared import content_digest
from sinks.migrations import load_migrations
from sinks.sql_backends import Backend, Postgres, Sqlite, Tx
from sinks.sql_desk import Outcome

log = get_logger(__name__)

RECORD_COLUMNS = tuple(f.name for f in dataclasses.fields(FeedbackRecord))
JSON_COLUMNS = frozenset({"turns", "meta", "sentiment", "reasons", "pii_found"})
TIME_COLUMNS = frozenset({"received_at", "ingested_at", "due_at", "processed_at"})
WRITE_COLUMNS = (*RECORD_COLUMNS, "digest", "updated_at")
KEPT_ON_UPDATE = frozenset({"id", "status", "owner"})
"""The desk owns status and owner once a record is stored; processors never reset them."""
ACTOR = "sql_store"
"""Who the audit trail names for what this sink does on its own."""
RETENTION_YEARS = 3
AUDIT_COLUMNS = "id, at, actor, action, record_id, detail"
INSERT_AUDIT = (
    "INSERT INTO feedback_audit (at, actor, action, record_id, detail) VALUES (?, ?, ?, ?, ?)"
)


_SETS = ", ".join(f"{c} = excluded.{c}" for c in WRITE_COLUMNS if c not in KEPT_ON_UPDATE)
UPSERT = (
    f"INSERT INTO feedback_records ({', '.join(WRITE_COLUMNS)}, version) "
    f"VALUES ({', '.join('?' * len(WRITE_COLUMNS))}, 1) "
    f"ON CONFLICT (id) DO UPDATE SET {_SETS}, version = feedback_records.version + 1 "
    "WHERE feedback_records.digest IS DISTINCT FROM excluded.digest "
    "RETURNING id, version, urgency, kind, category"
)
"""Insert, or replace the content of a changed record keeping its status and owner.
An identical redelivery matches the WHERE of no row: nothing written, nothing returned."""
UPSERT_WITH_AUDIT = (
    f"WITH changed AS ({UPSERT}) "
    "INSERT INTO feedback_audit (at, actor, action, record_id, detail) "
    "SELECT ?, ?, CASE WHEN version = 1 THEN 'ingested' ELSE 'reclassified' END, id, "
    "jsonb_build_object('version', version, 'urgency', urgency, 'kind', kind, "
    "'category', category) FROM changed"
)
"""PostgreSQL: the upsert and its audit row in one statement (a data-modifying CTE)."""


def _action(version: int) -> str:
    return "ingested" if version == 1 else "reclassified"


def _change_detail(changed: dict[str, Any]) -> dict[str, Any]:
    return {key: changed[key] for key in ("version", "urgency", "kind", "category")}


def open_backend(url: str) -> Backend:
    """`postgresql://…` → asyncpg; `sqlite:///relative.db`, `sqlite:////absolute.db`
    (SQLAlchemy's convention) or a bare path → aiosqlite."""
    if url.startswith(("postgresql://", "postgres://")):
        return Postgres(url)
    if url.startswith("sqlite:///"):
        return Sqlite(url.removeprefix("sqlite:///"))
    if "://" in url:
        scheme = url.split("://", 1)[0]
        raise ConfigError("store.url", f"unsupported scheme {scheme!r}: use postgresql or sqlite")
    return Sqlite(url)


class SqlStore(Store):
    """Every record, idempotently upserted, with an audit row for each change."""

    name: ClassVar[str] = "sql_store"

    def __init__(self, url: str) -> None:
        self._backend = open_backend(url)
        self._started = False
        self._starting = asyncio.Lock()
        self.applied_migrations: list[int] = []

    @property
    def dialect(self) -> str:
        return self._backend.dialect

    async def start(self) -> None:
        """Connect and migrate (`applied_migrations` tells which versions ran). A
        database that is down is not fatal: the worker keeps running, and every call
        raises `TransientError` and retries the start until the database is back."""
        try:
            await self._ensure_started()
        except TransientError as exc:
            log.warning("store_unavailable_at_start", dialect=self.dialect, error=str(exc))

    async def migrate(self) -> list[int]:
        """Apply pending versions in one transaction; returns them (empty when current)."""
        applied: list[int] = []
        await self._backend.connect()
        async with self._backend.transaction() as tx:
            await tx.lock_for_migrations()
            await tx.execute(self._backend.schema_migrations_ddl)
            done = {
                row["version"] for row in await tx.fetch("SELECT version FROM schema_migrations")
            }
            for migration in load_migrations(self._backend.dialect):
                if migration.version in done:
                    continue
                await tx.script(migration.sql)
                await tx.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    migration.version,
                    migration.name,
                    self._backend.time_param(datetime.now(UTC)),
                )
                applied.append(migration.version)
        return applied

    async def close(self) -> None:
        await self._backend.close()
        self._started = False

    async def ping(self) -> None:
        await self._backend.ping()

    async def write(self, records: Sequence[FeedbackRecord]) -> None:
        """One transaction: new records get an `ingested` audit row, changed ones a new
        version and a `reclassified` row, identical redeliveries nothing at all."""
        if not records:
            return
        await self._ensure_started()
        now = self._backend.time_param(datetime.now(UTC))
        rows = [self._row(record, now) for record in records]
        async with self._backend.transaction() as tx:
            if self._backend.dialect == "postgresql":
                # One pipelined statement per record, the audit row written by the same
                # statement: no round trip waits for a RETURNING.
                await tx.executemany(UPSERT_WITH_AUDIT, [(*row, now, ACTOR) for row in rows])
                return
            audit_rows = []
            for row in rows:
                for changed in await tx.fetch(UPSERT, *row):
                    detail = self._backend.json_param(_change_detail(changed))
                    action = _action(changed["version"])
                    audit_rows.append((now, ACTOR, action, changed["id"], detail))
            await tx.executemany(INSERT_AUDIT, audit_rows)

    def _row(self, record: FeedbackRecord, now: Any) -> tuple[Any, ...]:
        data = record_to_dict(record)
        values: list[Any] = []
        for column in RECORD_COLUMNS:
            if column in TIME_COLUMNS:
                moment = getattr(record, column)
                values.append(None if moment is None else self._backend.time_param(moment))
            elif column in JSON_COLUMNS:
                value = data[column]
                values.append(None if value is None else self._backend.json_param(value))
            else:
                values.append(self._backend.text_param(data[column]))
        values += [content_digest(record), now]
        return tuple(values)

    async def get(self, record_id: str) -> FeedbackRecord | None:
        await self._ensure_started()
        async with self._backend.reading() as tx:
            rows = await tx.fetch(
                f"SELECT {', '.join(RECORD_COLUMNS)} FROM feedback_records WHERE id = ?", record_id
            )
        return _record(rows[0]) if rows else None

    async def version(self, record_id: str) -> int | None:
        """How many times the record's content was written (1 = never reclassified)."""
        await self._ensure_started()
        async with self._backend.reading() as tx:
            rows = await tx.fetch("SELECT version FROM feedback_records WHERE id = ?", record_id)
        return int(rows[0]["version"]) if rows else None

    async def count(self) -> int:
        await self._ensure_started()
        async with self._backend.reading() as tx:
            rows = await tx.fetch("SELECT count(*) AS n FROM feedback_records")
        return int(rows[0]["n"])

    async def audit(self, record_id: str) -> list[dict[str, Any]]:
        """The record's history, oldest first: {id, at (UTC datetime), actor, action,
        record_id, detail (dict)}."""
        await self._ensure_started()
        async with self._backend.reading() as tx:
            rows = await tx.fetch(
                f"SELECT {AUDIT_COLUMNS} FROM feedback_audit WHERE record_id = ? ORDER BY id",
                record_id,
            )
        return [_audit_entry(row) for row in rows]

    async def add_audit(
        self, actor: str, action: str, record_id: str | None, detail: dict[str, Any]
    ) -> None:
        """Append one entry (the desk's claims, views of unmasked contact data …)."""
        await self._ensure_started()
        async with self._backend.transaction() as tx:
            await self._append(tx, actor, action, record_id, detail)

    async def purge_older_than(self, cutoff: datetime) -> int:
        """Delete records received before `cutoff` and audit the purge with the count,
        in one transaction. Raises ValueError for a cutoff inside the retention period."""
        if cutoff.tzinfo is None:
            raise ValueError("cutoff must be timezone-aware")
        oldest_allowed = _years_before(datetime.now(UTC), RETENTION_YEARS)
        if cutoff > oldest_allowed:
            raise ValueError(
                f"records are kept at least {RETENTION_YEARS} years: "
                f"cutoff must be on or before {oldest_allowed.isoformat()}"
            )
        await self._ensure_started()
        async with self._backend.transaction() as tx:
            purged = await tx.execute(
                "DELETE FROM feedback_records WHERE received_at < ?",
                self._backend.time_param(cutoff),
            )
            detail = {"cutoff": cutoff.astimezone(UTC).isoformat(), "count": purged}
            await self._append(tx, ACTOR, "purged", None, detail)
        return purged

    async def count_older_than(self, cutoff: datetime) -> int:
        """What `purge_older_than(cutoff)` would delete (a dry run)."""
        await self._ensure_started()
        async with self._backend.reading() as tx:
            rows = await tx.fetch(
                "SELECT count(*) AS n FROM feedback_records WHERE received_at < ?",
                self._backend.time_param(cutoff),
            )
        return int(rows[0]["n"])

    # --- the desk's writes and reads (each change audited in its transaction) -----

    async def record_resolution(
        self,
        record_id: str,
        code: str,
        note: str,
        resolved_by: str,
        resolved_at: datetime | None = None,
    ) -> None:
        """The outcome of a complaint; also sets status resolved and owner. KeyError if
        there is no such record."""
        at = resolved_at or datetime.now(UTC)
        await self._ensure_started()
        await sql_desk.update_audited(
            self._backend,
            self._append,
            record_id,
            {
                "resolution_code": code,
                "resolution_note": note,
                "resolved_by": resolved_by,
                "resolved_at": self._backend.time_param(at),
                "status": "resolved",
                "owner": resolved_by,
            },
            resolved_by,
            "resolved",
            {"code": code, "note": note, "resolved_at": at.astimezone(UTC).isoformat()},
        )

    async def record_satisfaction(self, record_id: str, score: int, actor: str) -> None:
        """The customer's survey answer, 1-5 (ValueError otherwise)."""
        sql_desk.check_satisfaction(score)
        await self._ensure_started()
        await sql_desk.update_audited(
            self._backend,
            self._append,
            record_id,
            {"satisfaction": score},
            actor,
            "satisfaction_recorded",
            {"satisfaction": score},
        )

    async def schedule_follow_up(self, record_id: str, on: date, actor: str) -> None:
        """The date of the follow-up visit (回访) with the customer."""
        await self._ensure_started()
        await sql_desk.update_audited(
            self._backend,
            self._append,
            record_id,
            {"follow_up_on": sql_desk.date_param(self._backend, on)},
            actor,
            "follow_up_scheduled",
            {"follow_up_on": on.isoformat()},
        )

    async def outcome(self, record_id: str) -> Outcome | None:
        await self._ensure_started()
        async with self._backend.reading() as tx:
            rows = await tx.fetch(
                f"SELECT {', '.join(sql_desk.OUTCOME_COLUMNS)} FROM feedback_records WHERE id = ?",
                record_id,
            )
        return sql_desk.outcome_from_row(rows[0]) if rows else None

    async def customer_records(
        self, customer_ref: str, *, exclude_id: str = "", limit: int = 50
    ) -> list[FeedbackRecord]:
        """The customer's records on every channel, newest first (the desk's "history").
        An empty ref is no customer at all: it never matches the anonymous records."""
        if not customer_ref:
            return []
        await self._ensure_started()
        async with self._backend.reading() as tx:
            rows = await tx.fetch(
                f"SELECT {', '.join(RECORD_COLUMNS)} FROM feedback_records "
                "WHERE customer_ref = ? AND id != ? ORDER BY received_at DESC, id LIMIT ?",
                customer_ref,
                exclude_id,
                limit,
            )
        return [_record(row) for row in rows]

    async def record_contact_view(
        self, actor: str, record_id: str, fields: Sequence[str], reason: str = ""
    ) -> None:
        """Audit a view of unmasked contact data (required before showing it)."""
        await self.add_audit(
            actor, "viewed_contact", record_id, {"fields": list(fields), "reason": reason}
        )

    def export_rows(
        self, since: datetime | None = None, *, unmasked: bool = False
    ) -> AsyncIterator[dict[str, Any]]:
        """Records (with their outcome) received at or after `since`, oldest first,
        streamed; without `unmasked` the fields in `MASKED_EXPORT_OMITS` are left out."""
        return self._export(since, unmasked)

    async def _export(
        self, since: datetime | None, unmasked: bool
    ) -> AsyncIterator[dict[str, Any]]:
        await self._ensure_started()
        async for row in sql_desk.export_rows(
            self._backend,
            (*RECORD_COLUMNS, *sql_desk.OUTCOME_COLUMNS),
            JSON_COLUMNS,
            TIME_COLUMNS | {"resolved_at"},
            since,
            unmasked,
        ):
            yield row

    async def _append(
        self, tx: Tx, actor: str, action: str, record_id: str | None, detail: dict[str, Any]
    ) -> None:
        await tx.execute(
            INSERT_AUDIT,
            self._backend.time_param(datetime.now(UTC)),
            actor,
            action,
            record_id,
            self._backend.json_param(detail),
        )

    async def _ensure_started(self) -> None:
        if self._started:
            return
        async with self._starting:  # concurrent first calls: one pool, one migration
            if not self._started:
                await self._backend.connect()
                self.applied_migrations = await self.migrate()
                self._started = True


def _record(row: dict[str, Any]) -> FeedbackRecord:
    data = dict(row)
    for column in JSON_COLUMNS:
        if isinstance(data[column], str):
            data[column] = orjson.loads(data[column])
    return record_from_dict(data)


def _audit_entry(row: dict[str, Any]) -> dict[str, Any]:
    entry = dict(row)
    entry["id"] = int(entry["id"])
    entry["at"] = parse_time(entry["at"], "at")
    if isinstance(entry["detail"], str):
        entry["detail"] = orjson.loads(entry["detail"])
    return entry


def _years_before(moment: datetime, years: int) -> datetime:
    try:
        return moment.replace(year=moment.year - years)
    except ValueError:  # 29 February
        return moment.replace(year=moment.year - years, day=28)
