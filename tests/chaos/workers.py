"""Worker roles as separate OS processes, started the way the systemd unit starts
them (`feedback-ingest run --roles ROLE --config FILE`, secrets and per-role settings
in the environment), each in a session of its own so `kill -9` takes the role with
its classification pool, as the cgroup kill of a crashed unit does.

A role that exits without being told to is restarted after `restart_secs` (systemd's
Restart=on-failure) and counted as a crash: the harness fails on any."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Crash:
    role: str
    code: int
    at_secs: float
    log_tail: str


@dataclass
class RoleProcess:
    role: str
    config: Path
    env: dict[str, str]
    log_dir: Path
    restart_secs: float = 1.0
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    kills: int = 0
    crashes: list[Crash] = field(default_factory=list)
    _expected_exit: bool = False
    _watchers: set[asyncio.Task[None]] = field(default_factory=set)
    _t0: float = field(default_factory=time.monotonic)
    _started_at: float = 0.0

    def up_for_secs(self) -> float:
        return time.monotonic() - self._started_at

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.role.replace(',', '+')}.log"

    def argv(self) -> list[str]:
        roles = self.role
        return [
            sys.executable,
            "-m",
            "ingest.cli",
            "run",
            "--roles",
            roles,
            "--config",
            str(self.config),
        ]

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            log.write(f"--- start #{self.starts + 1} at {time.time():.3f}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                self.argv(),
                env=self.env,
                cwd=self.env.get("FEEDBACK_RUNTIME__STATE_DIR"),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.proc = proc
        self._started_at = time.monotonic()
        self.starts += 1
        self._expected_exit = False
        self._watchers.add(asyncio.create_task(self._watch(proc), name=f"watch:{self.role}"))

    async def _watch(self, proc: subprocess.Popen[bytes]) -> None:
        """Restart the role when it dies on its own (a crash), as systemd would."""
        code = await asyncio.to_thread(proc.wait)
        if self._expected_exit or proc is not self.proc:
            return
        self.crashes.append(Crash(self.role, code, time.monotonic() - self._t0, self._tail()))
        await asyncio.sleep(self.restart_secs)
        if not self._expected_exit and proc is self.proc:
            self.start()

    def _tail(self) -> str:
        try:
            return self.log_path.read_bytes()[-3000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def _signal_group(self, sig: int) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    async def kill9(self) -> None:
        """`kill -9` of the role and its pool processes; it stays down until `start()`."""
        self._expected_exit = True
        self._signal_group(signal.SIGKILL)
        if self.proc is not None:
            await asyncio.to_thread(self.proc.wait)
        self.kills += 1

    async def stop(self, timeout_secs: float = 60.0) -> int | None:
        """SIGTERM (drain) and wait; SIGKILL after `timeout_secs` (TimeoutStopSec)."""
        self._expected_exit = True
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return None if proc is None else proc.returncode
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.to_thread(proc.wait, timeout_secs)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            code = await asyncio.to_thread(proc.wait)
        self._signal_group(signal.SIGKILL)  # pool processes left behind, if any
        return code

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None
