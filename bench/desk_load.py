"""Desk API under load: N agents polling the feed, each with a live stream open, while
the pipeline writes records as fast as it can (target 1000/s). Reports API latency
percentiles, the write rate reached and the events each stream received.

    python bench/desk_load.py [--feed sqlite|redis] [--seconds 20] [--agents 20]
                              [--rate 1000] [--poll-secs 1.0] [--redis URL]

Three processes, as in production: the desk (role `desk`: API + streams), a writer
that does what the two sink workers do (feed.write + store.write in batches of 64,
records classified once by the real chain and re-stamped), and this one, the
agents. Every agent polls GET /api/feed?limit=50 every `--poll-secs` and, every
tenth poll, takes the next item and resolves it (POST next + resolve). Embedded
(SQLite) shares one feed file between the desk and the writer; `--feed redis`
uses Redis for the feed (the store stays SQLite). Traffic goes to 127.0.0.1 only,
and every loop is bounded by `--seconds`.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import statistics
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ingest.runtime.http import HttpServer  # noqa: E402
from tests.desk_seed import (  # noqa: E402
    TOKENS,
    desk_app,
    desk_settings,
    sample_records,
)

BATCH = 64
RESULTS = Path(os.environ.get("BENCH_RESULTS_DIR") or ROOT / "bench" / "results") / "desk_load.json"
"""One entry per feed kind (`sqlite`, `redis`), each run updating its own."""


def open_feed(kind: str, state: Path, redis_url: str) -> Any:
    if kind == "redis":
        from sinks.redis_feed import RedisFeed

        return RedisFeed(redis_url, prefix=f"bench-desk-{state.name}")
    from sinks.sqlite_feed import SqliteFeed

    return SqliteFeed(str(state / "feed.db"))


async def serve(args: argparse.Namespace) -> None:
    """The desk process: prints its port, serves until stdin closes."""
    from sinks.sql_store import SqlStore

    state = Path(args.state)
    feed = open_feed(args.feed, state, args.redis)
    store = SqlStore(f"sqlite:///{state / 'feedback.db'}")
    await feed.start()
    await store.start()
    server = HttpServer(desk_app(feed, store, desk_settings(state)), "127.0.0.1", 0)
    await server.start()
    print(f"PORT {server.port}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await server.close()
    await feed.close()
    await store.close()


async def write(args: argparse.Namespace) -> None:
    """The writer process: as many records per second as it can, up to --rate."""
    from sinks.sql_store import SqlStore

    state = Path(args.state)
    feed = open_feed(args.feed, state, args.redis)
    store = SqlStore(f"sqlite:///{state / 'feedback.db'}")
    await feed.start()
    await store.start()
    templates = sample_records()
    loop = asyncio.get_running_loop()
    started = loop.time()
    written = 0
    while loop.time() - started < args.seconds:
        now = datetime.now(UTC)
        batch = [
            dataclasses.replace(
                templates[(written + i) % len(templates)],
                id=f"load-{written + i}",
                received_at=now,
                due_at=now + timedelta(hours=24 + (written + i) % 48),
                customer_ref=f"load-cust-{(written + i) % 5000}",
            )
            for i in range(BATCH)
        ]
        await store.write(batch)
        await feed.write(batch)
        written += len(batch)
        ahead = written / args.rate - (loop.time() - started)
        if ahead > 0:
            await asyncio.sleep(ahead)
    elapsed = loop.time() - started
    result = {"written": written, "rate_per_sec": round(written / elapsed)}
    print("RESULT " + json.dumps(result), flush=True)
    await feed.close()
    await store.close()


async def agent(
    session: aiohttp.ClientSession,
    base: str,
    headers: dict[str, str],
    args: argparse.Namespace,
    deadline: float,
    latencies: dict[str, list[float]],
    errors: list[str],
) -> None:
    loop = asyncio.get_running_loop()
    polls = 0

    async def call(kind: str, method: str, path: str, body: Any = None) -> Any:
        t = loop.time()
        async with session.request(method, base + path, headers=headers, json=body) as r:
            data = await r.json()
            latencies.setdefault(kind, []).append(loop.time() - t)
            if r.status >= 500 or r.status in (401, 403):
                errors.append(f"{kind} {r.status} {data}")
            return data

    while loop.time() < deadline:
        await call("feed", "GET", "/api/feed?limit=50")
        polls += 1
        if polls % 10 == 0:
            taken = await call("next", "POST", "/api/next")
            if taken.get("item"):
                item_id = taken["item"]["id"]
                body = {"code": "resolved", "satisfaction": 4}
                await call("resolve", "POST", f"/api/items/{item_id}/resolve", body)
        await asyncio.sleep(args.poll_secs)


async def listen(
    session: aiohttp.ClientSession, base: str, headers: dict[str, str], deadline: float
) -> int:
    """Counts events; reads whole chunks, so the client is not the bottleneck."""
    received = 0
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    loop = asyncio.get_running_loop()
    async with session.get(base + "/api/events", headers=headers, timeout=timeout) as r:
        while (left := deadline - loop.time()) > 0:
            try:
                chunk = await asyncio.wait_for(r.content.readany(), left)
            except TimeoutError:
                break
            if not chunk:
                break
            received += chunk.count(b"\nevent: ")
    return received


async def marked(stream: asyncio.StreamReader, marker: str) -> str:
    """The rest of the first line starting with `marker` (logs may come before it)."""
    while line := (await stream.readline()).decode():
        if line.startswith(marker):
            return line[len(marker) :].strip()
    raise RuntimeError(f"the child process ended without printing {marker!r}")


async def drop_keys(url: str, prefix: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
    for start in range(0, len(keys), 1000):
        await client.delete(*keys[start : start + 1000])
    await client.aclose()


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    return {
        "count": len(ordered),
        "p50_ms": at(0.50),
        "p95_ms": at(0.95),
        "p99_ms": at(0.99),
        "max_ms": round(1000 * ordered[-1], 1),
        "mean_ms": round(1000 * statistics.fmean(ordered), 1),
    }


async def drive(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as state:
        common = ["--state", state, "--feed", args.feed, "--redis", args.redis]
        common += ["--seconds", str(args.seconds), "--rate", str(args.rate)]
        me = [__file__]
        server = await asyncio.create_subprocess_exec(
            sys.executable, *me, "--role", "serve", *common,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            assert server.stdout is not None and server.stdin is not None
            port = await marked(server.stdout, "PORT ")
            base = f"http://127.0.0.1:{port}"
            writer = None
            if args.rate > 0:
                writer = await asyncio.create_subprocess_exec(
                    sys.executable, *me, "--role", "write", *common, stdout=asyncio.subprocess.PIPE
                )
            latencies: dict[str, list[float]] = {}
            errors: list[str] = []
            loop = asyncio.get_running_loop()
            deadline = loop.time() + args.seconds
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=connector) as session:
                names = [TOKENS["agent"], TOKENS["agent2"]]
                jobs = []
                for i in range(args.agents):
                    headers = {"Authorization": f"Bearer {names[i % 2][2]}"}
                    if args.sse:
                        jobs.append(listen(session, base, headers, deadline))
                    jobs.append(agent(session, base, headers, args, deadline, latencies, errors))
                results = await asyncio.gather(*jobs)
            wrote: dict[str, Any] = {"written": 0, "rate_per_sec": 0}
            if writer is not None:
                assert writer.stdout is not None
                wrote = json.loads(await marked(writer.stdout, "RESULT "))
                await writer.wait()
        finally:
            if server.stdin is not None:
                server.stdin.close()
            await asyncio.wait_for(server.wait(), 30)
            if args.feed == "redis":
                await drop_keys(args.redis, f"bench-desk-{Path(state).name}")
    events = [r for r in results if isinstance(r, int)]
    all_calls = [x for samples in latencies.values() for x in samples]
    return {
        "feed": args.feed,
        "agents": args.agents,
        "sse_clients": args.agents if args.sse else 0,
        "poll_secs": args.poll_secs,
        "seconds": args.seconds,
        "writer": wrote,
        "api_all": percentiles(all_calls),
        **{f"api_{kind}": percentiles(samples) for kind, samples in latencies.items()},
        "sse_events_per_client": {"min": min(events, default=0), "max": max(events, default=0)},
        "errors": len(errors),
        "error_kinds": sorted(set(errors))[:10],
        "machine": f"{platform.machine()}, {platform.python_version()}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=("drive", "serve", "write"), default="drive")
    parser.add_argument("--feed", choices=("sqlite", "redis"), default="sqlite")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--poll-secs", type=float, default=1.0)
    parser.add_argument("--no-sse", dest="sse", action="store_false", help="no live streams")
    parser.add_argument("--state", default="")
    parser.add_argument("--out", help="also write the result JSON here")
    args = parser.parse_args()
    if args.role == "serve":
        profile = os.environ.get("BENCH_PROFILE")  # a path: cProfile the desk process
        if profile:
            import cProfile

            cProfile.runctx("asyncio.run(serve(args))", globals(), locals(), profile)
        else:
            asyncio.run(serve(args))
    elif args.role == "write":
        asyncio.run(write(args))
    else:
        result = asyncio.run(drive(args))
        text = json.dumps(result, indent=2, ensure_ascii=False)
        print(text)
        if args.out:
            Path(args.out).write_text(text + "\n", encoding="utf-8")
        merged = json.loads(RESULTS.read_text("utf-8")) if RESULTS.exists() else {}
        merged[args.feed] = result
        RESULTS.write_text(json.dumps(merged, indent=2, ensure_ascii=False) + "\n", "utf-8")


if __name__ == "__main__":
    main()
