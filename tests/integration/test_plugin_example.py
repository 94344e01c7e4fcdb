"""The example in docs/adding-a-connector.md is a working out-of-tree plugin: built from
the document's own text, installed with pip, listed by `feedback-ingest plugins`
through the entry-point group, loadable by the registry, and passing the connector
contract suite."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).parents[2] / "docs" / "adding-a-connector.md"
BLOCK = re.compile(r"```(?:python|toml)\n# file: (?P<path>\S+)\n(?P<body>.*?)```", re.S)


def doc_files() -> dict[str, str]:
    return {m["path"]: m["body"] for m in BLOCK.finditer(DOC.read_text(encoding="utf-8"))}


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=240)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("plugin")
    package, site = root / "feedback-formhook", root / "site"
    for name, body in doc_files().items():
        target = package / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(body, encoding="utf-8")
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
    done = run([*pip, "--target", str(site), str(package)], dict(os.environ), root)
    assert done.returncode == 0, done.stderr
    env = {**os.environ, "PYTHONPATH": str(site)}
    return package, env


def test_the_document_holds_the_whole_plugin() -> None:
    assert set(doc_files()) == {
        "pyproject.toml",
        "feedback_formhook/__init__.py",
        "feedback_formhook/config.py",
        "feedback_formhook/parse.py",
        "feedback_formhook/connector.py",
        "tests/test_formhook.py",
    }


def test_a_pip_installed_plugin_is_listed_and_loads(installed: tuple[Path, dict[str, str]]) -> None:
    package, env = installed
    cli = [sys.executable, "-c", "from ingest.cli import main; raise SystemExit(main())"]
    listed = run([*cli, "plugins"], env, package.parent)
    assert listed.returncode == 0, listed.stderr
    line = next(ln for ln in listed.stdout.splitlines() if ln.startswith("formhook"))
    assert "plugin" in line and "push" in line and "web-form" in line
    payload = package / "payload.json"
    payload.write_text('{"id": "F-9", "message": "网银登录不了"}', encoding="utf-8")
    parsed = run([*cli, "parse", "formhook", str(payload)], env, package.parent)
    assert parsed.returncode == 0, parsed.stderr
    assert '"channel":"web_form"' in parsed.stdout and "网银登录不了" in parsed.stdout


def test_the_plugin_passes_the_connector_contract(installed: tuple[Path, dict[str, str]]) -> None:
    package, env = installed
    done = run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], env, package
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert re.search(r"\b1[0-9] passed\b", done.stdout), done.stdout[-500:]
