"""imap with `auth = "xoauth2"` against a real Dovecot whose oauth2 passdb checks every
token at a token-introspection endpoint (RFC 7662, `introspection_mode = post`) that
the test serves, as an identity provider would: tokens from `oauth2_token_file` and
from `oauth2_token_command`, rotation (the old token revoked at once), a session the
server drops, a refresher that lags behind, and a revoked token refused at once rather
than after the command timeout."""

from __future__ import annotations

import itertools
import os
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from connectors.imap.client import AuthFailed
from connectors.imap.connector import ImapConnector
from ingest.bus.memory import MemoryBus
from ingest.errors import ConfigError, TransientError
from ingest.runtime.backoff import Backoff
from ingest.runtime.publish import Publisher
from ingest.runtime.pull import PullScheduler
from ingest.testing import MemoryCursors
from tests.dovecot import USER, Dovecot
from tests.integration.test_imap import append, complaint, connector, read_all, require_dovecot

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]
REFUSED_WITHIN_SECS = 5.0
"""A revoked token must be refused this fast (the command timeout is 60 s)."""


class IdentityProvider:
    """What Dovecot's oauth2 passdb and a token refresher talk to: `POST /introspect`
    (`token=…`, answered `{"active": true, "username": …}` for the current token only)
    and `GET /token` (the current token, for a refresher command; `lag` answers still
    hand out the previous one, as a refresher's cache does right after a rotation)."""

    def __init__(self) -> None:
        self._numbers = itertools.count(1)
        self.current = self._new()
        self.previous = ""
        self.lag = 0
        self.introspected: list[tuple[str, bool]] = []
        self.handed_out: list[str] = []
        self.url = ""

    def _new(self) -> str:
        return f"ya29.s3cret-token-for-tests-{next(self._numbers)}"

    def rotate(self, *, lag: int = 0) -> str:
        """A new token; the old one is revoked at once."""
        self.previous, self.current, self.lag = self.current, self._new(), lag
        return self.current

    async def introspect(self, request: web.Request) -> web.Response:
        token = str((await request.post()).get("token", ""))
        active = token == self.current
        self.introspected.append((token, active))
        if not active:
            return web.json_response({"active": False})
        return web.json_response({"active": True, "username": USER, "scope": "imap"})

    async def token(self, _: web.Request) -> web.Response:
        token = self.previous if self.lag > 0 else self.current
        self.lag = max(0, self.lag - 1)
        self.handed_out.append(token)
        return web.Response(text=token + "\n")


@pytest.fixture
async def idp() -> AsyncIterator[IdentityProvider]:
    provider = IdentityProvider()
    app = web.Application()
    app.router.add_post("/introspect", provider.introspect)
    app.router.add_get("/token", provider.token)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    provider.url = f"http://127.0.0.1:{port}"
    try:
        yield provider
    finally:
        await runner.cleanup()


@pytest.fixture
def dovecot(idp: IdentityProvider) -> Iterator[Dovecot]:
    require_dovecot()
    with Dovecot.start(oauth2_introspection_url=f"{idp.url}/introspect") as server:
        yield server


def oauth(server: Dovecot, **extra: Any) -> ImapConnector:
    return connector(server, auth="xoauth2", password="", **extra)


def replace_file(path: Path, text: str) -> None:
    """As a refresher writes it: a new file renamed over the old one."""
    part = path.with_suffix(".part")
    part.write_text(text + "\n", encoding="utf-8")
    os.replace(part, path)


async def test_token_file_logins_follow_a_rotation_and_a_revoked_token_is_refused_at_once(
    dovecot: Dovecot, idp: IdentityProvider, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    replace_file(token_file, idp.current)
    first = idp.current
    append(dovecot, complaint(1))
    conn = oauth(dovecot, oauth2_token_file=str(token_file))
    (batch,) = await read_all(conn)
    assert [e.native_id for e in batch.events] == ["c00001@163.com"]
    assert idp.introspected == [(first, True)]

    # The refresher rotates the token and replaces the file; the old token is revoked.
    # The next poll sees the new file and logs in again with it, before anything fails.
    second = idp.rotate()
    replace_file(token_file, second)
    append(dovecot, complaint(2))
    (batch,) = await read_all(conn, batch.cursor)
    assert [e.native_id for e in batch.events] == ["c00002@163.com"]
    assert idp.introspected[-1] == (second, True)

    # Rotated again, but the refresher has not written the file yet when the server
    # drops the session: the poll fails (retryable), the reconnect with the revoked
    # token is refused at once, and once the file holds the new token all is well.
    third = idp.rotate()
    dovecot.kick()
    append(dovecot, complaint(3))
    with pytest.raises(TransientError):
        await read_all(conn, batch.cursor)
    started = time.monotonic()
    with pytest.raises(AuthFailed, match="xoauth2 login refused"):
        await read_all(conn, batch.cursor)
    assert time.monotonic() - started < REFUSED_WITHIN_SECS
    assert idp.introspected[-1] == (second, False)
    replace_file(token_file, third)
    (batch,) = await read_all(conn, batch.cursor)
    assert [e.native_id for e in batch.events] == ["c00003@163.com"]
    assert idp.introspected[-1] == (third, True)
    await conn.close()

    # `feedback-ingest check` with a revoked token names the option to fix.
    replace_file(token_file, second)
    with pytest.raises(ConfigError) as info:
        await oauth(dovecot, oauth2_token_file=str(token_file)).check()
    assert info.value.key == "connectors.kefu.oauth2_token_file"


async def test_a_token_command_is_run_again_on_every_reconnect_until_its_token_works(
    dovecot: Dovecot, idp: IdentityProvider
) -> None:
    """Through the runtime's retries: after a rotation the server drops the session; the
    reconnect runs the command, whose refresher still hands out the revoked token once
    (refused), then the new one (accepted): the poll completes with the new mail."""
    fetch = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())"
    command = [sys.executable, "-c", fetch, f"{idp.url}/token"]
    conn = oauth(dovecot, oauth2_token_command=command)
    bus, cursors = MemoryBus(), MemoryCursors()
    await bus.start()
    scheduler = PullScheduler([conn], Publisher(bus), cursors, Backoff(0.05, 0.2))
    try:
        append(dovecot, complaint(1))
        assert await scheduler.run_once() == 1
        first = idp.current
        assert (idp.handed_out, idp.introspected) == ([first], [(first, True)])

        second = idp.rotate(lag=1)
        dovecot.kick()
        append(dovecot, complaint(2))
        started = time.monotonic()
        assert await scheduler.run_once() == 1
        assert time.monotonic() - started < REFUSED_WITHIN_SECS + 2
        assert idp.handed_out == [first, first, second]
        assert idp.introspected[1:] == [(first, False), (second, True)]
        assert await scheduler.run_once() == 0  # the cursor was committed: nothing again
    finally:
        await conn.close()
        await bus.close()
