"""deploy/grafana and deploy/prometheus: every metric and label the dashboard and the
alert rules query is one the worker's /metrics really exports; the PromQL parses
(promtool); each alert fires on the situation it names and stays quiet otherwise
(`promtool test rules`), and each points at its runbook section."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from ingest import telemetry
from ingest.bus.topology import CONTRACT_QUEUES
from ingest.runtime.http import HttpServer, build_app
from tests.deploy.helpers import DEPLOY, ROOT, tool

DASHBOARD = DEPLOY / "grafana" / "feedback-ingest.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yaml"
ALERT_TESTS = Path(__file__).parent / "prometheus" / "alerts_test.yaml"
RUNBOOK = ROOT / "docs" / "operations.md"
METRIC_RE = re.compile(r"\b(feedback_[a-z0-9_]+)\b")
SELECTOR_RE = re.compile(r"\b(feedback_[a-z0-9_]+)\{([^}]*)\}")
MATCHER_RE = re.compile(r'(\w+)\s*(?:=~|!~|!=|=)\s*"([^"]*)"')


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = []
    for panel in dashboard["panels"]:
        exprs += [t["expr"] for t in panel.get("targets", [])]
    return exprs


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def all_exprs() -> list[str]:
    return dashboard_exprs() + [rule["expr"] for rule in alert_rules()]


async def scraped_families() -> dict[str, str]:
    """Metric family → type, as the worker's own /metrics endpoint serves them."""
    server = HttpServer(build_app({}), "127.0.0.1", 0)
    await server.start()
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{server.port}/metrics") as response,
        ):
            assert response.status == 200
            body = await response.text()
    finally:
        await server.close()
    return {f.name: f.type for f in text_string_to_metric_families(body)}


def series_names(families: dict[str, str]) -> set[str]:
    """The names a PromQL query can use for each family."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    return {name + s for name, kind in families.items() for s in suffixes.get(kind, ("",))}


async def test_every_metric_queried_is_exported_by_the_worker() -> None:
    exported = series_names(await scraped_families())
    queried = {m for expr in all_exprs() for m in METRIC_RE.findall(expr)}
    assert queried, "no metric found in the dashboard and alerts"
    assert queried <= exported, sorted(queried - exported)
    # the panels the issue asks for, by the metric behind each
    for needed in (
        "feedback_received_total",  # intake per channel
        "feedback_end_to_end_seconds_bucket",  # pipeline latency
        "feedback_queue_depth",
        "feedback_dead_lettered_total",
        "feedback_feed_size",
        "feedback_sla_breaches_total",
        "feedback_connector_up",
    ):
        assert needed in queried, needed


def _labelnames() -> dict[str, set[str]]:
    names: dict[str, set[str]] = {}
    for value in vars(telemetry).values():
        name, labels = getattr(value, "_name", None), getattr(value, "_labelnames", None)
        if isinstance(name, str) and labels is not None:
            kind = getattr(value, "_type", "")
            series = {
                "counter": [f"{name}_total"],
                "histogram": [f"{name}_bucket", f"{name}_sum", f"{name}_count"],
            }.get(kind, [name])
            for s in series:
                names[s] = set(labels) | ({"le"} if s.endswith("_bucket") else set())
    return names


def test_every_label_matched_exists_and_queue_names_are_the_contract_ones() -> None:
    labelnames = _labelnames()
    stages = {"connector", "processor", "sink:store", "sink:feed", "pull", "push"}
    for expr in all_exprs():
        for metric, matchers in SELECTOR_RE.findall(expr):
            for label, value in MATCHER_RE.findall(matchers):
                assert label in labelnames[metric], f"{metric} has no label {label}: {expr}"
                if label == "queue":
                    assert value in CONTRACT_QUEUES, value
                if label == "stage":
                    assert value in stages, value
        for group in re.findall(r"\bby \(([^)]*)\)", expr):
            used = {m for m in METRIC_RE.findall(expr)}
            known = set().union(*(labelnames[m] for m in used))
            for label in (g.strip() for g in group.split(",")):
                assert label in known, f"no metric in {expr!r} has label {label}"


def test_promtool_accepts_the_alert_rules_and_every_dashboard_query(tmp_path: Path) -> None:
    promtool = tool("promtool", ".ci/run installs it from Debian's prometheus package")
    checked = subprocess.run(
        [promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    as_rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": expr}
                    for i, expr in enumerate(dashboard_exprs())
                ],
            }
        ]
    }
    queries = tmp_path / "dashboard_rules.yaml"
    queries.write_text(yaml.safe_dump(as_rules), encoding="utf-8")
    checked = subprocess.run(
        [promtool, "check", "rules", str(queries)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_promtool_rejects_a_broken_query(tmp_path: Path) -> None:
    promtool = tool("promtool", ".ci/run installs it from Debian's prometheus package")
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "groups:\n- name: x\n  rules:\n  - alert: X\n    expr: sum by (a (feedback_up)\n"
    )
    result = subprocess.run([promtool, "check", "rules", str(broken)], capture_output=True)
    assert result.returncode != 0


def test_each_alert_fires_when_it_should_and_not_otherwise() -> None:
    promtool = tool("promtool", ".ci/run installs it from Debian's prometheus package")
    result = subprocess.run(
        [promtool, "test", "rules", ALERT_TESTS.name],
        cwd=ALERT_TESTS.parent,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    tested = {
        case["alertname"]
        for test in yaml.safe_load(ALERT_TESTS.read_text(encoding="utf-8"))["tests"]
        for case in test["alert_rule_test"]
    }
    assert tested == {rule["alert"] for rule in alert_rules()}


def _anchors(markdown: str) -> set[str]:
    anchors = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def test_every_alert_has_a_severity_and_a_runbook_section() -> None:
    anchors = _anchors(RUNBOOK.read_text(encoding="utf-8"))
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"page", "warning"}
        link = rule["annotations"]["runbook"]
        path, _, anchor = link.partition("#")
        assert path == "docs/operations.md" and anchor in anchors, link


def test_dashboard_is_importable_grafana_json() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"].strip("${}") in variables


@pytest.mark.parametrize("expr", ["feedback_nonexistent_total", "feedback_queue_depth_bucket"])
async def test_the_metric_check_would_catch_a_wrong_name(expr: str) -> None:
    exported = series_names(await scraped_families())
    assert set(METRIC_RE.findall(expr)) - exported
