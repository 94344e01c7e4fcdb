"""The desk's operations on the embedded (SQLite) feed, one function per operation,
each run by `SqliteFeed` inside one BEGIN IMMEDIATE transaction: the same rules and
the same events as the Lua scripts of the Redis feed (`sinks.redis_desk_lua`).

A function returns the item's hot fields (a dict keyed like `ITEM_FIELDS`), or raises
`Refused` with the outcome code the caller turns into KeyError / Conflict.
"""

from __future__ import annotations

from typing import Any

import aiosqlite
import orjson

from sinks._desk import ITEM_FIELDS, conflict_reason, rank_zero_score

COLUMNS = (
    ("lease_expires_at", "TEXT NOT NULL DEFAULT ''"),
    ("breached", "INTEGER NOT NULL DEFAULT 0"),
    ("escalated", "INTEGER NOT NULL DEFAULT 0"),
    ("repeat_count", "INTEGER NOT NULL DEFAULT 0"),
    ("linked_to", "TEXT NOT NULL DEFAULT ''"),
    ("customer_ref", "TEXT NOT NULL DEFAULT ''"),
    ("resolution_code", "TEXT NOT NULL DEFAULT ''"),
    ("resolution_note", "TEXT NOT NULL DEFAULT ''"),
    ("resolved_at", "TEXT NOT NULL DEFAULT ''"),
)
"""Desk columns of feed_items, added to files made before the desk existed."""
EVENT_COLUMNS = (("fields", "TEXT NOT NULL DEFAULT '{}'"),)
INDEXES = (
    "CREATE INDEX IF NOT EXISTS feed_items_lease ON feed_items (status, lease_expires_at)",
    "CREATE INDEX IF NOT EXISTS feed_items_due ON feed_items (breached, due_at)",
    "CREATE INDEX IF NOT EXISTS feed_items_customer ON feed_items (customer_ref, status)",
)

_HOT = (*ITEM_FIELDS, "score", "customer_ref", "id")
_SELECT_ITEM = f"SELECT {', '.join(_HOT)} FROM feed_items WHERE id = ?"
_EVENT = "INSERT INTO feed_events (at, type, id, urgency, fields) VALUES (?, ?, ?, ?, ?)"


