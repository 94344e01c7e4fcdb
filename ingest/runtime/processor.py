"""The processor role: take events from the urgent queue first, then the normal one;
classify in the process pool; publish the record to `feedback.classified` with a
confirm; only then ack the event."""

from __future__ import annotations

import asyncio
import time

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
)
from ingest.classify import ChainPool
from ingest.codec import decode_record
from ingest.errors import TransientError
from ingest.log import get_logger
from ingest.runtime.stage import InFlight, park

log = get_logger("ingest.processor")
STAGE = "processor"


class ProcessorWorker:
    def __init__(self, bus: Bus, pool: ChainPool, *, prefetch: int, concurrency: int) -> None:
        self.bus = bus
        self.pool = pool
        self.prefetch = prefetch
        self.slots = asyncio.Semaphore(concurrency)
        self.in_flight = InFlight()
        self.stopping = asyncio.Event()

    async def run(self) -> None:
        """Consume until `stop()`; in-flight messages finish (or return to the queue)."""
        tasks: set[asyncio.Task[None]] = set()
        async with self.bus.consume([Q_PROCESS_URGENT, Q_PROCESS], self.prefetch) as deliveries:
            stop = asyncio.ensure_future(self.stopping.wait())
            iterator = aiter(deliveries)
            try:
                while not self.stopping.is_set():
                    await self.slots.acquire()
                    nxt = asyncio.ensure_future(anext(iterator))
                    done, _ = await asyncio.wait({nxt, stop}, return_when=asyncio.FIRST_COMPLETED)
                    if nxt not in done:
                        nxt.cancel()
                        self.slots.release()
                        break
                    delivery = nxt.result()
                    task = asyncio.create_task(self._handle(delivery))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                if tasks:
                    await asyncio.wait(tasks)
            finally:
                stop.cancel()

    def stop(self) -> None:
        self.stopping.set()

    async def _handle(self, delivery: Delivery) -> None:
        channel = delivery.headers.get(H_CHANNEL, "unknown")
        started = time.perf_counter()
        with (
            self.in_flight,
            structlog.contextvars.bound_contextvars(
                feedback_id=delivery.headers.get(H_ID, ""), channel=channel, stage=STAGE
            ),
        ):
            try:
                await self._process(delivery, channel)
            except TransientError as exc:
                telemetry.FAILED.labels(channel, STAGE, "transient").inc()
                log.warning("process_retry", error=str(exc))
                await asyncio.sleep(0.5)
                await delivery.requeue()
            except Exception as exc:  # keep the worker up; the delivery limit parks poison
                telemetry.FAILED.labels(channel, STAGE, type(exc).__name__).inc()
                log.exception("process_crashed")
                await delivery.requeue()
            finally:
                self.slots.release()
                telemetry.LATENCY.labels(STAGE).observe(time.perf_counter() - started)

    async def _process(self, delivery: Delivery, channel: str) -> None:
        status, value, kind = await self.pool.classify(delivery.body)
        if status == "drop":
            telemetry.DROPPED.labels(channel, STAGE, "step").inc()
            log.info("dropped", reason=value)
            await delivery.ack()
            return
        if status == "error":
            assert isinstance(value, str)
            await park(self.bus, delivery, STAGE, value, kind)
            return
        assert isinstance(value, bytes)
        record = decode_record(value)
        await self.bus.publish(
            CLASSIFIED,
            f"{record.channel}.{record.urgency}",
            value,
            {H_ID: record.id, H_CHANNEL: record.channel, H_STAGE: STAGE},
        )
        telemetry.PUBLISHED.labels(channel, STAGE).inc()
        await delivery.ack()
        telemetry.PROCESSED.labels(channel, STAGE).inc()
