"""A real imap worker process killed with SIGKILL between publishing a batch and
committing its cursor, then restarted (architecture.md, "Delivery guarantee": at least
once from channel to sinks, effectively once in the sinks).

The worker is `feedback-ingest run` against a throwaway Dovecot and the shared RabbitMQ
(in the session's throwaway vhost), with its cursors, store and feed in SQLite files.
The kill lands deterministically in the window: once the worker has created its cursor
table, the test holds that SQLite file's write lock, as a stalled disk would, so the
worker publishes its first batch (broker-confirmed, visible in the queue) and then
blocks on the cursor commit. It is killed there, the lock released, and a new worker
started: it reads the same mails again (same ids, from their Message-IDs), and the
store ends with every mail exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import closing
from pathlib import Path

import aio_pika
import pytest

from connectors.imap.connector import load_cursor
from ingest.bus.amqp import AmqpBus
from ingest.bus.base import H_ID, Q_DEAD, Q_PROCESS, Q_PROCESS_URGENT
from ingest.bus.topology import CONTRACT_QUEUES
from tests.dovecot import Dovecot, fixture_mails
from tests.integration.test_imap import require_dovecot
from tests.pipeline_helpers import cli_command, sqlite_store_rows, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
MAILS = 400
BATCH = 25
INTAKE = (Q_PROCESS_URGENT, Q_PROCESS)


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    require_dovecot()
    with Dovecot.start() as server:
        yield server


@pytest.fixture
async def broker(amqp_vhost_url: str) -> AsyncIterator[AmqpBus]:
    """The session's vhost with the topology declared and the contract queues empty."""
    async with AmqpBus(amqp_vhost_url, timeout_secs=10) as bus:
        connection = await aio_pika.connect(amqp_vhost_url)
        async with connection:
            channel = await connection.channel()
            for name in CONTRACT_QUEUES:
                await (await channel.get_queue(name, ensure=False)).purge()
        yield bus


def config(tmp_path: Path, server: Dovecot, amqp_url: str) -> Path:
    path = tmp_path / "worker.toml"
    path.write_text(
        f"""[broker]
url = "{amqp_url}"
[runtime]
state_dir = "{tmp_path / "state"}"
drain_timeout_secs = 10
[http]
port = 0
[classify]
workers = 1
[log]
level = "warning"
[connectors.kefu]
type = "imap"
host = "127.0.0.1"
port = {server.imaps_port}
username = "{server.user}"
password = "{server.password}"
ca_file = "{server.ca_file}"
batch_size = {BATCH}
poll_interval_secs = 60
""",
        encoding="utf-8",
    )
    path.chmod(0o600)
    return path


def start(config_file: Path, roles: str, log: Path) -> subprocess.Popen[bytes]:
    # no settings from this environment (FEEDBACK_A__B) override the file
    env = {k: v for k, v in os.environ.items() if "__" not in k and k != "FEEDBACK_CONFIG"}
    with log.open("ab") as sink:
        return subprocess.Popen(
            cli_command("run", "--roles", roles, "--config", str(config_file)),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )


def lock_cursor_table(path: Path, timeout_secs: float = 30) -> sqlite3.Connection:
    """As soon as the worker created its cursor table (it does so when it first loads
    its cursor, before reading any mail), take the file's write lock and keep it."""
    deadline = time.monotonic() + timeout_secs
    while time.monotonic() < deadline:
        if path.exists():
            db = sqlite3.connect(path, isolation_level=None, timeout=10, check_same_thread=False)
            made = db.execute(
                "SELECT 1 FROM sqlite_master WHERE name = 'connector_cursors'"
            ).fetchone()
            if made:
                db.execute("BEGIN IMMEDIATE")
                return db
            db.close()
        time.sleep(0.002)
    raise AssertionError("the worker never created its cursor table")


def committed_uid(db: sqlite3.Connection) -> int:
    row = db.execute("SELECT cursor FROM connector_cursors WHERE connector = 'kefu'").fetchone()
    return 0 if row is None else load_cursor(row[0]).get("INBOX", (0, 0))[1]


