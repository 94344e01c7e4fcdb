"""imap against a real Dovecot (a throwaway instance per test, tests/dovecot.py): TLS by
default, STARTTLS and plain when configured, IDLE, cursors across UIDVALIDITY changes,
a worker killed before its cursor commit, after_ingest, and the connector contract.

Needs /usr/sbin/dovecot (`apt-get install -y dovecot-imapd`): skipped locally without
it, a failure in CI.
"""

from __future__ import annotations

import asyncio
import imaplib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.imap.config import ImapOptions
from connectors.imap.connector import ImapConnector, load_cursor
from ingest.abc import Batch, FeedQuery
from ingest.bus.memory import MemoryBus
from ingest.errors import ConfigError, TransientError
from ingest.options import parse_options
from ingest.runtime import components
from ingest.runtime.publish import Publisher
from ingest.runtime.pull import PullScheduler
from ingest.runtime.supervisor import Worker
from ingest.settings import Settings, settings_from_dict
from ingest.testing import ConnectorContract, MemoryCursors
from tests.conftest import IN_CI
from tests.dovecot import DOVECOT, Dovecot
from tests.fixtures.email.make_fixtures import with_attachments
from tests.pipeline_helpers import wait_until

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "email"
COMPLAINTS = "客户投诉"
COMPLAINTS_UTF7 = '"&W6JiN2KVi8k-"'
pytestmark = pytest.mark.integration


def require_dovecot() -> None:
    if Path(DOVECOT).exists():
        return
    message = f"dovecot is not installed at {DOVECOT} (apt-get install -y dovecot-imapd)"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: a missing service is a failure, not a skip)")
    pytest.skip(message)


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    require_dovecot()
    with Dovecot.start() as server:
        yield server


def admin(server: Dovecot) -> imaplib.IMAP4:
    """A plain stdlib client for the test's own actions on the mailbox."""
    client = imaplib.IMAP4("127.0.0.1", server.imap_port)
    client.login(server.user, server.password)
    return client


def append(server: Dovecot, *mails: bytes, folder: str = "INBOX") -> None:
    client = admin(server)
    try:
        for raw in mails:
            typ, data = client.append(folder, None, None, raw)
            assert typ == "OK", data
    finally:
        client.logout()


def complaint(i: int, text: str = "信用卡被盗刷，要求退款") -> bytes:
    return (
        f"From: customer{i}@163.com\r\nTo: kefu@bank.example\r\n"
        f"Subject: =?utf-8?B?5oqV6K+J?= {i}\r\nDate: Fri, 1 Mar 2024 09:00:00 +0800\r\n"
        f"Message-ID: <c{i:05d}@163.com>\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Transfer-Encoding: 8bit\r\n\r\n{text}（{i}）\r\n"
    ).encode()


def table(server: Dovecot, **extra: Any) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": server.imaps_port,
        "username": server.user,
        "password": server.password,
        "ca_file": str(server.ca_file),
        "poll_interval_secs": 1.0,
        **extra,
    }


def connector(server: Dovecot, **extra: Any) -> ImapConnector:
    return ImapConnector("kefu", parse_options(ImapOptions, table(server, **extra), "kefu"))


async def read_all(conn: ImapConnector, cursor: str | None = None) -> list[Batch]:
    return [batch async for batch in conn.read(cursor)]


def flags(server: Dovecot, folder: str = "INBOX") -> list[bytes]:
    client = admin(server)
    try:
        client.select(folder, readonly=True)
        _, data = client.uid("FETCH", "1:*", "(FLAGS)")
        return [d for d in data if isinstance(d, bytes)]
    finally:
        client.logout()


def count(server: Dovecot, folder: str) -> int:
    client = admin(server)
    try:
        _, data = client.select(folder, readonly=True)
        return int(data[0] or 0)
    finally:
        client.logout()


# --- connection and check ------------------------------------------------------------


async def test_check_passes_over_tls_starttls_and_plain(dovecot: Dovecot) -> None:
    """TLS (the default, the server's certificate checked against ca_file), STARTTLS and
    plain all log in and open the folders."""
    for extra in (
        {},
        {"security": "starttls", "port": dovecot.imap_port},
        {"security": "plain", "port": dovecot.imap_port},
    ):
        conn = connector(dovecot, **extra)
        await conn.check()
        await conn.close()


