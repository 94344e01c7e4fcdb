"""The issue's "done when": the worker started the way the systemd unit starts it (its
ExecStart for each instance, its Environment= lines, the secrets in an EnvironmentFile,
a minimal service environment) against real RabbitMQ, Redis and PostgreSQL, stopped
with SIGTERM under load (as `systemctl stop` does with KillMode=mixed), exits 0 within
TimeoutStopSec with whatever it had not finished back in the queues; started again, it
finishes every message: none lost, none twice. The embedded variant of the SIGTERM test
is tests/integration/test_operations.py; the processor-kill variant is in
tests/integration/test_pipeline.py, whose fixtures this reuses."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import orjson
import pytest

from ingest.bus.amqp import AmqpBus
from ingest.bus.base import (
    H_CHANNEL,
    H_ID,
    INGRESS,
    Q_DEAD,
    Q_PROCESS,
    Q_PROCESS_URGENT,
    Q_SINK_FEED,
    Q_SINK_STORE,
    OutMessage,
)
from ingest.log import COPY_ENV
from ingest.settings import Settings, settings_from_dict
from tests.deploy.helpers import (
    console_script,
    exec_start,
    expand_specifiers,
    read_environment_file,
    unit_directives,
)
from tests.integration.test_pipeline import count_everything, ingested_audit_rows
from tests.pipeline_helpers import GOOD_TEXTS, wait_until

COUNT = 1500
WORK_QUEUES = (Q_PROCESS_URGENT, Q_PROCESS, Q_SINK_FEED, Q_SINK_STORE)


class UnitHost:
    """What systemd does for `feedback-ingest@ROLE.service`, with the unit's fixed paths
    (/etc, /var/lib, /var/cache) mapped into a temporary root."""

    def __init__(self, root: Path, secrets: dict[str, str], config: str) -> None:
        self.root = root
        self.secrets = secrets
        self.paths = {
            "/etc/feedback-ingest": root / "etc",
            "/var/lib/feedback-ingest": root / "state",
            # the sentiment model cache is rebuilt when missing; share the test user's
            "/var/cache/feedback-ingest": Path(
                os.environ.get("FEEDBACK_MODEL_CACHE") or Path.home() / ".cache" / "feedback-ingest"
            ),
        }
        for path in self.paths.values():
            path.mkdir(parents=True, exist_ok=True)
        secrets_file = self.paths["/etc/feedback-ingest"] / "secrets.env"
        secrets_file.write_text(
            "# as deploy/systemd/env/secrets.env.example\n"
            + "".join(f"{k}={v}\n" for k, v in secrets.items()),
            encoding="utf-8",
        )
        secrets_file.chmod(0o600)
        config_file = self.paths["/etc/feedback-ingest"] / "config.toml"
        config_file.write_text(config, encoding="utf-8")
        config_file.chmod(0o600)

    def host_path(self, value: str) -> str:
        for unit_path, local in self.paths.items():
            value = value.replace(unit_path, str(local))
        return value

    def environment(self, role: str) -> dict[str, str]:
        directives = unit_directives()
        env = {  # a service's environment starts nearly empty
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(self.paths["/var/lib/feedback-ingest"]),
        }
        if os.environ.get(COPY_ENV):  # the test run's log scan (tests/conftest.py)
            env[COPY_ENV] = os.environ[COPY_ENV]
        for line in directives.get("Service.Environment", []):
            key, _, value = expand_specifiers(line, role).partition("=")
            env[key] = self.host_path(value)
        for name in directives["Service.EnvironmentFile"]:
            optional = name.startswith("-")
            path = Path(self.host_path(expand_specifiers(name.lstrip("-"), role)))
            if path.exists():
                env.update(read_environment_file(path))
            else:
                assert optional, f"EnvironmentFile {name} is missing"
        Path(env["FEEDBACK_RUNTIME__STATE_DIR"]).mkdir(parents=True, exist_ok=True)
        return env

    def start(self, role: str, **extra_env: str) -> subprocess.Popen[bytes]:
        argv = [self.host_path(a) for a in exec_start(role)]
        argv[0] = console_script()
        return subprocess.Popen(
            argv,
            env={**self.environment(role), **extra_env},
            cwd=self.host_path(f"/var/lib/feedback-ingest/{role}"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )


def stop_timeout_secs() -> float:
    return float(unit_directives()["Service.TimeoutStopSec"][-1])


def event_message(i: int) -> OutMessage:
    event_id = f"sd-{i:05d}"
    lane = "urgent" if i % 10 == 0 else "normal"
    body = orjson.dumps(
        {
            "schema": 1,
            "event": {
                "id": event_id,
                "channel": "email",
                "text": f"{GOOD_TEXTS[i % len(GOOD_TEXTS)]}（{i}）",
            },
        }
    )
    return OutMessage(f"email.{lane}", body, {H_ID: event_id, H_CHANNEL: "email"})


@pytest.fixture
def unit_host(
    tmp_path: Path, amqp_vhost_url: str, redis_url: str, pg_database: str, unique: str
) -> UnitHost:
    secrets = {
        "FEEDBACK_BROKER__URL": amqp_vhost_url,
        "FEEDBACK_REDIS__URL": redis_url,
        "FEEDBACK_STORE__URL": pg_database,
        "FEEDBACK_CLASSIFY__CUSTOMER_REF_KEY": "test-key",
    }
    config = (
        f'[redis]\nprefix = "test-{unique}"\n'
        "[http]\nport = 0\n"
        "[runtime]\ndrain_timeout_secs = 10\n"
        "[classify]\nworkers = 1\n"
        '[log]\nlevel = "warning"\n'
    )
    return UnitHost(tmp_path, secrets, config)


def _settings(host: UnitHost, redis_prefix: str) -> Settings:
    """The settings the worker's instances run with, for counting what they did."""
    return settings_from_dict(
        {
            "broker": {"url": host.secrets["FEEDBACK_BROKER__URL"]},
            "redis": {"url": host.secrets["FEEDBACK_REDIS__URL"], "prefix": redis_prefix},
            "store": {"url": host.secrets["FEEDBACK_STORE__URL"]},
            "runtime": {"state_dir": str(host.root / "counting")},
        }
    )


