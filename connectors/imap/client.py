"""The IMAP conversation the connector needs, over aioimaplib, with its gaps filled in
(STARTTLS, EXAMINE as a selected state, FETCH literal parsing) and every library or
network error translated at this boundary:

    ImapError (TransientError)   network down, timeout, server said NO/BAD: retry later
    └── AuthFailed               the server refused the credentials (check → ConfigError)
"""

from __future__ import annotations

import asyncio
import base64
import re
import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import aioimaplib
from aioimaplib import aioimaplib as imap_impl

from connectors.imap.config import ImapOptions
from ingest import __version__
from ingest.errors import TransientError

T = TypeVar("T")
TokenSource = Callable[[], Awaitable[str]]

_FETCH_HEAD = re.compile(rb"^\d+ FETCH \(")
_UID = re.compile(rb"\bUID (\d+)")
_SIZE = re.compile(rb"\bRFC822\.SIZE (\d+)")
_DATE = re.compile(rb'\bINTERNALDATE "([^"]+)"')
_LITERAL = re.compile(rb"\{(\d+)\}$")
_STATUS_CODE = re.compile(rb"\[(UIDVALIDITY|UIDNEXT) (\d+)\]")


class ImapError(TransientError):
    """The server or the network failed; the same request may work later."""


class AuthFailed(ImapError):
    """The server refused the login (wrong password / authorisation code / token)."""


@dataclass(frozen=True, slots=True)
class FolderState:
    uidvalidity: int
    uidnext: int
    exists: int


@dataclass(frozen=True, slots=True)
class Fetched:
    uid: int
    size: int
    internaldate: datetime | None
    raw: bytes


