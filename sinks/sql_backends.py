"""The two databases behind `SqlStore`, reduced to what it needs: transactions that
run `?`-placeholder SQL, parameter conversion, and errors translated at the boundary
(connection lost, server restarting, lock contention → `TransientError`)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from datetime import datetime
from typing import Any, ClassVar, Protocol

import aiosqlite
import asyncpg
import orjson

from ingest.errors import TransientError
from sinks._shared import SqliteDb, utc_iso

MIGRATION_LOCK_KEY = 0x66656564_62616B31
"""pg_advisory_xact_lock key: two workers starting together migrate one after the other."""

MIGRATION_TIMEOUT_SECS = 3600.0

_PG_TRANSIENT: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable
    TimeoutError,
    asyncpg.PostgresConnectionError,  # class 08: connection lost
    asyncpg.exceptions.OperatorInterventionError,  # class 57: shutdown, cannot connect now
    asyncpg.exceptions.InsufficientResourcesError,  # class 53: too many connections, disk full
    asyncpg.exceptions.TransactionRollbackError,  # class 40: serialization failure, deadlock
    asyncpg.exceptions.ReadOnlySQLTransactionError,  # writing to a replica during failover
    # "cannot switch to state 15; another operation is in progress": asyncpg's protocol
    # state after the server went away mid-query (seen in the chaos run's PostgreSQL
    # restarts); the pool discards that connection on release.
    asyncpg.exceptions.InternalClientError,
)


class Tx(Protocol):
    """One connection (in a transaction when opened by `transaction()`)."""

    async def execute(self, sql: str, *args: Any) -> int:
        """Run one statement; returns the rows it changed."""

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]: ...

    async def script(self, sql: str) -> None:
        """Run several statements (a migration file)."""

    async def lock_for_migrations(self) -> None: ...


class Backend(Protocol):
    dialect: ClassVar[str]
    schema_migrations_ddl: ClassVar[str]

    async def connect(self) -> None: ...

    def transaction(self) -> AbstractAsyncContextManager[Tx]: ...

    def reading(self) -> AbstractAsyncContextManager[Tx]: ...

    def time_param(self, moment: datetime) -> Any: ...

    def json_param(self, value: Any) -> str: ...

    def text_param(self, value: Any) -> Any: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


# --- PostgreSQL ---------------------------------------------------------------


@contextmanager
def pg_errors() -> Iterator[None]:
    try:
        yield
    except _PG_TRANSIENT as exc:
        raise TransientError(f"postgresql: {type(exc).__name__}: {exc}") from exc


def numbered(sql: str) -> str:
    """`?` placeholders → asyncpg's `$1, $2 …` (our SQL has no literal `?`)."""
    parts = sql.split("?")
    return "".join(f"{part}${i}" for i, part in enumerate(parts[:-1], 1)) + parts[-1]


