"""imap connector parts that need no server: the XOAUTH2 token sources and batching."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from connectors.imap.client import MAX_LINES_PER_FEED, ImapError, bounded_feed
from connectors.imap.config import ImapOptions
from connectors.imap.connector import ImapConnector
from ingest.options import parse_options


def oauth(**extra: object) -> ImapConnector:
    table = {"host": "imap.gmail.com", "username": "kefu@bank.example", "auth": "xoauth2", **extra}
    return ImapConnector("kefu", parse_options(ImapOptions, table, "kefu"))


async def test_the_token_file_is_reread_and_a_replaced_file_means_reconnect(
    tmp_path: Path,
) -> None:
    token = tmp_path / "token"
    token.write_text("ya29.first-token\n")
    conn = oauth(oauth2_token_file=str(token))
    assert await conn._token() == "ya29.first-token"
    assert not conn._token_changed()
    token.write_text("ya29.second-token-after-refresh\n")
    os.utime(token, (1, 1))  # a refresher replaced it (mtime differs whatever the clock)
    assert conn._token_changed()
    assert await conn._token() == "ya29.second-token-after-refresh"
    assert not conn._token_changed()


async def test_the_token_command_runs_on_every_connect(tmp_path: Path) -> None:
    counter = tmp_path / "n"
    script = (
        "import pathlib,sys; p=pathlib.Path(sys.argv[1]); "
        "n=int(p.read_text()) + 1 if p.exists() else 1; p.write_text(str(n)); print(f'tok{n}')"
    )
    conn = oauth(oauth2_token_command=[sys.executable, "-c", script, str(counter)])
    assert await conn._token() == "tok1"
    assert await conn._token() == "tok2"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"oauth2_token_file": "/nonexistent/token"}, "cannot read"),
        ({"oauth2_token_command": [sys.executable, "-c", "import sys; sys.exit(3)"]}, "exited 3"),
        ({"oauth2_token_command": ["/nonexistent/refresh-token"]}, "cannot run"),
        ({"oauth2_token_command": [sys.executable, "-c", "print('')"]}, "empty token"),
    ],
)
async def test_a_broken_token_source_is_a_clear_retryable_error(
    extra: dict[str, object], message: str
) -> None:
    with pytest.raises(ImapError, match=message):
        await oauth(**extra)._token()


def test_batches_end_at_batch_size_or_batch_max_bytes() -> None:
    table = {
        "host": "h",
        "username": "u",
        "password": "p",
        "batch_size": 3,
        "batch_max_bytes": 1000,
        "max_message_bytes": 5000,
    }
    conn = ImapConnector("kefu", parse_options(ImapOptions, table, "kefu"))
    sizes = {1: 100, 2: 100, 3: 100, 4: 100, 5: 900, 6: 50_000, 7: 10}
    assert conn._chunks(list(sizes), sizes) == [[1, 2, 3], [4, 5], [6], [7]]


def test_received_data_reaches_aioimaplib_in_bounded_pieces() -> None:
    """A 256 KiB read of short FETCH lines once overflowed aioimaplib's per-line recursion
    (found by the 10 000-mail backfill bench); pieces of at most 100 lines, same bytes."""
    pieces: list[bytes] = []
    data = b"".join(b"* %d FETCH (UID %d RFC822.SIZE 43)\r\n" % (i, i) for i in range(1, 3001))
    bounded_feed(pieces.append)(data + b"A1 OK Fetch comp")
    assert b"".join(pieces) == data + b"A1 OK Fetch comp"
    assert max(p.count(b"\r\n") for p in pieces) == MAX_LINES_PER_FEED
    whole: list[bytes] = []
    bounded_feed(whole.append)(b"short\r\n")
    assert whole == [b"short\r\n"]
