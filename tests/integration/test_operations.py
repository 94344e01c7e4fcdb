"""Operator commands against the real broker, and shutdown on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import orjson
import pytest

from ingest.bus.amqp import AmqpBus
from ingest.bus.base import (
    DLX,
    H_CHANNEL,
    H_ERROR,
    H_ERROR_STAGE,
    H_ID,
    H_ORIGIN_EXCHANGE,
    H_ORIGIN_ROUTING_KEY,
    INGRESS,
    Q_DEAD,
    Q_PROCESS,
)
from tests.pipeline_helpers import cli_command, write_feedback_file


@pytest.mark.integration
async def test_dead_list_and_replay_from_the_cli(amqp_vhost_url: str) -> None:
    """`dead list` shows a parked message with its reason and leaves it parked;
    `dead replay --id` sends it back to where it failed and removes it."""
    env = {**os.environ, "FEEDBACK_BROKER__URL": amqp_vhost_url}
    async with AmqpBus(amqp_vhost_url) as bus:
        while (old := await bus.get(Q_DEAD)) is not None:
            await old.ack()
        while (old := await bus.get(Q_PROCESS)) is not None:
            await old.ack()
        body = b'{"schema":1,"event":{"id":"e-1","channel":"email","text":"\xe4\xbd\xa0"}}'
        await bus.publish(
            DLX,
            "",
            body,
            {
                H_ID: "e-1",
                H_CHANNEL: "email",
                H_ERROR: "step crashed: boom",
                H_ERROR_STAGE: "processor",
                H_ORIGIN_EXCHANGE: INGRESS,
                H_ORIGIN_ROUTING_KEY: "email.normal",
            },
        )
        await bus.publish(
            DLX,
            "",
            b"\xff raw",
            {H_ERROR: "not JSON", H_ERROR_STAGE: "connector:forms", "x-input-ref": "a.jsonl:3"},
        )

        listed = await asyncio.to_thread(
            subprocess.run,
            cli_command("dead", "list", "--json"),
            env=env,
            capture_output=True,
            timeout=60,
            check=True,
        )
        rows = [orjson.loads(line) for line in listed.stdout.splitlines()]
        assert [(r["id"], r["stage"], r["error"]) for r in rows] == [
            ("e-1", "processor", "step crashed: boom"),
            ("", "connector:forms", "not JSON"),
        ]
        assert (await bus.queue_depths())[Q_DEAD] == 2, "listing must not remove anything"

        replay = await asyncio.to_thread(
            subprocess.run,
            cli_command("dead", "replay", "--all"),
            env=env,
            capture_output=True,
            timeout=60,
            check=True,
        )
        assert b"replayed 1, not replayable 1" in replay.stdout
        back = await bus.get(Q_PROCESS)
        assert back is not None and back.body == body and back.headers.get("x-replayed") == "1"
        await back.ack()
        left = await bus.get(Q_DEAD)
        assert left is not None and left.body == b"\xff raw"
        await left.ack()


def test_sigterm_stops_the_worker_cleanly_with_nothing_lost(tmp_path: Path) -> None:
    """An embedded worker that has taken in a file stops on SIGTERM within the drain
    timeout and exits 0; what it had ingested is stored."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    config = tmp_path / "worker.toml"
    config.write_text(
        f'[runtime]\nstate_dir = "{tmp_path / "state"}"\ndrain_timeout_secs = 10\n'
        f'[http]\nport = 0\n[classify]\nworkers = 1\ncustomer_ref_key = "k"\n'
        f'[connectors.forms]\ntype = "file_drop"\npath = "{inbox}"\nsettle_secs = 0.0\n'
        "poll_interval_secs = 0.5\n",
        encoding="utf-8",
    )
    config.chmod(0o600)
    write_feedback_file(inbox / "a.jsonl", 30)
    worker = subprocess.Popen(
        cli_command("run", "--config", str(config)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not (inbox / "done" / "a.jsonl").exists():
            assert time.monotonic() < deadline, "the worker never took the file in"
            time.sleep(0.2)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0, worker.stderr.read() if worker.stderr else ""
    finally:
        if worker.poll() is None:
            worker.kill()
    feed = subprocess.run(
        cli_command("feed", "--config", str(config), "--json", "--limit", "100"),
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert len(feed.stdout.splitlines()) == 30


def test_embedded_parking_lot_outlives_the_process(tmp_path: Path) -> None:
    """Embedded mode keeps feedback.dead in a file: a later `dead list` (another process)
    shows what a `run --once` parked, with its reason, and leaves it parked."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    config = tmp_path / "embedded.toml"
    config.write_text(
        f'[runtime]\nstate_dir = "{tmp_path / "state"}"\n[classify]\nworkers = 1\n'
        f'customer_ref_key = "k"\n[connectors.forms]\ntype = "file_drop"\npath = "{inbox}"\n'
        "settle_secs = 0.0\n",
        encoding="utf-8",
    )
    config.chmod(0o600)
    write_feedback_file(inbox / "a.jsonl", 5, with_bad=True)
    subprocess.run(
        cli_command("run", "--once", "--config", str(config)),
        check=True,
        capture_output=True,
        timeout=120,
    )
    for _ in range(2):  # listing twice: listing must not consume
        listed = subprocess.run(
            cli_command("dead", "list", "--json", "--config", str(config)),
            check=True,
            capture_output=True,
            timeout=60,
        )
        rows = [orjson.loads(line) for line in listed.stdout.splitlines()]
        assert len(rows) == 4
        assert {r["stage"] for r in rows} == {"connector:forms"}
        assert all(r["error"] for r in rows)
