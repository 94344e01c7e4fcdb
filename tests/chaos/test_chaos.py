"""The chaos run in its bounded CI form (the full run: `python -m tests.chaos`).

5 000 events through the file drop, the WeChat webhook and the transcripts webhook
while every fault kind strikes at least once (kill -9 of each role, RabbitMQ, Redis
and PostgreSQL restarts, broker links cut); then every id is accounted for. Its
servers are private instances started for the run, never the shared ones. Locally a
missing server binary skips it; with CI=true that is a failure.
"""

from __future__ import annotations

import os

import pytest

from tests.chaos.__main__ import print_result
from tests.chaos.harness import EMBEDDED_FAULTS, SERVICE_FAULTS, Options, run_chaos
from tests.chaos.services import MissingTool, PrivatePostgres, PrivateRabbit, PrivateRedis
from tests.conftest import IN_CI

CI_EVENTS = int(os.environ.get("FEEDBACK_CHAOS_EVENTS", "5000"))


def require_tools(tmp_path: object) -> None:
    """The server binaries the private instances need (a failure in CI, never a skip)."""
    from pathlib import Path

    root = Path(str(tmp_path))
    try:
        for service in (PrivateRabbit, PrivateRedis, PrivatePostgres):
            service(root / "probe")
    except MissingTool as exc:
        if IN_CI:
            pytest.fail(f"{exc} (CI=true: a missing tool is a failure, not a skip)")
        pytest.skip(str(exc))


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(300)
# aio-pika leaves a (Robust)Connection.close coroutine unawaited when the harness's own probe
# connects to a broker that is going down mid-handshake (a restart fault): not the
# workers' (they are other processes), and nothing of ours to await.
@pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <coroutine object (Robust)?Connection.close"
    ":pytest.PytestUnraisableExceptionWarning"
)
async def test_chaos_services_lose_and_duplicate_nothing(tmp_path: object) -> None:
    """Over private RabbitMQ, Redis and PostgreSQL, with every fault kind injected
    during the run: each good input is stored once and in the feed once, each
    malformed one parked, no work left in a queue, no worker crashed."""
    require_tools(tmp_path)
    result = await run_chaos(
        Options(
            events=CI_EVENTS,
            rate_per_sec=100.0,
            fault_gap_secs=(2.0, 5.0),
            settle_timeout_secs=90.0,
            log=lambda line: print(line, flush=True),
        )
    )
    print_result(result)
    assert set(result.faults) == set(SERVICE_FAULTS), result.faults
    assert len(result.sent.ids if result.sent else ()) >= CI_EVENTS - 10
    assert result.ok, (result.report.failures, result.report.examples, result.crashes)


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_chaos_embedded_disk_full_loses_nothing() -> None:
    """Embedded mode (in-memory bus, SQLite on a size-limited tmpfs): the disk fills up
    and frees again, and the worker is stopped (SIGTERM) and started during the run;
    every input still lands once. Without permission to mount a tmpfs, only the
    restarts are injected (the run's notes say so)."""
    result = await run_chaos(
        Options(
            events=1500,
            embedded=True,
            rate_per_sec=60.0,
            fault_gap_secs=(2.0, 5.0),
            settle_timeout_secs=90.0,
            tmpfs_mb=64,
            log=lambda line: print(line, flush=True),
        )
    )
    print_result(result)
    if os.geteuid() == 0:
        assert set(result.faults) == set(EMBEDDED_FAULTS), (result.faults, result.notes)
    assert result.ok, (result.report.failures, result.report.examples, result.crashes)