class Refused(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


async def add_missing_columns(conn: aiosqlite.Connection) -> None:
    for table, columns in (("feed_items", COLUMNS), ("feed_events", EVENT_COLUMNS)):
        async with conn.execute(f"PRAGMA table_info({table})") as cur:
            present = {row[1] for row in await cur.fetchall()}
        for name, declaration in columns:
            if name not in present:
                await conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {declaration}")
    for statement in INDEXES:
        await conn.execute(statement)


async def emit(
    conn: aiosqlite.Connection, at: str, kind: str, record_id: str, urgency: str, **fields: str
) -> None:
    await conn.execute(_EVENT, (at, kind, record_id, urgency, orjson.dumps(fields).decode()))


async def hot(conn: aiosqlite.Connection, record_id: str) -> dict[str, Any] | None:
    async with conn.execute(_SELECT_ITEM, (record_id,)) as cur:
        row = await cur.fetchone()
    if row is None:
        return None
    return {
        name: None if value is None else str(value) for name, value in zip(_HOT, row, strict=True)
    }


async def _existing(conn: aiosqlite.Connection, record_id: str) -> dict[str, Any]:
    item = await hot(conn, record_id)
    if item is None:
        raise Refused("missing", record_id)
    if item["status"] == "resolved":
        raise Refused("conflict", "already resolved")
    return item


async def _held_by(conn: aiosqlite.Connection, record_id: str, agent: str) -> dict[str, Any]:
    item = await _existing(conn, record_id)
    if item["status"] != "claimed" or item["owner"] != agent:
        raise Refused("conflict", conflict_reason(item["status"], item["owner"], agent))
    return item


async def _set(conn: aiosqlite.Connection, record_id: str, **values: Any) -> dict[str, Any]:
    sets = ", ".join(f"{name} = ?" for name in values)
    await conn.execute(f"UPDATE feed_items SET {sets} WHERE id = ?", (*values.values(), record_id))
    item = await hot(conn, record_id)
    assert item is not None
    return item


async def claim_next(
    conn: aiosqlite.Connection, agent: str, until: str, now: str
) -> dict[str, Any] | None:
    async with conn.execute(
        "SELECT id FROM feed_items WHERE status = 'open' ORDER BY score, id LIMIT 1"
    ) as cur:
        row = await cur.fetchone()
    if row is None:
        return None
    return await claim(conn, row[0], agent, until, now)


async def claim(
    conn: aiosqlite.Connection, record_id: str, agent: str, until: str, now: str
) -> dict[str, Any]:
    item = await _existing(conn, record_id)
    status, owner, urgency = item["status"], item["owner"], item["urgency"]
    if status == "claimed" and owner == agent:
        return await _set(conn, record_id, lease_expires_at=until, updated_at=now)
    if status == "claimed":
        if item["lease_expires_at"] > now:
            raise Refused("conflict", f"held by {owner}")
        await emit(conn, now, "released", record_id, urgency, owner=owner, reason="lease_expired")
    claimed = await _set(
        conn, record_id, status="claimed", owner=agent, lease_expires_at=until, updated_at=now
    )
    await emit(conn, now, "claimed", record_id, urgency, owner=agent, lease_expires_at=until)
    return claimed


async def renew(
    conn: aiosqlite.Connection, record_id: str, agent: str, until: str, now: str
) -> dict[str, Any]:
    await _held_by(conn, record_id, agent)
    return await _set(conn, record_id, lease_expires_at=until, updated_at=now)


async def release(
    conn: aiosqlite.Connection, record_id: str, agent: str, now: str
) -> dict[str, Any]:
    item = await _held_by(conn, record_id, agent)
    released = await _set(
        conn, record_id, status="open", owner="", lease_expires_at="", updated_at=now
    )
    await emit(conn, now, "released", record_id, item["urgency"], owner=agent, reason="released")
    return released


async def resolve(
    conn: aiosqlite.Connection, record_id: str, agent: str, code: str, note: str, now: str
) -> dict[str, Any]:
    item = await _held_by(conn, record_id, agent)
    resolved = await _set(
        conn,
        record_id,
        status="resolved",
        lease_expires_at="",
        updated_at=now,
        resolution_code=code,
        resolution_note=note,
        resolved_at=now,
    )
    await emit(conn, now, "resolved", record_id, item["urgency"], owner=agent, code=code)
    return resolved


async def reassign(
    conn: aiosqlite.Connection, record_id: str, to_agent: str, by: str, until: str, now: str
) -> dict[str, Any]:
    item = await _existing(conn, record_id)
    moved = await _set(
        conn, record_id, status="claimed", owner=to_agent, lease_expires_at=until, updated_at=now
    )
    await emit(
        conn,
        now,
        "reassigned",
        record_id,
        item["urgency"],
        owner=to_agent,
        **{"from": item["owner"] or ""},
        by=by,
    )
    return moved


async def escalate(
    conn: aiosqlite.Connection, record_id: str, by: str, reason: str, now: str
) -> dict[str, Any]:
    item = await _existing(conn, record_id)
    if item["escalated"] == "1":
        return item
    raised = await _set(
        conn,
        record_id,
        urgency="urgent",
        escalated=1,
        score=rank_zero_score(float(item["score"])),
        updated_at=now,
    )
    await emit(conn, now, "escalated", record_id, "urgent", by=by, reason=reason)
    return raised


async def sweep(conn: aiosqlite.Connection, now: str) -> tuple[list[str], list[str]]:
    """(returned, breached): expired leases back to the feed, items past due marked
    once (the `breached = 0` condition is what makes the event once per item)."""
    async with conn.execute(
        "SELECT id, owner, urgency FROM feed_items WHERE status = 'claimed' "
        "AND lease_expires_at != '' AND lease_expires_at <= ? ORDER BY lease_expires_at, id",
        (now,),
    ) as cur:
        expired = list(await cur.fetchall())
    for record_id, owner, urgency in expired:
        await _set(conn, record_id, status="open", owner="", lease_expires_at="")
        await emit(conn, now, "released", record_id, urgency, owner=owner, reason="lease_expired")
    async with conn.execute(
        "SELECT id, urgency, due_at FROM feed_items WHERE breached = 0 "
        "AND status != 'resolved' AND due_at IS NOT NULL AND due_at < ? ORDER BY due_at, id",
        (now,),
    ) as cur:
        late = list(await cur.fetchall())
    for record_id, urgency, due_at in late:
        await conn.execute("UPDATE feed_items SET breached = 1 WHERE id = ?", (record_id,))
        await emit(conn, now, "breached", record_id, urgency, due_at=due_at)
    return [row[0] for row in expired], [row[0] for row in late]


async def link_repeat(conn: aiosqlite.Connection, record_id: str, customer_ref: str) -> str:
    """The customer's most pressing unresolved item, preferring one that is not itself
    a repeat; its repeat_count goes up. '' when there is none."""
    if not customer_ref:
        return ""
    async with conn.execute(
        "SELECT id FROM feed_items WHERE customer_ref = ? AND status IN ('open', 'claimed') "
        "AND id != ? ORDER BY linked_to != '', score, id LIMIT 1",
        (customer_ref, record_id),
    ) as cur:
        row = await cur.fetchone()
    if row is None:
        return ""
    await conn.execute(
        "UPDATE feed_items SET repeat_count = repeat_count + 1 WHERE id = ?", (row[0],)
    )
    return str(row[0])
