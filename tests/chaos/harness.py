"""One chaos run: private servers, worker roles as processes, the generator, the fault
scheduler, then the accounting. Everything it starts is torn down at the end, even
when the run fails or is interrupted."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import random
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.chaos.accounting import Observed, Report, account, observe_embedded, observe_services
from tests.chaos.inputs import (
    CALLS,
    CALLS_SECRET,
    CALLS_SOURCE,
    DROP,
    DROP_SOURCE,
    WECHAT,
    Generator,
    Sent,
    make_plan,
)
from tests.chaos.proxy import CuttableProxy
from tests.chaos.services import PrivatePostgres, PrivateRabbit, PrivateRedis, free_port
from tests.chaos.workers import RoleProcess
from tests.wechat_helpers import OA_APP_ID, OA_KEY, OA_TOKEN

SERVICE_FAULTS = (
    "kill_connectors",
    "kill_processors",
    "kill_sinks",
    "restart_rabbitmq",
    "restart_redis",
    "restart_postgres",
    "drop_tcp",
)
EMBEDDED_FAULTS = ("disk_full", "restart_worker")
ROLES = ("connectors", "processors", "sinks")
REDIS_PREFIX = "chaos"
STARTUP_SECS = 5.0
"""A role is given this long after a (re)start before the final SIGTERM."""


@dataclass
class Options:
    events: int = 5000
    seed: int | None = None
    embedded: bool = False
    rate_per_sec: float = 150.0
    fault_gap_secs: tuple[float, float] = (3.0, 8.0)
    settle_timeout_secs: float = 240.0
    keep: bool = False
    """Leave the run's directory (logs, data) in place for a post-mortem."""
    tmpfs_mb: int = 256
    faults: tuple[str, ...] = ()
    """Only these fault kinds (empty: every kind of the mode); to chase one failure."""
    log: Callable[[str], None] = print


