"""Runs pull connectors: read a batch, publish it with confirms, then commit the
cursor, then run the batch's `after_commit`. A crash between any two of these steps
re-reads the batch on restart; deterministic ids make that harmless.

An optional observer sees each batch once its cursor is committed (progress of
`run --once` and `backfill`); a batch read again after a failure is seen only when it
is committed, so nothing is counted twice.

`from_scratch` (`backfill --from-scratch`): the first pass of each connector reads with
no cursor, as if it had never run, and commits its cursors batch by batch as usual. A
retry of that pass after a failure starts over only if none of its batches committed a
cursor yet; otherwise it goes on from the last one committed, like any other pass."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import structlog

from ingest import telemetry
from ingest.abc import Batch, CursorStore, PullConnector
from ingest.errors import ConfigError, TransientError
from ingest.log import get_logger
from ingest.runtime.backoff import Backoff
from ingest.runtime.publish import Publisher

log = get_logger("ingest.pull")
BatchObserver = Callable[[PullConnector, Batch], None]


class PullScheduler:
    def __init__(
        self,
        connectors: Sequence[PullConnector],
        publisher: Publisher,
        cursors: CursorStore,
        backoff: Backoff | None = None,
        observer: BatchObserver | None = None,
        *,
        from_scratch: bool = False,
    ) -> None:
        self.connectors = connectors
        self.publisher = publisher
        self.cursors = cursors
        self._backoff_template = backoff or Backoff()
        self.observer = observer
        self.stopping = asyncio.Event()
        self._from_scratch = {c.name for c in connectors} if from_scratch else set()
        """Connectors whose stored cursor is ignored (see the module docstring)."""

    async def poll_once(self, connector: PullConnector) -> int:
        """One pass over everything new; returns the number of events published."""
        published = 0
        if connector.name in self._from_scratch:
            cursor = None
        else:
            cursor = await self.cursors.load(connector.name)
        async for batch in connector.read(cursor):
            await self.publisher.publish(
                connector.name, batch.events, batch.bad, connector.input_channel
            )
            for event in batch.events:
                telemetry.RECEIVED.labels(event.channel, connector.name).inc()
            if batch.cursor is not None:
                await self.cursors.save(connector.name, batch.cursor)
                telemetry.CURSOR_COMMITS.labels(connector.name).inc()
                self._from_scratch.discard(connector.name)  # a retry goes on from here
            if self.observer is not None:
                self.observer(connector, batch)
            if batch.after_commit is not None:
                await batch.after_commit()
            published += len(batch.events)
            if self.stopping.is_set():
                break  # stop intake between batches; everything so far is committed
        self._from_scratch.discard(connector.name)
        return published

    async def run_once(self) -> int:
        """One pass of every connector (for `run --once`, cron and backfill)."""
        total = 0
        for connector in self.connectors:
            total += await self._poll_with_retry(connector, forever=False)
        return total

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for connector in self.connectors:
                group.create_task(self._loop(connector), name=f"pull:{connector.name}")

    def stop(self) -> None:
        self.stopping.set()

    async def _loop(self, connector: PullConnector) -> None:
        while not self.stopping.is_set():
            await self._poll_with_retry(connector, forever=True)
            await self._wait_next_poll(connector)

    async def _wait_next_poll(self, connector: PullConnector) -> None:
        """Until the poll interval passed, the connector announced new input, or stop.
        A failing `wait_for_input` only shortens the wait (it is logged, then polled)."""
        interval = connector.poll_interval_secs
        waits = [
            asyncio.ensure_future(self.stopping.wait()),
            asyncio.ensure_future(connector.wait_for_input(interval)),
        ]
        try:
            await asyncio.wait(waits, timeout=interval, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
            for result in await asyncio.gather(*waits, return_exceptions=True):
                if isinstance(result, Exception):
                    log.warning("wait_for_input_failed", error=repr(result))

    async def _poll_with_retry(self, connector: PullConnector, *, forever: bool) -> int:
        backoff = Backoff(self._backoff_template.initial_secs, self._backoff_template.max_secs)
        with structlog.contextvars.bound_contextvars(connector=connector.name, stage="pull"):
            while True:
                try:
                    count = await self.poll_once(connector)
                    telemetry.CONNECTOR_UP.labels(connector.name).set(1)
                    if count:
                        log.info("poll_done", events=count)
                    return count
                except ConfigError:
                    raise
                except TransientError as exc:
                    error, kind = str(exc), "transient"
                except Exception as exc:  # a connector bug must not take the worker down
                    error, kind = repr(exc), type(exc).__name__
                    log.exception("poll_crashed")
                telemetry.CONNECTOR_UP.labels(connector.name).set(0)
                telemetry.FAILED.labels(connector.name, "pull", kind).inc()
                delay = backoff.next_delay_secs()
                log.warning("poll_failed", error=error, retry_in_secs=round(delay, 2))
                if not forever and backoff.attempt > 5:
                    raise TransientError(f"{connector.name}: giving up after retries: {error}")
                try:
                    await asyncio.wait_for(self.stopping.wait(), delay)
                    return 0
                except TimeoutError:
                    continue