async def _stop(procs: dict[str, subprocess.Popen[bytes]]) -> dict[str, int]:
    for proc in procs.values():
        proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + stop_timeout_secs()
    codes = {}
    for role, proc in procs.items():
        remaining = max(0.1, deadline - time.monotonic())
        try:
            codes[role] = await asyncio.to_thread(proc.wait, remaining)
        except subprocess.TimeoutExpired:
            proc.kill()  # what systemd does after TimeoutStopSec
            codes[role] = -9
    return codes


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_sigterm_under_load_returns_unfinished_work_and_loses_nothing(
    unit_host: UnitHost, unique: str
) -> None:
    settings = _settings(unit_host, f"test-{unique}")
    async with AmqpBus(unit_host.secrets["FEEDBACK_BROKER__URL"], timeout_secs=10) as bus:
        for queue in (*WORK_QUEUES, Q_DEAD):  # the session vhost is shared: start clean
            while (old := await bus.get(queue)) is not None:
                await old.ack()
        messages = [event_message(i) for i in range(COUNT)]
        for start in range(0, COUNT, 250):
            await bus.publish_many(INGRESS, messages[start : start + 250])

        procs = {role: unit_host.start(role) for role in ("processors", "sinks")}
        try:

            async def under_way() -> bool:
                return (await count_everything(settings))[0] >= COUNT // 10

            await wait_until(under_way, 120, "the first records to be stored")
            codes = await _stop(procs)
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.kill()
        errors = {r: p.stderr.read().decode()[-2000:] for r, p in procs.items() if p.stderr}
        assert codes == {"processors": 0, "sinks": 0}, errors

        stored_at_stop = (await count_everything(settings))[0]
        depths = await bus.queue_depths()
        assert stored_at_stop < COUNT, "the pipeline finished before SIGTERM: no load"
        assert sum(depths[q] for q in WORK_QUEUES) > 0, "unfinished work must be in a queue"
        assert depths[Q_DEAD] == 0, "a shutdown must never park a message"

        procs = {role: unit_host.start(role) for role in ("processors", "sinks")}
        try:

            async def all_done() -> bool:
                stored, in_feed, _ = await count_everything(settings)
                return stored == COUNT and in_feed == COUNT

            await wait_until(all_done, 180, f"{COUNT} records in store and feed")
            assert await ingested_audit_rows(settings.store_url) == COUNT  # none twice
            depths = await bus.queue_depths()
            assert all(depths[q] == 0 for q in (*WORK_QUEUES, Q_DEAD)), depths
        finally:
            codes = await _stop(procs)
        assert codes == {"processors": 0, "sinks": 0}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.timeout(60)
async def test_worker_tells_systemd_when_it_is_ready_and_when_it_stops(tmp_path: Path) -> None:
    """Type=notify: without READY=1 systemd kills the unit after TimeoutStartSec."""
    host = UnitHost(tmp_path, {}, f"[http]\nport = {_free_port()}\n[classify]\nworkers = 1\n")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(10)
    proc = host.start("processors", NOTIFY_SOCKET=str(tmp_path / "notify"))
    try:
        states = []
        while b"READY=1" not in states:
            states += (await asyncio.to_thread(notify.recv, 256)).split(b"\n")
        proc.send_signal(signal.SIGTERM)
        while b"STOPPING=1" not in states:
            states += (await asyncio.to_thread(notify.recv, 256)).split(b"\n")
        assert await asyncio.to_thread(proc.wait, 30) == 0
    finally:
        notify.close()
        if proc.poll() is None:
            proc.kill()