async def intake_depth(bus: AmqpBus) -> int:
    depths = await bus.queue_depths()
    return sum(depths[q] for q in INTAKE)


async def queued_ids(amqp_url: str) -> list[str]:
    """The x-feedback-id of every message waiting in the intake queues, left in place
    (taken unacknowledged, returned when the channel closes)."""
    ids: list[str] = []
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        for name in INTAKE:
            queue = await channel.get_queue(name, ensure=False)
            while (message := await queue.get(no_ack=False, fail=False)) is not None:
                ids.append(str(message.headers[H_ID]))
    return ids


@pytest.mark.slow
async def test_a_worker_killed_between_publish_and_cursor_commit_stores_every_mail_once(
    dovecot: Dovecot, broker: AmqpBus, amqp_vhost_url: str, tmp_path: Path
) -> None:
    mails = fixture_mails(MAILS, prefix="kill")
    now = time.time()
    dovecot.deliver([(raw, now - 3600 + i) for i, (raw, _) in enumerate(mails)])
    expected = sorted(f"kill-{i:06d}@bench.example" for i, (_, c) in enumerate(mails) if c)
    settings_file = config(tmp_path, dovecot, amqp_vhost_url)
    log = tmp_path / "worker.log"

    intake = start(settings_file, "connectors", log)
    lock: sqlite3.Connection | None = None
    try:
        lock = await asyncio.to_thread(lock_cursor_table, tmp_path / "state" / "cursors.db")

        async def batch_confirmed_and_blocked() -> bool:
            """Messages in the queue, and none added for 0.5 s: the worker published its
            batch and is now waiting for the cursor lock."""
            before = await intake_depth(broker)
            await asyncio.sleep(0.5)
            return 0 < before == await intake_depth(broker)

        await wait_until(batch_confirmed_and_blocked, 30, "a published, uncommitted batch")
        intake.send_signal(signal.SIGKILL)
        assert intake.wait(10) == -signal.SIGKILL
        in_queue = await queued_ids(amqp_vhost_url)
        cursor_at_kill = committed_uid(lock)
    finally:
        if intake.poll() is None:
            intake.kill()
            intake.wait(10)
        if lock is not None:
            lock.rollback()
            lock.close()
    # Killed after the broker confirmed these and before their cursor was committed:
    print(f"at kill: {len(in_queue)} in the queue, cursor at UID {cursor_at_kill}")
    assert in_queue and cursor_at_kill == 0, (len(in_queue), cursor_at_kill)
    assert len(set(in_queue)) <= BATCH

    worker = start(settings_file, "connectors,processors,sinks", log)
    try:

        async def all_stored() -> bool:
            if not (tmp_path / "state" / "feedback.db").exists():
                return False
            try:
                return len(sqlite_store_rows(tmp_path / "state")[0]) >= len(expected)
            except sqlite3.OperationalError:  # the schema is still being created
                return False

        await wait_until(all_stored, 60, f"{len(expected)} records stored")
        await asyncio.sleep(1.0)  # a late redelivery would land now
        depths = await broker.queue_depths()
        worker.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(worker.wait, 30) == 0, log.read_text()[-3000:]
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)

    natives, ingested, changed = sqlite_store_rows(tmp_path / "state")
    # Every mail exactly once; the re-read batch was the same events again (same ids,
    # same content: no second `ingested` audit row, no new version).
    assert sorted(natives) == expected
    assert (ingested, changed) == (len(expected), 0)
    with closing(sqlite3.connect(tmp_path / "state" / "feedback.db")) as db:
        stored_ids = {row[0] for row in db.execute("SELECT id FROM feedback_records")}
    assert set(in_queue) <= stored_ids, "a queued message had an id no mail has"
    assert all(depths[q] == 0 for q in (*INTAKE, Q_DEAD)), depths
    with closing(sqlite3.connect(tmp_path / "state" / "cursors.db")) as db:
        assert committed_uid(db) == MAILS