def encode_folder(name: str) -> str:
    """A folder name in IMAP's modified UTF-7 (RFC 3501 §5.1.3), quoted for a command."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            data = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(data).decode().rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    encoded = "".join(out)
    return '"' + encoded.replace("\\", "\\\\").replace('"', '\\"') + '"'


def uid_set(uids: Iterable[int]) -> str:
    """1,2,3,7 → "1:3,7"."""
    ordered = sorted(set(uids))
    ranges: list[str] = []
    start = prev = None
    for uid in ordered:
        if start is None:
            start = prev = uid
        elif prev is not None and uid == prev + 1:
            prev = uid
        else:
            ranges.append(f"{start}:{prev}" if start != prev else str(start))
            start = prev = uid
    if start is not None:
        ranges.append(f"{start}:{prev}" if start != prev else str(start))
    return ",".join(ranges)


def parse_fetch(lines: Sequence[Any]) -> list[Fetched]:
    """aioimaplib's FETCH lines: `n FETCH (UID u … BODY[] {len}`, the literal, then `)`
    (or more attributes, which some servers put after the body)."""
    out: list[Fetched] = []
    i = 0
    while i < len(lines):
        line = bytes(lines[i])
        i += 1
        if not _FETCH_HEAD.match(line):
            continue
        attrs, raw = line, b""
        literal = _LITERAL.search(line)
        if literal and i < len(lines):
            raw = bytes(lines[i])
            i += 1
            if i < len(lines) and not _FETCH_HEAD.match(bytes(lines[i])):
                attrs += b" " + bytes(lines[i])
                i += 1
        uid = _UID.search(attrs)
        if uid is None:
            continue
        size = _SIZE.search(attrs)
        date = _DATE.search(attrs)
        out.append(
            Fetched(
                uid=int(uid.group(1)),
                size=int(size.group(1)) if size else len(raw),
                internaldate=_internaldate(date.group(1).decode()) if date else None,
                raw=raw,
            )
        )
    return out


def _internaldate(value: str) -> datetime | None:
    try:
        return datetime.strptime(value.strip(), "%d-%b-%Y %H:%M:%S %z")
    except ValueError:
        return None


MAX_LINES_PER_FEED = 100


def bounded_feed(data_received: Callable[[bytes], None]) -> Callable[[bytes], None]:
    """aioimaplib parses a received chunk with one recursive call per line, so a chunk
    of a thousand short lines (a 256 KiB TLS read of `UID FETCH … RFC822.SIZE`) overflows
    Python's recursion limit. Feeding it at most MAX_LINES_PER_FEED lines at a time
    bounds the depth; it already handles lines and literals split across calls."""

    def feed(data: bytes) -> None:
        start, size = 0, len(data)
        while start < size:
            end = start
            for _ in range(MAX_LINES_PER_FEED):
                found = data.find(b"\r\n", end)
                if found < 0:
                    end = size
                    break
                end = found + 2
            data_received(data[start:end] if start or end < size else data)
            start = end

    return feed


class SaslInitialResponse(imap_impl.Command):  # type: ignore[misc]  # aioimaplib is untyped
    """`AUTHENTICATE <mechanism> <initial response>` (RFC 4959) that answers the server's
    error challenge. A server refusing an XOAUTH2 token first sends a continuation holding
    a Base64 JSON error and sends its tagged NO only after an empty client response
    (channels.md §3). aioimaplib records that continuation but never answers it, so its
    own `xoauth2()` waits for the timeout and a revoked token looks like a dead network."""

    def __init__(self, protocol: Any, mechanism: str, initial_response: str) -> None:
        super().__init__(
            "AUTHENTICATE", protocol.new_tag(), mechanism, initial_response, loop=protocol.loop
        )
        self._protocol = protocol
        self.challenges: list[bytes] = []

    def flush(self) -> None:
        """Called by aioimaplib after each continuation line: answer it with an empty
        response, which ends the exchange (the server then sends the tagged NO)."""
        self.challenges.append(bytes(self._resp_lines[-1]) if self._resp_lines else b"")
        self._protocol.transport.write(b"\r\n")


def xoauth2_response(user: str, token: str) -> str:
    """The XOAUTH2 initial response: `user=…^Aauth=Bearer …^A^A`, Base64."""
    return base64.b64encode(f"user={user}\x01auth=Bearer {token}\x01\x01".encode()).decode()


def sasl_error(challenges: Sequence[bytes]) -> str:
    """The `status` of an XOAUTH2 error challenge (`+ eyJzdGF0dXMiOi…`), for the message."""
    for line in challenges:
        try:
            text = base64.b64decode(line.removeprefix(b"+").strip(), validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            continue
        status = re.search(r'"status"\s*:\s*"([^"]{1,80})"', text)
        if status:
            return status.group(1)
    return ""


def ssl_context(options: ImapOptions) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=options.ca_file or None)
    if not options.tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class ImapSession:
    """One logged-in connection. Every method raises `ImapError` on failure; after one
    the session is unusable and the connector opens a new one."""

    def __init__(self, options: ImapOptions, token: TokenSource | None = None) -> None:
        self.options = options
        self._token = token
        self._client: aioimaplib.IMAP4 | None = None
        self._lost: asyncio.Future[str] | None = None
        self.selected = ""
        self.writable = False

    @property
    def client(self) -> aioimaplib.IMAP4:
        if self._client is None:
            raise ImapError("not connected")
        return self._client

    def has(self, capability: str) -> bool:
        return self._client is not None and self._client.has_capability(capability)

    def _connection_lost(self, exc: Exception | None) -> None:
        """aioimaplib's hook for a closed connection. aioimaplib itself fails no pending
        command and keeps its state, so without this the next command waits for the
        timeout: a server that drops the session (`* BYE`, token expired, restart, a
        NAT timeout) cost `timeout_secs` per poll instead of an immediate reconnect."""
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(f"connection closed{f': {exc}' if exc else ' by the server'}")

    async def _until_lost(self, what: str, step: Awaitable[T]) -> T:
        """`step`, unless the connection is lost first (then `ImapError` at once)."""
        lost = self._lost
        if lost is None:
            return await step
        if lost.done():
            close = getattr(step, "close", None)
            if close is not None:
                close()  # a coroutine never started: no "never awaited" warning
            raise ImapError(f"{what}: {lost.result()}")
        task = asyncio.ensure_future(step)
        either: set[asyncio.Future[Any]] = {task, lost}
        try:
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if task.cancelled():
            raise ImapError(f"{what}: {lost.result()}")
        return task.result()

    async def _guard(self, what: str, step: Awaitable[T]) -> T:
        try:
            return await self._until_lost(what, step)
        except ImapError:
            raise
        except TimeoutError:
            raise ImapError(f"{what}: no answer within {self.options.timeout_secs}s") from None
        except ssl.SSLError as exc:
            raise ImapError(f"{what}: TLS failed: {exc.reason or exc}") from None
        except OSError as exc:
            raise ImapError(f"{what}: {exc.strerror or exc}") from None
        except (imap_impl.Abort, imap_impl.Error, imap_impl.CommandTimeout) as exc:
            raise ImapError(f"{what}: {exc}") from None

    def _ok(self, what: str, response: Any) -> Any:
        if response.result != "OK":
            text = b" ".join(bytes(x) for x in response.lines[-1:]).decode(errors="replace")
            raise ImapError(f"{what}: server said {response.result} {text[:200]}")
        return response

    async def connect(self) -> None:
        o = self.options
        host, port, timeout = o.host, o.effective_port, o.timeout_secs
        context = ssl_context(o)
        if o.security == "tls":
            client: aioimaplib.IMAP4 = aioimaplib.IMAP4_SSL(
                host, port, timeout=timeout, ssl_context=context
            )
        else:
            client = aioimaplib.IMAP4(host, port, timeout=timeout)
        self._client = client
        self._lost = asyncio.get_running_loop().create_future()
        client.protocol.data_received = bounded_feed(client.protocol.data_received)
        client.protocol.conn_lost_cb = self._connection_lost
        await self._guard(f"connect to {host}:{port}", client.wait_hello_from_server())
        if o.security == "starttls":
            await self._guard("STARTTLS", self._starttls(context))
        await self._login()
        if o.send_id and self.has("ID"):
            await self._guard("ID", client.id(name="feedback-ingest", version=__version__))

    async def _starttls(self, context: ssl.SSLContext) -> None:
        protocol = self.client.protocol
        if "STARTTLS" not in protocol.capabilities:
            raise ImapError("STARTTLS: the server does not offer it (security = 'starttls')")
        command = imap_impl.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop)
        self._ok(
            "STARTTLS", await asyncio.wait_for(protocol.execute(command), self.options.timeout_secs)
        )
        loop = asyncio.get_running_loop()
        transport = await loop.start_tls(
            protocol.transport, protocol, context, server_hostname=self.options.host
        )
        protocol.transport = transport
        await asyncio.wait_for(protocol.capability(), self.options.timeout_secs)

    async def _login(self) -> None:
        o, client = self.options, self.client
        if o.auth == "password":
            response = await self._guard("LOGIN", client.login(o.username, o.password.reveal()))
        else:
            assert self._token is not None
            response = await self._guard("AUTHENTICATE XOAUTH2", self._xoauth2(await self._token()))
        if response.result != "OK":
            lines = [bytes(x) for x in response.lines if not bytes(x).startswith(b"+")]
            text = b" ".join(lines).decode(errors="replace")
            # not the username: it is an address, and this message is logged per poll
            raise AuthFailed(f"{o.auth} login refused: {text[:200]}")
        await self._guard("CAPABILITY", client.protocol.capability())

    async def _xoauth2(self, token: str) -> Any:
        protocol = self.client.protocol
        initial = xoauth2_response(self.options.username, token)
        command = SaslInitialResponse(protocol, "XOAUTH2", initial)
        response = await asyncio.wait_for(
            protocol.execute(command, scrub=initial), self.options.timeout_secs
        )
        if response.result == "OK":
            protocol.state = imap_impl.AUTH
        elif status := sasl_error(command.challenges):
            response.lines.append(f"({status})".encode())
        return response

    async def open_folder(self, folder: str, *, writable: bool) -> FolderState:
        """EXAMINE (read-only) or SELECT the folder; its UIDVALIDITY and UIDNEXT."""
        client = self.client
        name = encode_folder(folder)
        if writable:
            response = await self._guard(f"SELECT {folder}", client.select(name))
        else:
            response = await self._guard(f"EXAMINE {folder}", client.examine(name))
        self._ok(f"open folder {folder!r}", response)
        client.protocol.state = imap_impl.SELECTED  # aioimaplib forgets EXAMINE selects
        self.selected, self.writable = folder, writable
        codes = {
            m.group(1): int(m.group(2))
            for x in response.lines
            for m in _STATUS_CODE.finditer(bytes(x))
        }
        exists = next(
            (int(bytes(x).split()[0]) for x in response.lines if bytes(x).endswith(b" EXISTS")), 0
        )
        if b"UIDVALIDITY" not in codes:
            raise ImapError(f"open folder {folder!r}: the server sent no UIDVALIDITY")
        return FolderState(codes[b"UIDVALIDITY"], codes.get(b"UIDNEXT", 0), exists)

    async def search_after(self, last_uid: int, since: str = "") -> list[int]:
        """UIDs above `last_uid`. `n:*` also returns the highest UID when n is above it
        (channels.md §3), so results are filtered."""
        criteria = [f"UID {last_uid + 1}:*"]
        if since:
            criteria.append("SINCE " + datetime.fromisoformat(since).strftime("%d-%b-%Y"))
        response = self._ok(
            "UID SEARCH",
            await self._guard("UID SEARCH", self.client.uid_search(*criteria, charset=None)),
        )
        uids: list[int] = []
        for line in response.lines[:-1]:
            words = bytes(line).split()
            if words[:1] == [b"SEARCH"]:
                words = words[1:]
            uids.extend(int(w) for w in words if w.isdigit())
        return sorted(u for u in set(uids) if u > last_uid)

    async def sizes(self, uids: Sequence[int]) -> dict[int, int]:
        out: dict[int, int] = {}
        for start in range(0, len(uids), 1000):
            chunk = uid_set(uids[start : start + 1000])
            response = self._ok(
                "UID FETCH size",
                await self._guard(
                    "UID FETCH", self.client.uid("fetch", chunk, "(UID RFC822.SIZE)")
                ),
            )
            out.update({f.uid: f.size for f in parse_fetch(response.lines)})
        return out

    async def fetch(self, uids: Sequence[int], *, head_bytes: int = 0) -> list[Fetched]:
        """Whole messages (BODY.PEEK: never sets \\Seen), or only their first `head_bytes`."""
        if not uids:
            return []
        body = f"BODY.PEEK[]<0.{head_bytes}>" if head_bytes else "BODY.PEEK[]"
        response = self._ok(
            "UID FETCH",
            await self._guard(
                "UID FETCH",
                self.client.uid("fetch", uid_set(uids), f"(UID INTERNALDATE RFC822.SIZE {body})"),
            ),
        )
        return parse_fetch(response.lines)

    async def mark_seen(self, uids: str) -> None:
        response = await self._guard(
            "UID STORE", self.client.uid("store", uids, "+FLAGS.SILENT", "(\\Seen)")
        )
        self._ok("UID STORE \\Seen", response)

    async def move(self, uids: str, folder: str) -> None:
        target = encode_folder(folder)
        if self.has("MOVE"):
            self._ok(
                "UID MOVE", await self._guard("UID MOVE", self.client.uid("move", uids, target))
            )
            return
        if not self.has("UIDPLUS"):
            raise ImapError("the server has neither MOVE nor UIDPLUS: cannot move safely")
        self._ok("UID COPY", await self._guard("UID COPY", self.client.uid("copy", uids, target)))
        self._ok(
            "UID STORE",
            await self._guard(
                "UID STORE", self.client.uid("store", uids, "+FLAGS.SILENT", "(\\Deleted)")
            ),
        )
        self._ok("UID EXPUNGE", await self._guard("UID EXPUNGE", self.client.uid("expunge", uids)))

    async def idle(self, timeout_secs: float) -> bool:
        """IDLE until the server reports new mail (True) or `timeout_secs` pass (False)."""
        client = self.client
        idle = await self._guard("IDLE", client.idle_start(timeout=timeout_secs))
        try:
            while True:
                push = await self._guard("IDLE", client.wait_server_push(timeout=timeout_secs + 5))
                if push == imap_impl.STOP_WAIT_SERVER_PUSH:
                    return False
                if any(bytes(line).endswith(b"EXISTS") for line in push):
                    return True
        finally:
            if client.has_pending_idle():
                client.idle_done()
                await self._guard("DONE", asyncio.wait_for(idle, self.options.timeout_secs))

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        lost, self._lost = self._lost, None
        try:
            alive = lost is None or not lost.done()
            if alive and client.protocol.state in (imap_impl.AUTH, imap_impl.SELECTED):
                await asyncio.wait_for(client.logout(), 5)
        except Exception:
            pass
        transport = getattr(client.protocol, "transport", None)
        if transport is not None:
            transport.close()
