"""`feedback-ingest dead list|replay`: the parking lot, for operators.

Listing takes every parked message and gives it back unchanged. Replaying sends a
message back to where it failed (its original exchange and routing key, recorded
in headers when it was parked) with a confirm, and only then removes it from the
parking lot. Raw connector input that never became an event cannot be replayed:
fix the source and feed it again."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import orjson

from ingest.bus.base import (
    CLASSIFIED,
    H_CHANNEL,
    H_ERROR,
    H_ERROR_STAGE,
    H_ID,
    H_ORIGIN_EXCHANGE,
    H_ORIGIN_ROUTING_KEY,
    H_STAGE,
    INGRESS,
    Q_DEAD,
    Bus,
    Delivery,
)
from ingest.runtime.components import make_bus
from ingest.settings import Settings

PREVIEW_CHARS = 120


def replay_target(headers: dict[str, str]) -> tuple[str, str] | None:
    """(exchange, routing key) a parked message goes back to, or None if it cannot."""
    exchange = headers.get(H_ORIGIN_EXCHANGE, "")
    routing_key = headers.get(H_ORIGIN_ROUTING_KEY, "")
    stage = headers.get(H_ERROR_STAGE) or headers.get(H_STAGE, "")
    if stage.startswith("connector:"):
        return None  # raw channel input, not an event
    if exchange and routing_key:
        return exchange, routing_key
    channel = headers.get(H_CHANNEL, "unknown")
    if stage.startswith("sink:"):
        return CLASSIFIED, f"{channel}.replay"
    return INGRESS, f"{channel}.normal"


async def _take_all(bus: Bus, limit: int) -> list[Delivery]:
    taken: list[Delivery] = []
    while len(taken) < limit:
        delivery = await bus.get(Q_DEAD)
        if delivery is None:
            break
        taken.append(delivery)
    return taken


def _describe(i: int, d: Delivery) -> dict[str, object]:
    preview = d.body[: PREVIEW_CHARS * 3].decode("utf-8", "replace")[:PREVIEW_CHARS]
    return {
        "n": i,
        "id": d.headers.get(H_ID, ""),
        "channel": d.headers.get(H_CHANNEL, ""),
        "stage": d.headers.get(H_ERROR_STAGE) or d.headers.get(H_STAGE, ""),
        "error": d.headers.get(H_ERROR) or d.headers.get("x-death-reason", "delivery limit"),
        "ref": d.headers.get("x-input-ref", ""),
        "bytes": len(d.body),
        "preview": preview,
    }


async def dead_list(settings: Settings, *, limit: int, as_json: bool) -> int:
    async with make_bus(settings) as bus:
        taken = await _take_all(bus, limit)
        try:
            for i, d in enumerate(taken, 1):
                row = _describe(i, d)
                if as_json:
                    sys.stdout.buffer.write(orjson.dumps(row) + b"\n")
                else:
                    print(f"{i:4}  {row['stage']!s:22} {row['id']!s:34} {row['error']}")
                    print(f"      {row['bytes']} bytes {row['ref']}: {row['preview']!r}")
        finally:
            for d in taken:
                await d.requeue()
        if not as_json:
            print(f"{len(taken)} parked message(s)")
    return 0


async def dead_replay(settings: Settings, *, ids: Sequence[str] | None, replay_all: bool) -> int:
    if not ids and not replay_all:
        print("say which: --id ID (repeatable) or --all", file=sys.stderr)
        return 2
    wanted = set(ids or ())
    replayed = skipped = 0
    async with make_bus(settings) as bus:
        taken = await _take_all(bus, 1_000_000)
        for i, d in enumerate(taken, 1):
            chosen = replay_all or d.headers.get(H_ID, "") in wanted or str(i) in wanted
            target = replay_target(d.headers) if chosen else None
            if target is None:
                if chosen:
                    skipped += 1
                    print(
                        f"{i}: raw connector input, not replayable "
                        f"({d.headers.get('x-input-ref', '')})",
                        file=sys.stderr,
                    )
                await d.requeue()
                continue
            headers = {
                k: v
                for k, v in d.headers.items()
                if k not in (H_ERROR, H_ERROR_STAGE, H_ORIGIN_EXCHANGE, H_ORIGIN_ROUTING_KEY)
            }
            headers["x-replayed"] = "1"
            await bus.publish(target[0], target[1], d.body, headers)
            await d.ack()
            replayed += 1
    print(f"replayed {replayed}, not replayable {skipped}")
    return 0
