"""SQL storage of every record plus its append-only audit trail: PostgreSQL in
production (asyncpg pool), SQLite embedded (aiosqlite), the same SQL where possible.

    feedback_records   every FeedbackRecord field as a column, plus `version` (bumped
                       when an upsert changes content), `digest` and `updated_at`
    feedback_audit     id, at, actor, action, record_id, detail; rows are never changed
    schema_migrations  version, name, applied_at

Migrations are the files in `sinks/migrations/`: `NNNN_name.sql`, or one
`NNNN_name.<dialect>.sql` per dialect where the SQL must differ. They run at start
in one transaction, each version once.

Records are kept at least 3 years (domain.md); `purge_older_than` refuses a cutoff
that would delete anything younger, and leaves the audit trail untouched.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import resources
from typing import Any, ClassVar

import orjson

from ingest.abc import Store
from ingest.codec import parse_time, record_from_dict, record_to_dict
from ingest.errors import ConfigError, TransientError
from ingest.log import get_logger
from ingest.model import FeedbackRecord
from sinks._shared import content_digest
from sinks.sql_backends import Backend, Postgres, Sqlite, Tx

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


@dataclasses.dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(dialect: str) -> list[Migration]:
    """Every version in order, each in its `dialect` variant when it has one."""
    generic: dict[int, tuple[str, str]] = {}
    specific: dict[int, tuple[str, str]] = {}
    variants: dict[int, set[str]] = {}
    for entry in resources.files("sinks").joinpath("migrations").iterdir():
        if not entry.name.endswith(".sql"):
            continue
        stem, _, variant = entry.name.removesuffix(".sql").partition(".")
        number, _, _ = stem.partition("_")
        if not number.isdigit():
            raise ValueError(f"migration {entry.name!r} does not start with a version number")
        version = int(number)
        variants.setdefault(version, set()).add(variant)
        target = generic if not variant else specific if variant == dialect else None
        if target is not None:
            if version in target:
                raise ValueError(f"two migrations for version {version} ({dialect})")
            target[version] = (stem, entry.read_text(encoding="utf-8"))
    migrations = []
    for version in sorted(variants):
        chosen = specific.get(version) or generic.get(version)
        if chosen is None:
            raise ValueError(f"migration {version} has no {dialect!r} or generic variant")
        migrations.append(Migration(version, *chosen))
    return migrations


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
        if not rows:
            return None
        data = dict(rows[0])
        for column in JSON_COLUMNS:
            if isinstance(data[column], str):
                data[column] = orjson.loads(data[column])
        return record_from_dict(data)

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
