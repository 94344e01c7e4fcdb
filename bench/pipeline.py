"""End-to-end throughput over RabbitMQ, as a ratio against raw aio-pika in the same run.

    python bench/pipeline.py [--events 2000] [--amqp URL] [--redis URL] [--pg URL]

Baseline: publish N messages of the same size with publisher confirms to a quorum
queue, then consume them with manual acks (aio-pika, nothing else). Pipeline: the
same N events published to feedback.ingress, classified by the processor role and
written by both sinks (Redis feed + PostgreSQL); timed until the store holds N.
Absolute numbers on shared 2-core machines are noisy: read the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aio_pika
import asyncpg
import orjson
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingest.bus.base import INGRESS, OutMessage
from ingest.codec import encode_event
from ingest.model import FeedbackEvent
from ingest.runtime import components
from ingest.runtime.supervisor import Worker
from ingest.settings import settings_from_dict

RESULTS_DIR = Path(os.environ.get("BENCH_RESULTS_DIR") or Path(__file__).parent / "results")
"""Where the result JSON goes; run_all.py --quick points it elsewhere."""

RUNTIME = orjson.loads(os.environ.get("BENCH_RUNTIME", "{}"))
BROKER = orjson.loads(os.environ.get("BENCH_BROKER", "{}"))
"""Settings to try (JSON), e.g. BENCH_RUNTIME='{"concurrency": 256}'."""
SAMPLES = Path(__file__).resolve().parents[1] / "ingest" / "data" / "samples.jsonl"


def events(n: int) -> list[FeedbackEvent]:
    texts = [orjson.loads(x)["text"] for x in SAMPLES.read_bytes().splitlines() if x]
    return [
        FeedbackEvent(
            id=f"bench-{i}", channel="app_review", text=texts[i % len(texts)], rating=1 + i % 5
        )
        for i in range(n)
    ]


async def raw_round_trip(url: str, bodies: list[bytes]) -> float:
    connection = await aio_pika.connect_robust(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=64)
        queue = await channel.declare_queue(
            f"bench.raw.{uuid.uuid4().hex[:8]}", durable=True, arguments={"x-queue-type": "quorum"}
        )
        started = time.perf_counter()
        await asyncio.gather(
            *(
                channel.default_exchange.publish(
                    aio_pika.Message(b, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key=queue.name,
                )
                for b in bodies
            )
        )
        received = 0
        done = asyncio.Event()
        async with queue.iterator() as it:
            async for message in it:
                await message.ack()
                received += 1
                if received == len(bodies):
                    done.set()
                    break
        elapsed = time.perf_counter() - started
        await queue.delete(if_unused=False, if_empty=False)
    return len(bodies) / elapsed


def make_vhost() -> str:
    vhost = f"bench-{uuid.uuid4().hex[:8]}"
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", vhost], check=True)
    subprocess.run(
        ["rabbitmqctl", "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"], check=True
    )
    return vhost


async def pipeline(amqp: str, redis_url: str, pg: str, evs: list[FeedbackEvent]) -> float:
    db = f"feedback_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg)
    await admin.execute(f'CREATE DATABASE "{db}"')
    prefix = f"bench-{uuid.uuid4().hex[:6]}"
    try:
        with tempfile.TemporaryDirectory() as state:
            settings = settings_from_dict(
                {
                    "redis": {"url": redis_url, "prefix": prefix},
                    "store": {"url": pg.rsplit("/", 1)[0] + f"/{db}"},
                    "runtime": {"state_dir": state, **RUNTIME},
                    "broker": {"url": amqp, **BROKER},
                    "log": {"level": "warning"},
                }
            )
            worker = Worker(settings, roles=("processors", "sinks"), http=False)
            store = components.make_store(settings)
            await store.start()
            running = asyncio.create_task(worker.run())
            await asyncio.sleep(3)  # pool warm-up (snownlp loads its models)
            started = time.perf_counter()
            async with components.make_bus(settings) as bus:
                messages = [OutMessage(f"{e.channel}.normal", encode_event(e), {}) for e in evs]
                for i in range(0, len(messages), 500):
                    await bus.publish_many(INGRESS, messages[i : i + 500])
            while await store.count() < len(evs):  # noqa: ASYNC110 - polling the DB is the measurement
                await asyncio.sleep(0.05)
            elapsed = time.perf_counter() - started
            worker.request_stop()
            await running
            await store.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        await admin.close()
        client = aioredis.from_url(redis_url)
        keys = [k async for k in client.scan_iter(f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
    return len(evs) / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    vhost = make_vhost()
    amqp = args.amqp.rstrip("/") + f"/{vhost}"
    try:
        evs = events(args.events)
        raw = await raw_round_trip(amqp, [encode_event(e) for e in evs])
        e2e = await pipeline(amqp, args.redis, args.pg, evs)
    finally:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], check=False)  # noqa: ASYNC221 - once, at exit
    result = {
        "benchmark": "pipeline",
        "events": args.events,
        "cores": os.cpu_count(),
        "machine": platform.platform(),
        "raw_amqp_events_per_s": round(raw),
        "pipeline_events_per_s": round(e2e),
        "ratio": round(e2e / raw, 3),
    }
    print(f"raw aio-pika confirm+ack round trip: {raw:8.0f} events/s")
    print(f"pipeline ingress → Redis + PostgreSQL: {e2e:8.0f} events/s")
    print(f"ratio pipeline / raw:                 {e2e / raw:8.3f}")
    out = RESULTS_DIR / "pipeline.json"
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
