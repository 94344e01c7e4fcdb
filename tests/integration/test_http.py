"""The worker's own HTTP endpoints: liveness, readiness, Prometheus metrics."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from ingest.errors import ConfigError
from ingest.runtime.supervisor import Worker
from ingest.settings import settings_from_dict
from tests.pipeline_helpers import write_feedback_file


async def test_healthz_readyz_and_metrics_of_a_running_worker(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    settings = settings_from_dict(
        {
            "runtime": {"state_dir": str(tmp_path / "state")},
            "http": {"port": 0},
            "classify": {"workers": 1, "customer_ref_key": "k"},
            "connectors": {
                "forms": {
                    "type": "file_drop",
                    "path": str(inbox),
                    "settle_secs": 0.0,
                    "poll_interval_secs": 0.2,
                }
            },
        }
    )
    write_feedback_file(inbox / "a.jsonl", 3, with_bad=True)
    worker = Worker(settings)
    running = asyncio.create_task(worker.run())
    try:
        while (  # noqa: ASYNC110 - polling files and a port from outside, as a probe would
            worker.http is None
            or worker.http.port == 0
            or not (inbox / "done").exists()
            or not list((inbox / "done").iterdir())
        ):
            await asyncio.sleep(0.1)
        base = f"http://127.0.0.1:{worker.http.port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/healthz") as r:
                assert r.status == 200
            async with http.get(f"{base}/readyz") as r:
                body = await r.json()
                assert r.status == 200 and body["ready"], body
                assert set(body["checks"]) == {"bus", "feed", "store"}
            for _ in range(100):
                async with http.get(f"{base}/metrics") as r:
                    metrics = await r.text()
                if 'feedback_processed_total{channel="web_form",stage="sink:sql_store"}' in metrics:
                    break
                await asyncio.sleep(0.1)
        for name in (
            "feedback_received_total",
            "feedback_published_total",
            "feedback_dead_lettered_total",
            "feedback_stage_latency_seconds_bucket",
            "feedback_end_to_end_seconds_bucket",
        ):
            assert name in metrics, name
        assert (  # the folder's channel, as its good lines have, not the connector's name
            'feedback_dead_lettered_total{channel="web_form",error="bad_json",'
            'stage="connector:forms"}' in metrics
        )
        assert 'feedback_processed_total{channel="web_form",stage="sink:sql_store"}' in metrics
        # decisions counted in the parent, though classified in the pool's child process
        assert 'feedback_decisions_total{signal="working_days"}' in metrics
        assert 'feedback_decisions_total{signal="urgency"}' in metrics
    finally:
        worker.request_stop()
        await asyncio.wait_for(running, 30)


async def test_ops_port_keeps_operator_endpoints_off_the_public_port(tmp_path: Path) -> None:
    """With `[http] ops_port`, a proxy routing the main port to the desk cannot reach
    /metrics or /readyz: they answer on the ops port only."""
    settings = settings_from_dict(
        {
            "runtime": {"state_dir": str(tmp_path / "state")},
            "http": {"port": 0, "ops_port": 0},
            "classify": {"workers": 1, "customer_ref_key": "k"},
            "desk": {"tokens": []},
        }
    )
    worker = Worker(settings, roles=("desk",))
    running = asyncio.create_task(worker.run())
    try:
        while worker.http is None or worker.http.port == 0:
            assert not running.done(), running.exception()
            await asyncio.sleep(0.05)
        assert worker.ops_http is not None and worker.ops_http.port != worker.http.port
        public = f"http://127.0.0.1:{worker.http.port}"
        ops = f"http://127.0.0.1:{worker.ops_http.port}"
        async with aiohttp.ClientSession() as http:
            for path in ("/metrics", "/readyz", "/healthz"):
                async with http.get(public + path) as r:
                    assert r.status == 404, path
                async with http.get(ops + path) as r:
                    assert r.status == 200, path
            async with http.get(public + "/desk/") as r:  # the desk stays on the main port
                assert r.status == 200
    finally:
        worker.request_stop()
        await asyncio.wait_for(running, 30)


def test_ops_port_must_differ_from_the_main_port() -> None:
    with pytest.raises(ConfigError, match=r"http\.ops_port"):
        settings_from_dict({"http": {"port": 8080, "ops_port": 8080}})
