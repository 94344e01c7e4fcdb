"""Memory of each worker role at idle and under load (resident set size, the role's
process plus its classification pool children), against the real services.

    python bench/memory.py [--events 3000]

Each role runs as its own `feedback-ingest run --roles <role>` process, as systemd
runs it. Idle = after start-up settles; load = the peak while `--events` events
flow from feedback.ingress to the feed and the store. Baseline for comparison in the
same run: a bare `python -c "import ingest.cli"` process.
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

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.pipeline import events, make_vhost
from ingest.bus.base import INGRESS, OutMessage, Topology
from ingest.codec import encode_event
from ingest.runtime import components
from ingest.settings import settings_from_dict

RESULTS_DIR = Path(os.environ.get("BENCH_RESULTS_DIR") or Path(__file__).parent / "results")
"""Where the result JSON goes; run_all.py --quick points it elsewhere."""

ROLES = ("processors", "sinks", "desk")


def rss_mb(pid: int) -> float:
    """RSS of `pid` and all its descendants, in MB."""
    total = 0
    stack = [pid]
    while stack:
        current = stack.pop()
        try:
            with open(f"/proc/{current}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        stack += [int(c) for c in children]
    return total / 1024


def write_config(path: Path, amqp: str, redis: str, pg: str, prefix: str, port: int) -> None:
    path.write_text(
        f'[broker]\nurl = "{amqp}"\n[redis]\nurl = "{redis}"\nprefix = "{prefix}"\n'
        f'[store]\nurl = "{pg}"\n[http]\nport = {port}\n[log]\nlevel = "warning"\n'
        f'[runtime]\nstate_dir = "{path.parent}"\n'
    )
    path.chmod(0o600)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    vhost = make_vhost()
    amqp = args.amqp.rstrip("/") + f"/{vhost}"
    db = f"feedback_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(args.pg)
    await admin.execute(f'CREATE DATABASE "{db}"')
    pg = args.pg.rsplit("/", 1)[0] + f"/{db}"
    prefix = f"bench-{uuid.uuid4().hex[:6]}"
    procs: dict[str, subprocess.Popen[bytes]] = {}
    result: dict[str, object] = {"benchmark": "memory", "events": args.events}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            baseline = subprocess.Popen(  # noqa: ASYNC220 - nothing else runs yet
                [sys.executable, "-c", "import ingest.cli, time; time.sleep(30)"]
            )
            await asyncio.sleep(3)
            result["baseline_import_mb"] = round(rss_mb(baseline.pid), 1)
            baseline.kill()
            for i, role in enumerate(ROLES):
                config = Path(tmp) / role / "config.toml"
                config.parent.mkdir()
                write_config(config, amqp, args.redis, pg, prefix, 18700 + i)
                procs[role] = subprocess.Popen(  # noqa: ASYNC220 - start-up only
                    [
                        sys.executable,
                        "-m",
                        "ingest.cli",
                        "run",
                        "--roles",
                        role,
                        "--config",
                        str(config),
                    ],
                )
            await asyncio.sleep(12)  # start-up: pool warm-up, migrations
            idle = {role: round(rss_mb(p.pid), 1) for role, p in procs.items()}
            settings = settings_from_dict(
                {"broker": {"url": amqp}, "store": {"url": pg}, "runtime": {"state_dir": tmp}}
            )
            store = components.make_store(settings)
            await store.start()
            peak = dict(idle)
            async with components.make_bus(settings) as bus:
                messages = [
                    OutMessage(
                        Topology.ingress_routing_key(e.channel, "normal"), encode_event(e), {}
                    )
                    for e in events(args.events)
                ]
                for i in range(0, len(messages), 500):
                    await bus.publish_many(INGRESS, messages[i : i + 500])
                started = time.monotonic()
                while await store.count() < args.events and time.monotonic() - started < 300:
                    for role, p in procs.items():
                        peak[role] = max(peak[role], round(rss_mb(p.pid), 1))
                    await asyncio.sleep(0.25)
            await store.close()
            result.update({"idle_mb": idle, "under_load_peak_mb": peak})
    finally:
        for p in procs.values():
            p.terminate()
        for p in procs.values():
            p.wait(timeout=60)
        await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        await admin.close()
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], check=False)  # noqa: ASYNC221 - once, at exit
    result.update({"cores": os.cpu_count(), "machine": platform.platform()})
    print(f"bare import of the worker: {result['baseline_import_mb']} MB")
    for role in ROLES:
        print(f"{role:11} idle {idle[role]:7.1f} MB   under load (peak) {peak[role]:7.1f} MB")
    out = RESULTS_DIR / "memory.json"
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