def _without_nul(value: Any) -> Any:
    """PostgreSQL text and jsonb cannot hold U+0000 (a stray one arrives in mail
    bodies now and then); U+FFFD keeps the record storable instead of failing the batch."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    if isinstance(value, dict):
        return {_without_nul(key): _without_nul(item) for key, item in value.items()}
    return value


def _params(args: Sequence[Any]) -> list[Any]:
    """Every text parameter without U+0000, reads as well as writes: a record id from a
    URL (`/api/items/%00`) or an agent's note is matched or stored as the store writes
    it (U+FFFD), instead of the server refusing the statement."""
    return [_without_nul(arg) if isinstance(arg, str) else arg for arg in args]


class _PgTx:
    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def execute(self, sql: str, *args: Any) -> int:
        status: str = await self.conn.execute(numbered(sql), *_params(args))
        tail = status.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            await self.conn.executemany(numbered(sql), [_params(row) for row in rows])

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        return [dict(row) for row in await self.conn.fetch(numbered(sql), *_params(args))]

    async def script(self, sql: str) -> None:
        # No arguments: the simple protocol runs many statements. A migration may build
        # an index over years of records, so it gets far more than command_timeout.
        await self.conn.execute(sql, timeout=MIGRATION_TIMEOUT_SECS)

    async def lock_for_migrations(self) -> None:
        await self.conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)


class Postgres:
    """An asyncpg pool. Server settings such as `search_path` can ride in the URL's
    query string (`?search_path=tenant_a`), which asyncpg passes to the server."""

    dialect: ClassVar[str] = "postgresql"
    schema_migrations_ddl: ClassVar[str] = (
        "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, "
        "name text NOT NULL, applied_at timestamptz NOT NULL)"
    )

    def __init__(self, url: str) -> None:
        self._url = url
        self._pool: Any = None

    async def connect(self) -> None:
        if self._pool is None:
            with pg_errors():
                self._pool = await asyncpg.create_pool(
                    self._url, min_size=1, max_size=10, timeout=10, command_timeout=60
                )

    def _require_pool(self) -> Any:
        if self._pool is None:
            raise RuntimeError("SqlStore is not started")
        return self._pool

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        pool = self._require_pool()
        with pg_errors():
            async with pool.acquire() as conn, conn.transaction():
                yield _PgTx(conn)

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[Tx]:
        pool = self._require_pool()
        with pg_errors():
            async with pool.acquire() as conn:
                yield _PgTx(conn)

    def time_param(self, moment: datetime) -> Any:
        return moment

    def json_param(self, value: Any) -> str:
        return orjson.dumps(_without_nul(value)).decode()

    def text_param(self, value: Any) -> Any:
        return _without_nul(value)

    async def ping(self) -> None:
        await self.connect()
        async with self.reading() as tx:
            await tx.fetch("SELECT 1")

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()


# --- SQLite -------------------------------------------------------------------


def split_statements(script: str) -> list[str]:
    """A migration file as single statements (executescript would COMMIT the open
    transaction first). `complete_statement` keeps a trigger's BEGIN … END whole."""
    statements: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            if pending.strip().rstrip(";").strip():
                statements.append(pending.strip())
            pending = ""
    if pending.strip() and any(
        not line.strip().startswith("--") for line in pending.splitlines() if line.strip()
    ):
        raise ValueError(f"incomplete SQL statement at the end of a migration: {pending[:80]!r}")
    return statements


class _SqliteTx:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.conn = conn

    async def execute(self, sql: str, *args: Any) -> int:
        async with self.conn.execute(sql, args) as cursor:
            return max(cursor.rowcount, 0)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            await self.conn.executemany(sql, rows)

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        async with self.conn.execute(sql, args) as cursor:
            names = [column[0] for column in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in await cursor.fetchall()]

    async def script(self, sql: str) -> None:
        for statement in split_statements(sql):
            await self.conn.execute(statement)

    async def lock_for_migrations(self) -> None:
        """Nothing to do: BEGIN IMMEDIATE already holds the database's write lock."""


class Sqlite:
    """One aiosqlite connection (WAL); SQLite serialises writers anyway."""

    dialect: ClassVar[str] = "sqlite"
    schema_migrations_ddl: ClassVar[str] = (
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
        "name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )

    def __init__(self, path: str) -> None:
        self.path = path
        self._db = SqliteDb(path)

    async def connect(self) -> None:
        async with self._db.reading():
            pass  # opens the file, sets WAL

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        async with self._db.transaction() as conn:
            yield _SqliteTx(conn)

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[Tx]:
        async with self._db.reading() as conn:
            yield _SqliteTx(conn)

    def time_param(self, moment: datetime) -> Any:
        return utc_iso(moment)

    def json_param(self, value: Any) -> str:
        return orjson.dumps(value).decode()

    def text_param(self, value: Any) -> Any:
        return value

    async def ping(self) -> None:
        async with self.reading() as tx:
            await tx.fetch("SELECT 1")

    async def close(self) -> None:
        await self._db.close()