async def test_check_names_the_key_that_is_wrong(dovecot: Dovecot) -> None:
    cases = [  # the wrong password last: Dovecot then delays logins from this address
        ({"ca_file": ""}, "connectors.kefu.ca_file"),  # self-signed: not trusted by default
        ({"folders": ["NoSuchFolder"]}, "connectors.kefu.folders"),
        ({"password": "wrong"}, "connectors.kefu.password"),
    ]
    for extra, key in cases:
        conn = connector(dovecot, **extra)
        with pytest.raises(ConfigError) as info:
            await conn.check()
        assert info.value.key == key, info.value


async def test_an_unreachable_server_is_a_transient_error(dovecot: Dovecot) -> None:
    conn = connector(dovecot, port=1, timeout_secs=2.0)
    with pytest.raises(TransientError):
        await conn.check()
    with pytest.raises(TransientError):
        await read_all(conn)


# --- reading, cursors --------------------------------------------------------------------


async def test_fixture_mails_are_read_in_uid_order_skipping_machine_mail(dovecot: Dovecot) -> None:
    names = sorted(p.name for p in FIXTURES.glob("*.eml"))
    append(dovecot, *[(FIXTURES / n).read_bytes() for n in names])
    conn = connector(dovecot, batch_size=4)
    batches = await read_all(conn)
    await conn.close()
    events = [e for b in batches for e in b.events]
    assert len(batches) == 4
    assert len(events) == len(names) - 2  # the auto-reply and the bounce are skipped
    assert not any(b.bad for b in batches)
    last = load_cursor(batches[-1].cursor)["INBOX"]
    assert last[1] == len(names)
    assert all(
        e.raw_ref.startswith(f"imap://{dovecot.user}@127.0.0.1/INBOX;UIDVALIDITY=") for e in events
    )
    assert events[0].received_at.year >= 2024  # INTERNALDATE of the APPEND
    assert [b"\\Seen" in f for f in flags(dovecot)] == [False] * len(names), "keep touched mail"


async def test_the_next_read_after_a_commit_returns_only_new_mail(dovecot: Dovecot) -> None:
    append(dovecot, complaint(1), complaint(2))
    conn = connector(dovecot)
    (first,) = await read_all(conn)
    assert len(first.events) == 2
    assert await read_all(conn, first.cursor) == []  # nothing new: UIDNEXT check, no SEARCH
    append(dovecot, complaint(3))
    (second,) = await read_all(conn, first.cursor)
    assert [e.native_id for e in second.events] == ["c00003@163.com"]
    await conn.close()


async def test_a_worker_killed_between_fetch_and_cursor_commit_loses_and_doubles_nothing(
    dovecot: Dovecot,
) -> None:
    """Read a batch, "die" before the commit (the cursor is not saved), restart from the
    old cursor: the same mails come again with the same ids; after the commit, nothing."""
    append(dovecot, *[complaint(i) for i in range(5)])
    conn = connector(dovecot, batch_size=3)
    reader = conn.read(None)
    first = await reader.__anext__()  # fetched, published perhaps, never committed
    await reader.aclose()
    await conn.close()

    restarted = connector(dovecot, batch_size=3)
    again = await read_all(restarted, None)
    assert [e.id for e in again[0].events] == [e.id for e in first.events]
    ids = [e.id for b in again for e in b.events]
    assert len(ids) == len(set(ids)) == 5
    assert await read_all(restarted, again[-1].cursor) == []
    await restarted.close()


async def test_a_uidvalidity_change_resyncs_without_duplicates_or_losses(
    dovecot: Dovecot, tmp_path: Path
) -> None:
    """The folder is deleted and recreated (new UIDVALIDITY) with the old mails plus a new
    one: every mail is stored exactly once, the new one too."""
    client = admin(dovecot)
    client.create(COMPLAINTS_UTF7)
    client.logout()
    append(dovecot, *[complaint(i) for i in range(3)], folder=COMPLAINTS_UTF7)
    settings = embedded(tmp_path, dovecot, folders=[COMPLAINTS])
    await Worker(settings, once=True, http=False).run()
    assert await stored_ids(settings) == {f"c{i:05d}@163.com" for i in range(3)}

    client = admin(dovecot)
    assert client.delete(COMPLAINTS_UTF7)[0] == "OK"
    assert client.create(COMPLAINTS_UTF7)[0] == "OK"
    client.logout()
    # A migration copies the old mails into the new folder in another order, plus a new one.
    append(dovecot, complaint(2), complaint(0), complaint(1), complaint(3), folder=COMPLAINTS_UTF7)
    await Worker(settings, once=True, http=False).run()
    assert await stored_ids(settings) == {f"c{i:05d}@163.com" for i in range(4)}
    assert await stored_count(settings) == 4


