"""`feedback-ingest check`: every configured connection and connector, tested for real."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial

from ingest.abc import Sink
from ingest.runtime import components
from ingest.settings import Settings


async def _probe(name: str, action: Callable[[], Awaitable[None]]) -> bool:
    try:
        await asyncio.wait_for(action(), 15)
    except Exception as exc:
        print(f"FAIL  {name}: {type(exc).__name__}: {exc}")
        return False
    print(f"ok    {name}")
    return True


async def _sink_check(sink: Sink) -> None:
    await sink.start()
    try:
        await sink.ping()
    finally:
        await sink.close()


async def run_checks(settings: Settings) -> int:
    results = []
    bus = components.make_bus(settings)

    async def bus_check() -> None:
        async with bus:
            await bus.ping()

    results.append(
        await _probe(f"bus ({'embedded' if settings.embedded else 'rabbitmq'})", bus_check)
    )
    sinks: list[tuple[str, Sink]] = [
        ("feed", components.make_feed(settings)),
        ("store", components.make_store(settings)),
    ]
    for label, sink in sinks:
        results.append(await _probe(f"{label} ({sink.name})", partial(_sink_check, sink)))
    for connector in components.make_connectors(settings):
        results.append(
            await _probe(f"connector {connector.name} ({connector.type})", connector.check)
        )
        await connector.close()
    return 0 if all(results) else 1
