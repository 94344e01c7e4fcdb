"""Private RabbitMQ, Redis and PostgreSQL instances for one chaos run.

Never the machine's shared servers: each instance lives in the run's temporary
directory on free ports, so restarting it (the fault) disturbs nobody else. Every
blocking step runs in a thread, so the harness's event loop (TCP proxy, generator,
scheduler) keeps running while a server restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

PG_BIN_DIRS = ("/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin")
RABBIT_BIN_DIRS = ("/usr/lib/rabbitmq/bin",)
"""Debian's /usr/sbin/rabbitmq-server re-runs itself as the `rabbitmq` user with the
system node's settings; the scripts here take our environment as given."""


class MissingTool(RuntimeError):
    """A server binary is not installed (a skip locally, a failure in CI)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_tool(name: str, dirs: tuple[str, ...] = ()) -> str:
    for folder in dirs:
        candidate = Path(folder) / name
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise MissingTool(f"{name} is not installed")
    return found


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


async def _wait_port(port: int, timeout_secs: float, what: str, closed: bool = False) -> None:
    deadline = time.monotonic() + timeout_secs
    while await asyncio.to_thread(_port_open, port) == closed:
        if time.monotonic() > deadline:
            state = "close" if closed else "open"
            raise TimeoutError(f"{what}: port {port} did not {state} within {timeout_secs}s")
        await asyncio.sleep(0.1)


def _run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, capture_output=True, check=False, timeout=120, **kwargs)  # type: ignore[call-overload,no-any-return]


class PrivateRedis:
    """`redis-server` with AOF on (`appendfsync everysec`, Redis's default), RDB off."""

    name = "redis"

    def __init__(self, root: Path) -> None:
        self.binary = find_tool("redis-server")
        self.dir = root / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        log = (self.dir / "redis.log").open("ab")
        # Popen only forks and returns; the server lives on under its handle.
        self.proc = subprocess.Popen(  # noqa: ASYNC220
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--dir",
                str(self.dir),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        await _wait_port(self.port, 30, "redis start")
        await self._wait_loaded()

    async def _wait_loaded(self) -> None:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(self.url)
        try:
            for _ in range(300):
                try:
                    await client.ping()
                    return
                except Exception:  # LOADING the AOF, or not accepting yet
                    await asyncio.sleep(0.1)
        finally:
            await client.aclose()

    async def stop(self) -> None:
        """SIGTERM: Redis fsyncs the AOF and exits (what `systemctl restart` does)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait, 10)

    async def close(self) -> None:
        await self.stop()


class PrivatePostgres:
    """A cluster made by `initdb` in the run's directory, owned by `postgres` when the
    harness runs as root (PostgreSQL refuses to run as root)."""

    name = "postgres"

    def __init__(self, root: Path) -> None:
        self.bin = Path(find_tool("initdb", PG_BIN_DIRS)).parent
        self.dir = root / "pg"
        self.data = self.dir / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._as_postgres = os.geteuid() == 0

    def _cmd(self, *argv: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *argv] if self._as_postgres else list(argv)

    def _init(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if self._as_postgres:
            for parent in (self.dir.parent, self.dir):
                parent.chmod(0o755)  # postgres must reach its data directory
            shutil.chown(self.dir, "postgres", "postgres")
        done = _run(
            self._cmd(
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            )
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr.decode()[-2000:]}")

    def _pg_ctl(self, *args: str) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} "
            "-c max_connections=100 -c shared_buffers=64MB"
        )
        argv = self._cmd(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.dir / "postgres.log"),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            *args,
        )
        done = _run(argv)
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl {args} failed: {done.stderr.decode()[-2000:]}")

    async def start(self) -> None:
        if not self.data.exists():
            await asyncio.to_thread(self._init)
        await asyncio.to_thread(self._pg_ctl, "start")

    async def stop(self) -> None:
        """`-m fast`: active sessions are disconnected mid-transaction (rolled back)."""
        await asyncio.to_thread(self._pg_ctl, "-m", "fast", "stop")

    async def close(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._pg_ctl, "-m", "immediate", "stop")


class PrivateRabbit:
    """A RabbitMQ node of its own: own node name, ports, data, config and cookie (HOME);
    only epmd, the host's port-mapper daemon, is shared."""

    name = "rabbitmq"

    def __init__(self, root: Path) -> None:
        self.server = find_tool("rabbitmq-server", RABBIT_BIN_DIRS)
        self.ctl = find_tool("rabbitmqctl", RABBIT_BIN_DIRS)
        self.dir = root / "rabbit"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.node = f"chaos-{self.port}@localhost"
        self.pid_file = self.dir / "node.pid"
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/"
        (self.dir / "enabled_plugins").write_text("[].\n")
        (self.dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.port}\n"
            "loopback_users = none\n"
            "disk_free_limit.absolute = 50MB\n"
        )
        (self.dir / "rabbitmq-env.conf").write_text("")
        self.env = {
            **os.environ,
            "HOME": str(self.dir),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(self.dir / "rabbitmq-env.conf"),
            "RABBITMQ_PID_FILE": str(self.pid_file),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    async def start(self) -> None:
        done = await asyncio.to_thread(
            _run, [self.server, "-detached"], env=self.env, cwd=self.dir
        )  # its crash dumps (MnesiaCore.*) land in its own directory
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmq-server failed: {done.stderr.decode()[-2000:]}")
        await self._wait_amqp(120)

    async def _wait_amqp(self, timeout_secs: float) -> None:
        """Ready = an AMQP connection opens (the port opens a moment before the broker
        accepts logins)."""
        import aio_pika
        from aio_pika.connection import make_url

        deadline = time.monotonic() + timeout_secs
        while True:
            # not aio_pika.connect(): it drops a failed connection unclosed, and its
            # __del__ then schedules close() wherever the garbage collector runs ("coroutine
            # 'Connection.close' was never awaited" in a thread without a loop)
            connection = aio_pika.Connection(make_url(self.url))
            try:
                await connection.connect(timeout=3)
                return
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"rabbitmq did not start: {exc!r}") from exc
            finally:
                await connection.close()
            await asyncio.sleep(0.3)

    def _pid(self) -> int | None:
        """The node's VM pid, only while that process is really our node (a stale pid
        file must never make us signal some other process)."""
        try:
            pid = int(self.pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        # the VM's command line names its HOME (`-home <dir>`), which is ours alone; the
        # node name is not on it (it rides in the environment)
        return pid if b"\0" + str(self.dir).encode() + b"\0" in cmdline else None

    async def stop(self) -> None:
        """`rabbitmqctl stop <pidfile>`: a clean shutdown, waiting for the VM to exit."""
        pid = self._pid()
        done = await asyncio.to_thread(
            _run, [self.ctl, "-n", self.node, "stop", str(self.pid_file)], env=self.env
        )
        if done.returncode != 0 and self._pid() is not None and pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        await _wait_port(self.port, 30, "rabbitmq stop", closed=True)
        for _ in range(100):  # the name must be free in epmd before the next start
            if self._pid() is None:
                break
            await asyncio.sleep(0.1)

    async def close(self) -> None:
        if self._pid() is not None:
            with contextlib.suppress(Exception):
                await self.stop()
            pid = self._pid()
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