async def test_since_limits_a_backfill_to_recent_mail(dovecot: Dovecot) -> None:
    client = admin(dovecot)
    old = imaplib.Time2Internaldate(time.mktime((2020, 1, 5, 12, 0, 0, 0, 0, -1)))
    client.append("INBOX", None, old, complaint(1))
    client.logout()
    append(dovecot, complaint(2))
    conn = connector(dovecot, since="2024-01-01")
    (batch,) = await read_all(conn)
    assert [e.native_id for e in batch.events] == ["c00002@163.com"]
    await conn.close()


async def test_a_since_that_matches_nothing_moves_the_cursor_past_what_was_looked_at(
    dovecot: Dovecot,
) -> None:
    """`backfill --from-scratch --since` over a folder of older mail only: the pass
    commits a cursor past those mails, not UID 0 (which made the next plain pass read
    the whole folder again)."""
    client = admin(dovecot)
    old = imaplib.Time2Internaldate(time.mktime((2020, 1, 5, 12, 0, 0, 0, 0, -1)))
    for i in (1, 2):
        client.append("INBOX", None, old, complaint(i))
    client.logout()
    conn = connector(dovecot, since="2024-01-01")
    (batch,) = await read_all(conn)  # no cursor: as from scratch
    assert batch.events == [] and load_cursor(batch.cursor)["INBOX"][1] == 2
    await conn.close()

    plain = connector(dovecot)
    assert [b.events for b in await read_all(plain, batch.cursor)] == []
    await plain.close()


async def test_an_oversized_mail_is_dead_lettered_and_the_cursor_moves_past_it(
    dovecot: Dovecot,
) -> None:
    big = complaint(1, "附件很大" + "x" * 5000)
    append(dovecot, big, complaint(2))
    conn = connector(dovecot, max_message_bytes=2000)
    (batch,) = await read_all(conn)
    assert [e.native_id for e in batch.events] == ["c00002@163.com"]
    (bad,) = batch.bad
    assert bad.kind == "oversized" and bad.raw == big and bad.ref.endswith(";UID=1")
    assert load_cursor(batch.cursor)["INBOX"][1] == 2
    await conn.close()


# --- after_ingest ------------------------------------------------------------------------


async def test_after_ingest_seen_marks_only_after_the_commit(dovecot: Dovecot) -> None:
    append(dovecot, complaint(1), complaint(2))
    conn = connector(dovecot, after_ingest="seen")
    (batch,) = await read_all(conn)
    assert not any(b"\\Seen" in f for f in flags(dovecot)), "marked before the commit"
    assert batch.after_commit is not None
    await batch.after_commit()
    assert all(b"\\Seen" in f for f in flags(dovecot))
    await conn.close()


async def test_after_ingest_move_moves_committed_mail_through_the_scheduler(
    dovecot: Dovecot,
) -> None:
    client = admin(dovecot)
    client.create('"Done"')
    client.logout()
    append(dovecot, complaint(1), complaint(2), complaint(3))
    conn = connector(dovecot, after_ingest="move:Done", batch_size=2)
    bus, cursors = MemoryBus(), MemoryCursors()
    await bus.start()
    try:
        scheduler = PullScheduler([conn], Publisher(bus), cursors)
        assert await scheduler.poll_once(conn) == 3
        assert (count(dovecot, "INBOX"), count(dovecot, "Done")) == (0, 3)
        append(dovecot, complaint(4))
        assert await scheduler.poll_once(conn) == 1
        assert (count(dovecot, "INBOX"), count(dovecot, "Done")) == (0, 4)
    finally:
        await conn.close()
        await bus.close()


# --- the running pipeline ----------------------------------------------------------------


