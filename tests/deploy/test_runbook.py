"""docs/operations.md: every `feedback-ingest` command in the runbook is one the CLI really
has. Each invocation (code blocks and inline code) parses with the real argument parser,
each subcommand answers `--help` through the installed console script, and every command
that is safe to run is run against an embedded stack in a temporary directory."""

from __future__ import annotations

import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import pytest

from ingest.cli import build_parser
from tests.deploy.helpers import ROOT, console_script
from tests.pipeline_helpers import write_feedback_file

RUNBOOK = ROOT / "docs" / "operations.md"
CONFIG = "/etc/feedback-ingest/config.toml"
SHELL_OPERATORS = {"|", "||", "&&", ";", ">", ">>", "<", "2>&1", "&"}
BEFORE_COMMAND = {"--", "exec", "sudo", "|", "&&", ";", "then"}
WITH_ACTION = {"dead", "config", "store"}


def _shell_lines(markdown: str) -> list[str]:
    lines: list[str] = []
    in_block = False
    pending = ""
    for raw in markdown.splitlines():
        stripped = raw.strip()
        if stripped.startswith("```"):
            in_block = not in_block and stripped[3:] in ("sh", "bash", "console", "")
            continue
        if not in_block:
            lines += [m for m in re.findall(r"`([^`]+)`", raw) if "feedback-ingest " in m]
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append((pending + stripped).removeprefix("$ "))
        pending = ""
    return lines


def invocations(markdown: str) -> list[list[str]]:
    """The argument lists given to `feedback-ingest`, as the shell would pass them."""
    found = []
    for line in _shell_lines(markdown):
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError:
            continue
        for i, token in enumerate(tokens):
            is_cli = token == "feedback-ingest" or token.endswith("/bin/feedback-ingest")
            if is_cli and (i == 0 or tokens[i - 1] in BEFORE_COMMAND):
                args = []
                for arg in tokens[i + 1 :]:
                    if arg in SHELL_OPERATORS or arg[0] in "<>":
                        break
                    args.append(arg)
                found.append(args)
    return found


RUNBOOK_INVOCATIONS = invocations(RUNBOOK.read_text(encoding="utf-8"))


def command_path(args: list[str]) -> tuple[str, ...]:
    positional = [a for a in args if not a.startswith("-")]
    return tuple(positional[:2]) if positional[0] in WITH_ACTION else (positional[0],)


def test_the_runbook_covers_the_operator_commands() -> None:
    paths = {command_path(a) for a in RUNBOOK_INVOCATIONS if a}
    for needed in [
        ("run",),
        ("check",),
        ("config", "validate"),
        ("config", "example"),
        ("dead", "list"),
        ("dead", "replay"),
        ("feed",),
        ("plugins",),
    ]:
        assert needed in paths, needed


@pytest.mark.parametrize("args", RUNBOOK_INVOCATIONS, ids=" ".join)
def test_runbook_command_parses_with_the_real_cli(args: list[str]) -> None:
    try:
        build_parser().parse_args(args)
    except SystemExit as exc:
        pytest.fail(f"`feedback-ingest {shlex.join(args)}` is not a valid command ({exc})")


def test_an_unknown_subcommand_would_be_caught() -> None:
    (args,) = invocations("```sh\nfeedback-ingest migrate --config x.toml\n```\n")
    with pytest.raises(SystemExit):
        build_parser().parse_args(args)
    assert invocations("```sh\nkubectl -n feedback-ingest get pods\n```\n") == []


def test_every_subcommand_in_the_runbook_answers_help() -> None:
    script = console_script()
    paths = sorted({command_path(a) for a in RUNBOOK_INVOCATIONS if a})
    procs = {
        path: subprocess.Popen(
            [script, *path, "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for path in paths
    }
    for path, proc in procs.items():
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, (path, err.decode())
        assert out.decode().startswith(f"usage: feedback-ingest {' '.join(path)}"), path


def _embedded_config(tmp_path: Path) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[runtime]\nstate_dir = "{tmp_path / "state"}"\n'
        f'[classify]\nworkers = 1\ncustomer_ref_key = "k"\n'
        f'[log]\nlevel = "warning"\n'
        f'[connectors.history]\ntype = "file_drop"\npath = "{tmp_path / "history"}"\n',
        encoding="utf-8",
    )
    (tmp_path / "history").mkdir()
    write_feedback_file(tmp_path / "history" / "old.jsonl", 2)
    config.chmod(0o600)
    return config


def _runnable(args: list[str]) -> bool:
    """Everything but a long-lived worker and commands that read stdin."""
    if args and args[0] == "run":
        return "--once" in args
    return bool(args) and args[0] not in ("classify", "demo") and "-" not in args


@pytest.mark.timeout(180)
def test_runbook_commands_run_against_an_embedded_stack(tmp_path: Path) -> None:
    """The runbook's own command lines, with its config path pointing at an embedded
    configuration and its sample files present: each one exits 0."""
    config = _embedded_config(tmp_path)
    write_feedback_file(tmp_path / "export.jsonl", 3)
    (tmp_path / "failed").mkdir()
    write_feedback_file(tmp_path / "failed" / "export.jsonl", 2)
    seen = set()
    ran = 0
    for args in RUNBOOK_INVOCATIONS:
        if not _runnable(args):
            continue
        mapped = [str(config) if a in (CONFIG, "…") else a for a in args]  # … = a placeholder
        if tuple(mapped) in seen:
            continue
        seen.add(tuple(mapped))
        result = subprocess.run(
            [console_script(), *mapped],
            cwd=tmp_path,
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, (mapped, result.stderr.decode()[-2000:])
        if mapped[:2] == ["config", "example"]:  # what the install step writes
            example = tmp_path / "example.toml"
            example.write_bytes(result.stdout)
            tomllib.loads(example.read_text(encoding="utf-8"))
        ran += 1
    assert ran >= 10


def test_collected_commands_look_like_the_runbook() -> None:
    """The extraction itself finds the install block's console script and the replays."""
    assert ["config", "example"] in RUNBOOK_INVOCATIONS
    assert any(a[:2] == ["dead", "replay"] and "--all" in a for a in RUNBOOK_INVOCATIONS)
