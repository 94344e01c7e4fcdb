"""Urgent lane under a backlog: ingress → Redis feed latency of urgent events while a
large backlog of general ones waits (issue goal: p99 < 2 s).

    python bench/urgent_lane.py [--backlog 20000] [--urgent 100] [--rate 5]

A backlog of general events is published to feedback.ingress first (normal lane);
then the worker (processors + sinks, real RabbitMQ / Redis / PostgreSQL) starts and,
while it works through the backlog, urgent events are published at `--rate` per
second on the urgent lane. Each urgent event's latency is the time from its publish
confirm until its record is in the Redis feed. Printed beside it: how far the
backlog got meanwhile, so one sees the urgent events really overtook it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.pipeline import events, make_vhost
from ingest.bus.base import INGRESS, OutMessage, Topology
from ingest.codec import encode_event
from ingest.model import FeedbackEvent
from ingest.runtime import components
from ingest.runtime.supervisor import Worker
from ingest.settings import settings_from_dict

RESULTS_DIR = Path(os.environ.get("BENCH_RESULTS_DIR") or Path(__file__).parent / "results")
"""Where the result JSON goes; run_all.py --quick points it elsewhere."""

URGENT_TEXT = "信用卡被盗刷了五万元，钱被转走了，请马上冻结！"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(args: argparse.Namespace, amqp: str) -> dict[str, object]:
    db = f"feedback_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(args.pg)
    await admin.execute(f'CREATE DATABASE "{db}"')
    prefix = f"bench-{uuid.uuid4().hex[:6]}"
    client = aioredis.from_url(args.redis)
    try:
        with tempfile.TemporaryDirectory() as state:
            settings = settings_from_dict(
                {
                    "broker": {"url": amqp},
                    "redis": {"url": args.redis, "prefix": prefix},
                    "store": {"url": args.pg.rsplit("/", 1)[0] + f"/{db}"},
                    "runtime": {"state_dir": state},
                    "log": {"level": "warning"},
                }
            )
            async with components.make_bus(settings) as bus:
                backlog = [
                    OutMessage(
                        Topology.ingress_routing_key(e.channel, "normal"), encode_event(e), {}
                    )
                    for e in events(args.backlog)
                ]
                for i in range(0, len(backlog), 1000):
                    await bus.publish_many(INGRESS, backlog[i : i + 1000])
                worker = Worker(settings, roles=("processors", "sinks"), http=False)
                running = asyncio.create_task(worker.run())
                await asyncio.sleep(3)  # pool warm-up
                sent: dict[str, float] = {}
                latencies: list[float] = []

                async def watch() -> None:
                    while len(latencies) < args.urgent:
                        for event_id, at in list(sent.items()):
                            if await client.exists(f"{prefix}:rec:{event_id}"):
                                latencies.append(time.perf_counter() - at)
                                del sent[event_id]
                        await asyncio.sleep(0.01)

                watcher = asyncio.create_task(watch())
                for n in range(args.urgent):
                    event = FeedbackEvent(id=f"urgent-{n}", channel="wechat", text=URGENT_TEXT)
                    key = Topology.ingress_routing_key(event.channel, "urgent")
                    await bus.publish(INGRESS, key, encode_event(event), {})
                    sent[event.id] = time.perf_counter()
                    await asyncio.sleep(1 / args.rate)
                await asyncio.wait_for(watcher, 120)
                depths = await bus.queue_depths()
                worker.request_stop()
                await running
    finally:
        await client.aclose()
        await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        await admin.close()
        cleanup = aioredis.from_url(args.redis)
        keys = [k async for k in cleanup.scan_iter(f"{prefix}:*")]
        if keys:
            await cleanup.delete(*keys)
        await cleanup.aclose()
    return {
        "benchmark": "urgent_lane",
        "backlog_general": args.backlog,
        "urgent_events": args.urgent,
        "urgent_rate_per_s": args.rate,
        "general_still_queued_at_end": depths.get("feedback.process", 0),
        "latency_p50_s": round(statistics.median(latencies), 3),
        "latency_p99_s": round(percentile(latencies, 0.99), 3),
        "latency_max_s": round(max(latencies), 3),
        "cores": os.cpu_count(),
        "machine": platform.platform(),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backlog", type=int, default=20000)
    parser.add_argument("--urgent", type=int, default=100)
    parser.add_argument("--rate", type=float, default=5.0)
    parser.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    vhost = make_vhost()
    try:
        result = await run(args, args.amqp.rstrip("/") + f"/{vhost}")
    finally:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], check=False)  # noqa: ASYNC221 - once, at exit
    print(
        f"urgent ingress → feed latency with {args.backlog} general queued: "
        f"p50 {result['latency_p50_s']} s, p99 {result['latency_p99_s']} s, "
        f"max {result['latency_max_s']} s; general still queued at the end: "
        f"{result['general_still_queued_at_end']}"
    )
    out = RESULTS_DIR / "urgent_lane.json"
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