def embedded(tmp_path: Path, server: Dovecot, **extra: Any) -> Settings:
    return settings_from_dict(
        {
            "runtime": {"state_dir": str(tmp_path / "state"), "drain_timeout_secs": 10},
            "classify": {"workers": 1},
            "log": {"level": "warning"},
            "connectors": {"kefu": {"type": "imap", **table(server, **extra)}},
        }
    )


async def stored_ids(settings: Settings) -> set[str]:
    store = components.make_store(settings)
    await store.start()
    try:
        feed = components.make_feed(settings)
        await feed.start()
        try:
            top = await feed.top(FeedQuery(limit=1000))
        finally:
            await feed.close()
        return {r.native_id for r in top}
    finally:
        await store.close()


async def stored_count(settings: Settings) -> int:
    store = components.make_store(settings)
    await store.start()
    try:
        return await store.count()
    finally:
        await store.close()


@pytest.fixture
async def running_worker(
    tmp_path: Path, dovecot: Dovecot
) -> AsyncIterator[tuple[Worker, Settings]]:
    # A long poll interval: only IDLE can bring the new mail in within the test's time.
    settings = embedded(tmp_path, dovecot, poll_interval_secs=120.0)
    worker = Worker(settings, http=False)
    task = asyncio.create_task(worker.run())
    try:
        yield worker, settings
    finally:
        worker.request_stop()
        await asyncio.wait_for(task, 30)


@pytest.mark.timeout(60)
async def test_new_mail_reaches_the_feed_at_once_through_idle(
    running_worker: tuple[Worker, Settings], dovecot: Dovecot
) -> None:
    """The embedded pipeline runs; a mail appended to the mailbox is in the feed within a
    few seconds although the next poll is two minutes away (IMAP IDLE)."""
    _, settings = running_worker
    await asyncio.sleep(1.0)  # first poll done, IDLE started
    started = time.monotonic()
    append(dovecot, complaint(42, "我的卡被冻结了，马上处理！"))

    async def arrived() -> bool:
        return "c00042@163.com" in await stored_ids(settings)

    await wait_until(arrived, 20, "the new mail in the feed")
    latency = time.monotonic() - started
    print(f"new-mail-to-feed latency: {latency:.2f}s")
    assert latency < 15


# --- the contract ------------------------------------------------------------------------


class TestImapContract(ConnectorContract):
    """imap keeps the connector contract (ingest/testing.py), against a real Dovecot."""

    connector = ImapConnector
    options = {
        "host": "imap.exmail.qq.com",
        "username": "kefu@bank.example",
        "password": "app-authorisation-code",
        "folders": ["INBOX", COMPLAINTS],
        "after_ingest": "move:已处理",
    }
    bad_check_options = {
        "host": "127.0.0.1",
        "port": 1,
        "username": "kefu@bank.example",
        "password": "x",
        "timeout_secs": 2.0,
    }
    good_payloads = tuple(
        (FIXTURES / n).read_bytes()
        for n in ("gb2312_subject_gbk_chars.eml", "qqmail_reply.eml", "with_attachments.eml")
    )
    bad_payloads = (b"\x00\x01\x02binary\xff\xfe", b"no headers at all")

    @pytest.fixture(autouse=True)
    def _server(self, request: pytest.FixtureRequest) -> Iterator[None]:
        if request.node.name.startswith("test_nothing_is_acknowledged"):
            require_dovecot()
            with Dovecot.start() as server:
                self.server = server
                yield
        else:
            yield

    async def pull_connector(self, tmp_path: Path) -> ImapConnector:
        append(self.server, (FIXTURES / "gbk_quoted_printable.eml").read_bytes())
        return connector(self.server)


async def test_a_mail_with_a_20_mb_attachment_is_fetched_and_read(dovecot: Dovecot) -> None:
    """About 27 MB on the wire: read whole (under max_message_bytes), listed not stored."""
    raw = with_attachments(attachment_bytes=20 * 1024 * 1024)
    append(dovecot, raw, complaint(2))
    conn = connector(dovecot)
    started = time.monotonic()
    (batch,) = await read_all(conn)
    await conn.close()
    big, small = batch.events
    assert big.meta["attachments"][0]["size"] == 20 * 1024 * 1024 + 4
    assert "回执照片" in big.text and small.native_id == "c00002@163.com"
    assert time.monotonic() - started < 20
