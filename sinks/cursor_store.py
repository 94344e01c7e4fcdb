"""Where pull connectors keep their cursors: Redis when the worker has one (key
`{prefix}:cursor:{connector}`), else a SQLite file. The runtime saves a cursor only
after the broker confirmed every event before it, so a crash re-reads, never skips."""

from __future__ import annotations

from redis.asyncio import Redis

from ingest.abc import CursorStore
from sinks._shared import SqliteDb, utc_now_iso
from sinks.redis_feed import connect, redis_errors_as_transient


class RedisCursorStore(CursorStore):
    """Durable as far as the server's persistence (AOF with fsync) makes it."""

    def __init__(self, url: str, prefix: str = "feedback") -> None:
        self.url = url
        self.prefix = prefix
        self._client: Redis | None = None

    def key(self, connector: str) -> str:
        return f"{self.prefix}:cursor:{connector}"

    @property
    def _redis(self) -> Redis:
        if self._client is None:
            self._client = connect(self.url)
        return self._client

    async def load(self, connector: str) -> str | None:
        with redis_errors_as_transient():
            value = await self._redis.get(self.key(connector))
        return value.decode() if isinstance(value, bytes) else value

    async def save(self, connector: str, cursor: str) -> None:
        with redis_errors_as_transient():
            await self._redis.set(self.key(connector), cursor)

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()


class SqliteCursorStore(CursorStore):
    """One row per connector in `connector_cursors`; committed with synchronous=FULL."""

    SCHEMA = (
        "CREATE TABLE IF NOT EXISTS connector_cursors (connector TEXT PRIMARY KEY NOT NULL, "
        "cursor TEXT NOT NULL, updated_at TEXT NOT NULL)"
    )

    def __init__(self, path: str) -> None:
        self.path = path
        self._db = SqliteDb(path)
        self._ready = False

    async def _ensure_schema(self) -> None:
        if not self._ready:
            async with self._db.transaction() as conn:
                await conn.execute(self.SCHEMA)
            self._ready = True

    async def load(self, connector: str) -> str | None:
        await self._ensure_schema()
        async with (
            self._db.reading() as conn,
            conn.execute(
                "SELECT cursor FROM connector_cursors WHERE connector = ?", (connector,)
            ) as rows,
        ):
            row = await rows.fetchone()
        return None if row is None else str(row[0])

    async def save(self, connector: str, cursor: str) -> None:
        await self._ensure_schema()
        async with self._db.transaction() as conn:
            await conn.execute(
                "INSERT INTO connector_cursors (connector, cursor, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (connector) DO UPDATE SET cursor = excluded.cursor, "
                "updated_at = excluded.updated_at",
                (connector, cursor, utc_now_iso()),
            )

    async def close(self) -> None:
        await self._db.close()
        self._ready = False