@dataclass
class Result:
    options: dict[str, Any]
    seed: int
    mode: str
    report: Report
    faults: Counter[str] = field(default_factory=Counter)
    fault_log: list[tuple[float, str, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)
    duration_secs: float = 0.0
    feed_secs: float = 0.0
    drain_secs: float = 0.0
    sent: Sent | None = None

    @property
    def ok(self) -> bool:
        return self.report.ok and not self.crashes

    def as_dict(self) -> dict[str, Any]:
        sent = self.sent or Sent()
        return {
            "mode": self.mode,
            "seed": self.seed,
            "options": self.options,
            "ok": self.ok,
            "duration_secs": round(self.duration_secs, 1),
            "feed_secs": round(self.feed_secs, 1),
            "drain_secs": round(self.drain_secs, 1),
            "events_sent": len(sent.ids),
            "malformed_sent": len(sent.bad),
            "file_lines": sent.file_lines,
            "files": sent.files,
            "faults": dict(self.faults),
            "fault_log": [
                {"at_secs": round(t, 1), "fault": k, "took_secs": round(d, 2)}
                for t, k, d in self.fault_log
            ],
            "webhook_answers": dict(sent.answers),
            "webhook_retries": dict(sent.retries),
            "webhook_max_secs_to_success": {k: round(v, 2) for k, v in sent.max_retry_secs.items()},
            "crashes": self.crashes,
            "notes": self.notes,
            "table": self.report.as_dict(),
            "examples": self.report.examples,
        }


def worker_config(inbox: Path, *, http_port: int, embedded: bool) -> str:
    """The TOML operators write; secrets come from the environment (secrets.env)."""
    drain = 10 if not embedded else 30
    return f"""
[http]
host = "127.0.0.1"
port = {http_port}
[runtime]
drain_timeout_secs = {drain}
retry_initial_secs = 0.2
retry_max_secs = 3.0
[classify]
workers = 1
[log]
level = "info"
[connectors.{DROP}]
type = "file_drop"
path = "{inbox}"
id_column = "id"
source = "{DROP_SOURCE}"
settle_secs = 0.0
poll_interval_secs = 0.5
[connectors.{WECHAT}]
type = "wechat"
app_id = "{OA_APP_ID}"
mode = "safe"
[connectors.{CALLS}]
type = "transcripts"
source = "{CALLS_SOURCE}"
"""


def secrets_env() -> dict[str, str]:
    return {
        f"FEEDBACK_CONNECTORS__{WECHAT.upper()}__TOKEN": OA_TOKEN,
        f"FEEDBACK_CONNECTORS__{WECHAT.upper()}__ENCODING_AES_KEY": OA_KEY,
        f"FEEDBACK_CONNECTORS__{CALLS.upper()}__SECRET": CALLS_SECRET,
        "FEEDBACK_CLASSIFY__CUSTOMER_REF_KEY": "chaos-customer-ref-key",
    }


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEEDBACK_")}
    if os.environ.get("FEEDBACK_LOG_COPY"):  # the test run's log scan (tests/conftest.py)
        env["FEEDBACK_LOG_COPY"] = os.environ["FEEDBACK_LOG_COPY"]
    if os.environ.get("FEEDBACK_MODEL_CACHE"):
        env["FEEDBACK_MODEL_CACHE"] = os.environ["FEEDBACK_MODEL_CACHE"]
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Run:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.seed = options.seed if options.seed is not None else random.randrange(2**31)
        self.rng = random.Random(self.seed)
        self.log = options.log
        self.root = Path(tempfile.mkdtemp(prefix="feedback-chaos-"))
        self.inbox = self.root / "inbox"
        self.inbox.mkdir()
        self.http_port = free_port()
        self.sent = Sent()
        self.roles: dict[str, RoleProcess] = {}
        self.faults: Counter[str] = Counter()
        self.fault_log: list[tuple[float, str, float]] = []
        self.notes: list[str] = []
        self.t0 = time.monotonic()
        self.cleanups: list[Callable[[], Awaitable[None]]] = []
        self.state_dir: Path | None = None
        self.tmpfs: Path | None = None

    # --- set-up ------------------------------------------------------------------

    async def _start_services(self) -> dict[str, str]:
        rabbit, redis, pg = (
            PrivateRabbit(self.root),
            PrivateRedis(self.root),
            PrivatePostgres(self.root),
        )
        self.rabbit, self.redis, self.pg = rabbit, redis, pg
        for service in (redis, pg, rabbit):
            self.cleanups.append(service.close)
        started = time.monotonic()
        await asyncio.gather(redis.start(), pg.start(), rabbit.start())
        self.log(
            f"private servers up in {time.monotonic() - started:.1f}s: rabbitmq :{rabbit.port}, "
            f"redis :{redis.port}, postgres :{pg.port}"
        )
        self.proxy = CuttableProxy(rabbit.port)
        await self.proxy.start()
        self.cleanups.append(self.proxy.close)
        return {
            "FEEDBACK_BROKER__URL": f"amqp://guest:guest@127.0.0.1:{self.proxy.port}/",
            "FEEDBACK_REDIS__URL": redis.url,
            "FEEDBACK_REDIS__PREFIX": REDIS_PREFIX,
            "FEEDBACK_STORE__URL": pg.url,
        }

    def _mount_tmpfs(self) -> Path:
        """The embedded state dir on a size-limited tmpfs, so `disk_full` is a real ENOSPC."""
        target = self.root / "state"
        target.mkdir()
        size = f"size={self.options.tmpfs_mb}m"
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", size, "tmpfs", str(target)],
            capture_output=True,
            check=False,
        )
        if done.returncode == 0:
            self.tmpfs = target

            async def umount() -> None:
                await asyncio.to_thread(
                    subprocess.run, ["umount", "-l", str(target)], capture_output=True, check=False
                )

            self.cleanups.append(umount)
        else:
            self.notes.append(
                "disk_full not injected: cannot mount a tmpfs here "
                f"({done.stderr.decode().strip()[:120]}); the state dir is a plain folder"
            )
        return target

    def _write_config(self, embedded: bool) -> Path:
        config = self.root / "config.toml"
        config.write_text(worker_config(self.inbox, http_port=0, embedded=embedded))
        config.chmod(0o600)
        return config

    def _role(self, role: str, config: Path, env: dict[str, str], state: Path) -> RoleProcess:
        state.mkdir(parents=True, exist_ok=True)
        port = self.http_port if "connectors" in role else 0
        full_env = {
            **base_env(),
            **env,
            **secrets_env(),
            "FEEDBACK_RUNTIME__STATE_DIR": str(state),
            "FEEDBACK_HTTP__PORT": str(port),
        }
        logs = self.root / "logs"
        logs.mkdir(exist_ok=True)
        proc = RoleProcess(role, config, full_env, logs)
        self.roles[role] = proc
        return proc

    async def _wait_http(self) -> None:
        import aiohttp

        deadline = time.monotonic() + 90
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                try:
                    async with session.get(f"http://127.0.0.1:{self.http_port}/healthz") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.3)
        raise TimeoutError("the connectors' web server did not come up")

    # --- faults ------------------------------------------------------------------

    async def _fault(self, kind: str) -> None:
        started = time.monotonic()
        down = self.rng.uniform(0.5, 3.0)
        if kind.startswith("kill_"):
            role = self.roles[kind.removeprefix("kill_")]
            await role.kill9()
            await asyncio.sleep(down)
            role.start()
        elif kind == "drop_tcp":
            cut = self.proxy.cut()
            kind_note = f"{cut} links"
            self.log(f"  drop_tcp: {kind_note}")
        elif kind.startswith("restart_") and kind != "restart_worker":
            service = {"rabbitmq": self.rabbit, "redis": self.redis, "postgres": self.pg}[
                kind.removeprefix("restart_")
            ]
            await service.stop()
            await asyncio.sleep(down)
            await service.start()
        elif kind == "restart_worker":
            worker = self.roles["connectors,processors,sinks"]
            await worker.stop()
            await asyncio.sleep(down)
            worker.start()
        elif kind == "disk_full":
            await self._fill_disk(down + 2.0)
        else:
            raise ValueError(kind)
        took = time.monotonic() - started
        self.faults[kind] += 1
        self.fault_log.append((started - self.t0, kind, took))
        self.log(f"[{started - self.t0:7.1f}s] fault {kind} ({took:.1f}s)")

    async def _fill_disk(self, hold_secs: float) -> None:
        assert self.tmpfs is not None
        filler = self.tmpfs / "filler.bin"

        def fill() -> int:
            written = 0
            chunk = b"\0" * (1 << 20)
            with filler.open("wb") as f:
                try:
                    while True:
                        f.write(chunk)
                        f.flush()
                        written += len(chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                # the last partial megabyte too
                try:
                    while True:
                        f.write(b"\0" * 4096)
                        f.flush()
                except OSError:
                    pass
            return written

        with contextlib.suppress(OSError):
            await asyncio.to_thread(fill)
        await asyncio.sleep(hold_secs)
        filler.unlink(missing_ok=True)

    async def _scheduler(self, kinds: tuple[str, ...], generating: asyncio.Event) -> None:
        """Faults one after another at random (seeded) gaps, each kind once per round in
        a shuffled order, until the generator is done and at least one round is."""
        low, high = self.options.fault_gap_secs
        while True:
            order = list(kinds)
            self.rng.shuffle(order)
            for kind in order:
                await asyncio.sleep(self.rng.uniform(low, high))
                await self._fault(kind)
            if generating.is_set():
                return

    # --- settling ----------------------------------------------------------------

    async def _counts_services(self) -> tuple[int, int, int] | None:
        import asyncpg
        import redis.asyncio as aioredis

        from ingest.bus.amqp import AmqpBus
        from ingest.bus.base import Q_PROCESS, Q_PROCESS_URGENT, Q_SINK_FEED, Q_SINK_STORE

        try:
            conn = await asyncpg.connect(self.pg.url, timeout=5)
            try:
                stored = int(await conn.fetchval("SELECT count(*) FROM feedback_records"))
            finally:
                await conn.close()
            client = aioredis.Redis.from_url(self.redis.url, socket_timeout=5)
            try:
                in_feed = int(await client.zcard(f"{REDIS_PREFIX}:feed"))
            finally:
                await client.aclose()
            async with AmqpBus(self.rabbit.url, timeout_secs=10) as bus:
                depths = await bus.queue_depths()
            queued = sum(
                depths[q] for q in (Q_PROCESS, Q_PROCESS_URGENT, Q_SINK_FEED, Q_SINK_STORE)
            )
            return stored, in_feed, queued
        except Exception:
            return None

    def _counts_embedded(self) -> tuple[int, int, int] | None:
        import sqlite3

        assert self.state_dir is not None
        try:
            with sqlite3.connect(self.state_dir / "feedback.db", timeout=5) as db:
                stored = db.execute("SELECT count(*) FROM feedback_records").fetchone()[0]
            with sqlite3.connect(self.state_dir / "feed.db", timeout=5) as db:
                in_feed = db.execute("SELECT count(*) FROM feed_items").fetchone()[0]
            return stored, in_feed, 0
        except sqlite3.Error:
            return None

    async def _settle(self) -> None:
        """Until every file is read, every expected record is in store and feed and the
        work queues are empty; or nothing moved for a while (something is lost)."""
        expected = len(self.sent.ids)
        deadline = time.monotonic() + self.options.settle_timeout_secs
        last: tuple[int, int, int] | None = None
        unchanged_since = logged_at = time.monotonic()
        while time.monotonic() < deadline:
            if self.options.embedded:
                counts = await asyncio.to_thread(self._counts_embedded)
            else:
                counts = await self._counts_services()
            pending_files = [p for p in self.inbox.glob("*.jsonl")]
            if counts is not None:
                stored, in_feed, queued = counts
                if counts != last:
                    last, unchanged_since = counts, time.monotonic()
                if time.monotonic() - logged_at >= 10:
                    logged_at = time.monotonic()
                    at = logged_at - self.t0
                    self.log(f"[{at:7.1f}s] settling: (stored, in feed, queued) = {counts}")
                idle = not pending_files and queued == 0
                if idle and stored >= expected and in_feed >= expected:
                    return
                if idle and time.monotonic() - unchanged_since > 30:
                    self.notes.append(f"settling gave up: nothing moved for 30s at {counts}")
                    return
            await asyncio.sleep(1.0)
        self.notes.append(f"settling timed out after {self.options.settle_timeout_secs}s at {last}")

    # --- the run -----------------------------------------------------------------

    async def run(self) -> Result:
        embedded = self.options.embedded
        for noisy in ("aio_pika", "aiormq"):  # our own probes of a broker that is down
            logging.getLogger(noisy).setLevel(logging.CRITICAL)
        self.log(
            f"chaos run: {self.options.events} events, seed {self.seed}, "
            f"{'embedded' if embedded else 'services'} mode, dir {self.root}"
        )
        try:
            if embedded:
                self.state_dir = self._mount_tmpfs()
                config = self._write_config(embedded=True)
                worker = self._role("connectors,processors,sinks", config, {}, self.state_dir)
                worker.start()
                kinds = EMBEDDED_FAULTS if self.tmpfs is not None else ("restart_worker",)
            else:
                env = await self._start_services()
                config = self._write_config(embedded=False)
                for role in ROLES:
                    self._role(role, config, env, self.root / "state" / role).start()
                kinds = SERVICE_FAULTS
            if self.options.faults:
                kinds = tuple(k for k in kinds if k in self.options.faults)
            await self._wait_http()
            self.log(f"workers up at {time.monotonic() - self.t0:.1f}s")
            plan = make_plan(self.options.events, self.rng)
            generator = Generator(
                self.sent,
                self.inbox,
                self.http_port,
                self.options.rate_per_sec,
                self.rng.randrange(2**31),
            )
            feed_started = time.monotonic()
            scheduler = asyncio.create_task(self._scheduler(kinds, generator.done))
            progress = asyncio.create_task(self._progress(generator))
            try:
                await generator.run(plan)
                feed_secs = time.monotonic() - feed_started
                self.log(
                    f"generator done: {len(self.sent.ids)} events, {len(self.sent.bad)} "
                    f"malformed in {feed_secs:.1f}s; waiting for the last faults"
                )
                await scheduler
            finally:
                scheduler.cancel()
                progress.cancel()
            drain_started = time.monotonic()
            # a role killed by the last fault is up again; let everything finish
            await self._settle()
            drain_secs = time.monotonic() - drain_started
            # A role the last fault restarted may still be starting up, before its signal
            # handlers exist (a SIGTERM then kills it: -15, which is not what is tested).
            for role in self.roles.values():
                await asyncio.sleep(max(0.0, STARTUP_SECS - role.up_for_secs()))
            codes = {name: await role.stop() for name, role in self.roles.items()}
            self.log(f"workers stopped (SIGTERM): {codes}")
            seen = await self._observe()
            report = account(self.sent, seen)
            crashes = [
                f"{c.role} exited {c.code} at {c.at_secs:.0f}s: ...{c.log_tail[-600:]}"
                for role in self.roles.values()
                for c in role.crashes
            ]
            for name, code in codes.items():
                if code not in (0, None):
                    crashes.append(f"{name} exited {code} on SIGTERM")
            return Result(
                options={k: v for k, v in vars(self.options).items() if k != "log"},
                seed=self.seed,
                mode="embedded" if embedded else "services",
                report=report,
                faults=self.faults,
                fault_log=self.fault_log,
                notes=self.notes,
                crashes=crashes,
                duration_secs=time.monotonic() - self.t0,
                feed_secs=feed_secs,
                drain_secs=drain_secs,
                sent=self.sent,
            )
        finally:
            await self.teardown()

    async def _progress(self, generator: Generator) -> None:
        while True:
            await asyncio.sleep(10)
            counts = (
                await asyncio.to_thread(self._counts_embedded)
                if self.options.embedded
                else await self._counts_services()
            )
            self.log(
                f"[{time.monotonic() - self.t0:7.1f}s] fed {generator.fed}, "
                f"(stored, in feed, queued) = {counts}"
            )

    async def _observe(self) -> Observed:
        if self.options.embedded:
            assert self.state_dir is not None
            return await asyncio.to_thread(observe_embedded, self.state_dir)
        return await observe_services(self.pg.url, self.redis.url, REDIS_PREFIX, self.rabbit.url)

    async def teardown(self) -> None:
        for role in self.roles.values():
            with contextlib.suppress(Exception):
                if role.alive():
                    await role.kill9()
        for cleanup in reversed(self.cleanups):
            with contextlib.suppress(Exception):
                await cleanup()
        if self.options.keep:
            self.log(f"kept {self.root}")
        else:
            shutil.rmtree(self.root, ignore_errors=True)


async def run_chaos(options: Options) -> Result:
    return await Run(options).run()
