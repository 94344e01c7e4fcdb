"""A sink role: one queue per sink, so a slow or failing sink never blocks another.
Deliveries are written in batches (idempotent upsert) and acked only after the
write returned; while the backend is down the batch is retried with backoff and
stays unacked, so nothing is lost if the worker dies meanwhile."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from ingest import telemetry
from ingest.abc import Sink
from ingest.bus.base import H_CHANNEL, Bus, Delivery
from ingest.codec import decode_record
from ingest.errors import PermanentError, TransientError
from ingest.log import get_logger
from ingest.model import FeedbackRecord
from ingest.runtime.backoff import Backoff
from ingest.runtime.stage import InFlight, give_back, park

log = get_logger("ingest.sink")


class SinkWorker:
    def __init__(
        self,
        bus: Bus,
        queue: str,
        sink: Sink,
        *,
        batch_size: int,
        linger_secs: float = 0.02,
        backoff: Backoff | None = None,
    ) -> None:
        self.bus = bus
        self.queue = queue
        self.sink = sink
        self.stage = f"sink:{sink.name}"
        self.batch_size = batch_size
        self.linger_secs = linger_secs
        self.backoff = backoff or Backoff()
        self.in_flight = InFlight()
        self.stopping = asyncio.Event()

    def stop(self) -> None:
        self.stopping.set()

    async def run(self) -> None:
        async with self.bus.consume([self.queue], self.batch_size * 2) as deliveries:
            iterator = aiter(deliveries)
            while not self.stopping.is_set():
                batch = await self._next_batch(iterator)
                if batch:
                    with self.in_flight:
                        await self._write(batch)

    async def _next_batch(self, iterator: AsyncIterator[Delivery]) -> list[Delivery]:
        batch: list[Delivery] = []
        stop = asyncio.ensure_future(self.stopping.wait())
        try:
            first = asyncio.ensure_future(anext(iterator))
            await asyncio.wait({first, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not first.done():
                first.cancel()
                return batch
            batch.append(first.result())
            deadline = time.monotonic() + self.linger_secs
            while len(batch) < self.batch_size:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(anext(iterator), remaining))
                except TimeoutError:
                    break
            return batch
        finally:
            stop.cancel()

    async def _write(self, batch: list[Delivery]) -> None:
        records: list[FeedbackRecord] = []
        keep: list[Delivery] = []
        for delivery in batch:
            try:
                records.append(decode_record(delivery.body))
                keep.append(delivery)
            except PermanentError as exc:
                await park(self.bus, delivery, self.stage, str(exc), exc.kind)
        if not records:
            return
        self.backoff.reset()
        started = time.perf_counter()
        while True:
            try:
                await self.sink.write(records)
                break
            except TransientError as exc:
                telemetry.FAILED.labels("all", self.stage, "transient").inc()
                delay = self.backoff.next_delay_secs()
                log.warning(
                    "sink_write_retry",
                    stage=self.stage,
                    error=str(exc),
                    retry_in_secs=round(delay, 2),
                    batch=len(records),
                )
                if self.stopping.is_set():
                    for delivery in keep:  # shutting down: hand them back, unacked
                        await give_back(delivery)
                    return
                await asyncio.sleep(delay)
        telemetry.LATENCY.labels(self.stage).observe(time.perf_counter() - started)
        now = datetime.now(UTC)
        for delivery, record in zip(keep, records, strict=True):
            try:
                await delivery.ack()
            except TransientError as exc:  # written, but the channel is gone: the broker
                log.warning("ack_lost", stage=self.stage, error=str(exc))  # redelivers it and
                continue  # the idempotent upsert makes that a no-op; the worker keeps going
            telemetry.PROCESSED.labels(
                delivery.headers.get(H_CHANNEL, record.channel), self.stage
            ).inc()
            telemetry.END_TO_END.labels(self.sink.name).observe(
                max(0.0, (now - record.ingested_at).total_seconds())
            )
