"""Shared by the deploy tests: where things are, finding external tools, reading systemd
units and environment files the way systemd does."""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

import pytest

from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "systemd" / "feedback-ingest@.service"
ROLES = ("connectors", "processors", "sinks", "desk")


def tool(name: str, hint: str) -> str:
    """The path of an external tool: beside this Python (a venv's bin), else on PATH.
    Missing: a skip locally, a failure in CI."""
    beside = Path(sys.executable).with_name(name)
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is not None:
        return found
    message = f"{name} is not installed ({hint})"
    if IN_CI:
        pytest.fail(f"{message}; CI=true: a missing tool is a failure, not a skip")
    pytest.skip(message)


def console_script() -> str:
    """The installed `feedback-ingest` entry point (pip install -e . puts it beside python)."""
    return tool("feedback-ingest", "pip install -e .")


def unit_directives(path: Path = UNIT) -> dict[str, list[str]]:
    """`Section.Key` → values in order (a key may repeat), continuation lines joined."""
    directives: dict[str, list[str]] = {}
    section = ""
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = pending + raw.strip()
        pending = ""
        if not line or line[0] in "#;":
            continue
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        directives.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return directives


def expand_specifiers(value: str, instance: str) -> str:
    return value.replace("%i", instance).replace("%I", instance)


def exec_start(instance: str, path: Path = UNIT) -> list[str]:
    """ExecStart of one instance as an argv (specifiers expanded)."""
    (line,) = unit_directives(path)["Service.ExecStart"]
    return shlex.split(expand_specifiers(line.lstrip("-@:+!"), instance))


def read_environment_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as systemd's EnvironmentFile= reads them: comments and blank lines
    skipped, one level of matching quotes removed."""
    env: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path}: not KEY=VALUE: {raw!r}"
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key.strip()] = value
    return env
