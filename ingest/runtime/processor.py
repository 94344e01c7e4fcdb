"""The processor role: take events from the urgent queue first, then the normal one;
classify in the process pool; publish the record to `feedback.classified` with a
confirm; only then ack the event."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import structlog

from ingest import telemetry
from ingest.bus.base import (
    CLASSIFIED,
    H_CHANNEL,
    H_ID,
    H_STAGE,
    Q_PROCESS,
    Q_PROCESS_URGENT,
    Bus,
    Delivery,
    OutMessage,
)
from ingest.classify import ChainPool, Outcome
from ingest.errors import TransientError
from ingest.log import get_logger
from ingest.runtime.stage import InFlight, give_back, park

log = get_logger("ingest.processor")
STAGE = "processor"


class ProcessorWorker:
    """Deliveries are classified in small batches: whatever arrives within
    `linger_secs` of the first (up to `max_batch`) goes to the pool in one round trip,
    and their records are published together, confirms overlapping. Under load that
    divides the per-message cost of the pool hop and the confirm wait; when idle a
    lone event waits at most `linger_secs`."""

    def __init__(
        self,
        bus: Bus,
        pool: ChainPool,
        *,
        prefetch: int,
        concurrency: int,
        max_batch: int = 16,
        linger_secs: float = 0.002,
    ) -> None:
        self.bus = bus
        self.pool = pool
        self.prefetch = prefetch
        self.slots = asyncio.Semaphore(concurrency)
        self.max_batch = max(1, min(max_batch, concurrency // 2 or 1))
        self.linger_secs = linger_secs
        self.in_flight = InFlight()
        self.stopping = asyncio.Event()

    async def run(self) -> None:
        """Consume until `stop()`; in-flight messages finish (or return to the queue)."""
        tasks: set[asyncio.Task[None]] = set()

        def flush(batch: list[Delivery]) -> None:
            task = asyncio.create_task(self._handle(batch))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        async with self.bus.consume([Q_PROCESS_URGENT, Q_PROCESS], self.prefetch) as deliveries:
            stop = asyncio.ensure_future(self.stopping.wait())
            iterator = aiter(deliveries)
            nxt: asyncio.Future[Delivery] | None = None
            batch: list[Delivery] = []
            try:
                while True:
                    if batch and self.slots.locked():
                        flush(batch)  # don't hold a batch back while waiting for a slot
                        batch = []
                    await self.slots.acquire()
                    if nxt is None:
                        nxt = asyncio.ensure_future(anext(iterator))
                    waiting: set[asyncio.Future[Any]] = {nxt, stop}
                    done, _ = await asyncio.wait(
                        waiting,
                        timeout=self.linger_secs if batch else None,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                    if nxt in done:
                        batch.append(nxt.result())
                        nxt = None
                        if len(batch) < self.max_batch and stop not in done:
                            continue
                    else:
                        self.slots.release()
                    if batch:
                        flush(batch)
                        batch = []
                    if stop in done:
                        break
                if tasks:
                    await asyncio.wait(tasks)
            finally:
                stop.cancel()
                if nxt is not None:  # a delivery it may still bring returns to its queue
                    nxt.cancel()

    def stop(self) -> None:
        self.stopping.set()

    async def _handle(self, batch: list[Delivery]) -> None:
        started = time.perf_counter()
        with contextlib.ExitStack() as held:
            for _ in batch:
                held.enter_context(self.in_flight)
            settled: set[int] = set()
            try:
                outcomes = await self.pool.classify_many([d.body for d in batch])
                await self._settle(batch, outcomes, settled)
            except Exception as exc:  # pool broken, broker down: every one goes back
                transient = isinstance(exc, TransientError)
                kind = "transient" if transient else type(exc).__name__
                for delivery in batch:
                    telemetry.FAILED.labels(_channel(delivery), STAGE, kind).inc()
                if transient:
                    log.warning("process_retry", error=str(exc), batch=len(batch))
                    await asyncio.sleep(0.5)
                else:  # keep the worker up; the delivery limit parks poison
                    log.exception("process_crashed", batch=len(batch))
                for i, delivery in enumerate(batch):
                    if i not in settled:
                        await give_back(delivery)
            finally:
                for _ in batch:
                    self.slots.release()
                telemetry.LATENCY.labels(STAGE).observe(time.perf_counter() - started)

    async def _settle(
        self, batch: list[Delivery], outcomes: list[Outcome], settled: set[int]
    ) -> None:
        """Drops acked, failures parked, records published together and then acked;
        `settled` collects the positions done, so a failure requeues only the rest."""
        publish: list[tuple[int, OutMessage]] = []
        for i, (delivery, (status, value, detail, _)) in enumerate(
            zip(batch, outcomes, strict=True)
        ):
            with structlog.contextvars.bound_contextvars(
                feedback_id=delivery.headers.get(H_ID, ""), channel=_channel(delivery)
            ):
                if status == "drop":
                    telemetry.DROPPED.labels(_channel(delivery), STAGE, "step").inc()
                    log.info("dropped", reason=value, stage=STAGE)
                    await delivery.ack()
                    settled.add(i)
                elif status == "error":
                    assert isinstance(value, str)
                    await park(self.bus, delivery, STAGE, value, detail)
                    settled.add(i)
                else:
                    assert isinstance(value, bytes)
                    channel = detail.partition(".")[0]
                    headers = {H_ID: delivery.headers.get(H_ID, ""), H_CHANNEL: channel}
                    publish.append((i, OutMessage(detail, value, {**headers, H_STAGE: STAGE})))
        if not publish:
            return
        await self.bus.publish_many(CLASSIFIED, [message for _, message in publish])
        for i, _ in publish:
            channel = _channel(batch[i])
            telemetry.PUBLISHED.labels(channel, STAGE).inc()
            await batch[i].ack()
            settled.add(i)
            telemetry.PROCESSED.labels(channel, STAGE).inc()
            for signal in outcomes[i].signals:
                telemetry.DECISIONS.labels(signal).inc()


def _channel(delivery: Delivery) -> str:
    return delivery.headers.get(H_CHANNEL, "unknown")
