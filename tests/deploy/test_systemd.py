"""deploy/systemd: the templated unit verifies with systemd's own checker, starts the real
CLI for each role, outlasts the drain on stop, and its companions (environment files,
sysusers) are what the worker and systemd accept. sd_notify is exercised over a real
datagram socket."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.cli import build_parser
from ingest.runtime import sdnotify
from ingest.runtime.supervisor import ROLES as WORKER_ROLES
from ingest.settings import RuntimeSettings, load_settings
from tests.deploy.helpers import (
    DEPLOY,
    ROLES,
    UNIT,
    console_script,
    exec_start,
    read_environment_file,
    tool,
    unit_directives,
)

SYSTEMD = DEPLOY / "systemd"
INSTALLED_EXEC = "/opt/feedback-ingest/bin/feedback-ingest"


def _verify(unit_text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze verify` every role's instance of `unit_text`, as an operator
    would after installing: ExecStart points at the installed console script."""
    analyze = tool("systemd-analyze", "apt-get install systemd")
    template = tmp_path / "feedback-ingest@.service"
    template.write_text(unit_text.replace(INSTALLED_EXEC, console_script()), encoding="utf-8")
    instances = []
    for role in ROLES:
        link = tmp_path / f"feedback-ingest@{role}.service"
        link.symlink_to(template.name)
        instances.append(str(link))
    return subprocess.run(
        [analyze, "verify", *instances],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "SYSTEMD_LOG_COLOR": "0"},
    )


def test_unit_passes_systemd_analyze_verify_for_every_role(tmp_path: Path) -> None:
    """No error and no warning (unknown keys and bad values are only warnings)."""
    result = _verify(UNIT.read_text(encoding="utf-8"), tmp_path)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_verify_would_catch_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: a misspelt key is reported."""
    broken = UNIT.read_text(encoding="utf-8").replace("NoNewPrivileges=", "NoNewPrivilege=")
    result = _verify(broken, tmp_path)
    assert "NoNewPrivilege" in result.stderr


@pytest.mark.parametrize("role", ROLES)
def test_exec_start_is_a_real_command_line_of_the_cli(role: str) -> None:
    argv = exec_start(role)
    assert argv[0] == INSTALLED_EXEC
    args = build_parser().parse_args(argv[1:])
    assert args.command == "run" and args.once is False
    assert args.config == "/etc/feedback-ingest/config.toml"
    assert args.roles == role and role in WORKER_ROLES


def test_unit_restarts_on_failure_and_outlasts_the_drain() -> None:
    """TimeoutStopSec must cover the worst drain: processors then sinks, each up to
    runtime.drain_timeout_secs; only the worker gets SIGTERM (KillMode=mixed), so the
    classification pool is closed by it, not killed under it."""
    d = unit_directives()
    drain = RuntimeSettings().drain_timeout_secs
    assert float(d["Service.TimeoutStopSec"][-1]) > 2 * drain
    assert d["Service.KillMode"] == ["mixed"]
    assert d["Service.Restart"] == ["on-failure"]
    assert d["Service.Type"] == ["notify"] and int(d["Service.WatchdogSec"][-1]) > 0


def test_unit_runs_unprivileged_and_hardened() -> None:
    d = unit_directives()
    assert d["Service.User"] == ["feedback-ingest"]
    expected = {
        "ProtectSystem": "strict",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "PrivateDevices": "yes",
        "RestrictSUIDSGID": "yes",
        "CapabilityBoundingSet": "",
    }
    for key, value in expected.items():
        assert d[f"Service.{key}"] == [value], key
    writable = " ".join(d["Service.ReadWritePaths"]).split()
    assert "/var/lib/feedback-ingest" in writable
    state_env = [v for v in d["Service.Environment"] if v.startswith("FEEDBACK_RUNTIME__STATE")]
    assert state_env == ["FEEDBACK_RUNTIME__STATE_DIR=/var/lib/feedback-ingest/%i"]
    assert d["Service.StateDirectory"] == ["feedback-ingest feedback-ingest/%i"]


def test_environment_files_are_the_ones_shipped_and_the_worker_accepts_them(
    tmp_path: Path,
) -> None:
    """The secrets example and every role's file only set keys the settings know, and
    roles on one host get distinct HTTP ports."""
    files = unit_directives()["Service.EnvironmentFile"]
    assert files == ["/etc/feedback-ingest/secrets.env", "-/etc/feedback-ingest/%i.env"]
    secrets = read_environment_file(SYSTEMD / "env" / "secrets.env.example")
    assert {"FEEDBACK_BROKER__URL", "FEEDBACK_STORE__URL"} <= set(secrets)
    ports = set()
    for role in ROLES:
        env = {**secrets, **read_environment_file(SYSTEMD / "env" / f"{role}.env")}
        settings = load_settings(None, environ=env)  # unknown keys would raise ConfigError
        assert not settings.embedded
        ports.add(settings.http.port)
    assert len(ports) == len(ROLES)


def test_sysusers_file_creates_the_service_user(tmp_path: Path) -> None:
    sysusers = tool("systemd-sysusers", "apt-get install systemd")
    (tmp_path / "etc").mkdir()
    subprocess.run(
        [sysusers, f"--root={tmp_path}", str(SYSTEMD / "feedback-ingest.sysusers.conf")],
        check=True,
        capture_output=True,
        timeout=30,
    )
    passwd = (tmp_path / "etc" / "passwd").read_text(encoding="utf-8")
    user = next(line for line in passwd.splitlines() if line.startswith("feedback-ingest:"))
    assert user.endswith(":/usr/sbin/nologin")


# --- sd_notify -------------------------------------------------------------------


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify"
    sock.bind(str(path))
    sock.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


def test_sdnotify_sends_each_state_as_one_datagram(notify_socket: socket.socket) -> None:
    assert sdnotify.ready() and sdnotify.watchdog() and sdnotify.stopping()
    received = [notify_socket.recv(256) for _ in range(3)]
    assert received == [b"READY=1", b"WATCHDOG=1", b"STOPPING=1"]


def test_sdnotify_reaches_an_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"feedback-ingest-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.ready()
        assert sock.recv(64) == b"READY=1"


def test_sdnotify_is_a_no_op_outside_systemd(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.ready() is False
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    assert sdnotify.watchdog() is False  # best effort, never an exception


def test_watchdog_interval_is_half_of_watchdog_sec() -> None:
    pid = str(os.getpid())
    assert sdnotify.watchdog_interval_secs({"WATCHDOG_USEC": "60000000"}) == 30.0
    assert sdnotify.watchdog_interval_secs({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": pid})
    assert sdnotify.watchdog_interval_secs({"WATCHDOG_USEC": "6", "WATCHDOG_PID": "1"}) is None
    assert sdnotify.watchdog_interval_secs({}) is None
