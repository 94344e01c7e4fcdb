"""The imap pull connector: the I/O around `parse` (connect, search, fetch, mark/move).

Cursor: one JSON string for all folders, `{"INBOX": [UIDVALIDITY, last UID], …}`. Each
batch carries the cursor that follows its last mail; the runtime saves it only after
the broker confirmed every event of the batch, then awaits `after_commit` (the only
place a mail is ever marked \\Seen or moved). A worker killed anywhere before the save
re-reads the same mails on restart, and their ids (from the Message-ID) are the same.

A changed UIDVALIDITY (the folder was recreated or migrated) voids the stored UIDs: the
folder is read again from its first mail. That resync does not need a seen-set: every
event id is `stable_id("email", Message-ID)`, and the sinks upsert by id keeping the
desk's status and owner, so a re-read mail lands on its existing record (README.md,
"UIDVALIDITY changes").

New mail: IMAP IDLE on the first folder while the runtime waits for the next poll
(`wait_for_input`), a poll every `poll_interval_secs` either way.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import Any

import orjson

from connectors.imap.client import AuthFailed, Fetched, ImapError, ImapSession, uid_set
from connectors.imap.config import ImapOptions
from connectors.imap.parse import (
    CHANNEL,
    RAW_KEEP_BYTES,
    MailContext,
    Outcome,
    Skipped,
    parse_message,
)
from ingest import telemetry
from ingest.abc import BadInput, Batch, PullConnector
from ingest.errors import ConfigError, TransientError
from ingest.log import get_logger
from ingest.model import FeedbackEvent, stable_id

Cursor = dict[str, tuple[int, int]]


def load_cursor(cursor: str | None) -> Cursor:
    """`{"INBOX": [uidvalidity, last_uid]}` → dict; a cursor that is not ours starts over
    (ids are deterministic: a full re-read lands on the same records)."""
    if not cursor:
        return {}
    try:
        doc = orjson.loads(cursor)
        return {
            str(folder): (int(pair[0]), int(pair[1]))
            for folder, pair in doc.items()
            if isinstance(pair, list) and len(pair) == 2
        }
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
        return {}


def dump_cursor(state: Cursor) -> str:
    return orjson.dumps({k: list(v) for k, v in sorted(state.items())}).decode()


class _Progress:
    """Backfill progress of one folder, logged per batch (the runtime's observer draws
    the bar of `run --once` and `backfill` from each batch's counts)."""

    def __init__(self, log: Any, folder: str, total: int) -> None:
        self.log, self.folder, self.total = log, folder, total
        self.done = 0
        self.started = time.monotonic()

    def advance(self, count: int) -> None:
        self.done += count
        elapsed = max(time.monotonic() - self.started, 1e-6)
        self.log.info(
            "imap.progress",
            folder=self.folder,
            done=self.done,
            total=self.total,
            rate_per_sec=round(self.done / elapsed, 1),
        )


class ImapConnector(PullConnector):
    """Reads a service mailbox over IMAP; never changes it unless `after_ingest` says so."""

    type = "imap"
    channel = CHANNEL
    description = (
        "E-mail from a service mailbox over IMAP (TLS, password or XOAUTH2, IDLE): "
        "live intake and backfill, with quoted history, auto-replies and bounces removed"
    )
    Options = ImapOptions
    options: ImapOptions

    def __init__(self, name: str, options: ImapOptions) -> None:
        super().__init__(name, options)
        self.poll_interval_secs = options.poll_interval_secs
        self._log = get_logger("connectors.imap").bind(connector=name)
        self._session: ImapSession | None = None
        self._token_seen: tuple[float, int] | None = None

    @classmethod
    def parse_payload(
        cls, data: bytes, options: Any
    ) -> tuple[Sequence[FeedbackEvent], Sequence[BadInput]]:
        """One saved .eml through the pure parser (`feedback-ingest parse imap mail.eml`);
        an auto-reply or bounce gives neither an event nor a bad input."""
        ctx = MailContext(connector=cls.type, source=options.effective_source)
        outcome = parse_message(data, ctx, max_message_bytes=options.max_message_bytes)
        if isinstance(outcome, FeedbackEvent):
            return [outcome], []
        if isinstance(outcome, BadInput):
            return [], [outcome]
        return [], []

    # --- connection ------------------------------------------------------------------

    async def _token(self) -> str:
        o = self.options
        if o.oauth2_token_file:
            try:
                text = await asyncio.to_thread(_read_text, o.oauth2_token_file)
                st = os.stat(o.oauth2_token_file)
                self._token_seen = (st.st_mtime, st.st_size)
            except OSError as exc:
                raise ImapError(f"cannot read oauth2_token_file: {exc.strerror}") from None
        else:
            text = await _run_token_command(o.oauth2_token_command, o.timeout_secs)
        token = text.strip()
        if not token:
            raise AuthFailed("the OAuth2 token source gave an empty token")
        return token

    def _token_changed(self) -> bool:
        """The token file was replaced since we logged in: reconnect with the new token."""
        path = self.options.oauth2_token_file
        if not path or self._token_seen is None:
            return False
        try:
            st = os.stat(path)
        except OSError:
            return False
        return (st.st_mtime, st.st_size) != self._token_seen

    async def _connect(self) -> ImapSession:
        if self._session is not None and self._token_changed():
            self._log.info("imap.token_changed_reconnect")
            await self._drop()
        if self._session is None:
            session = ImapSession(
                self.options, self._token if self.options.auth == "xoauth2" else None
            )
            try:
                await session.connect()
            except BaseException:
                await session.close()
                raise
            self._session = session
        return self._session

    async def _drop(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def close(self) -> None:
        await self._drop()

    # --- check -----------------------------------------------------------------------

    async def check(self) -> None:
        """Log in and open every folder (and the move target) read-only."""
        key = f"connectors.{self.name}"
        session = ImapSession(self.options, self._token if self.options.auth == "xoauth2" else None)
        try:
            await session.connect()
            for folder in (*self.options.folders, *filter(None, [self.options.move_to])):
                try:
                    await session.open_folder(folder, writable=False)
                except ImapError as exc:
                    raise ConfigError(f"{key}.folders", f"cannot open {folder!r}: {exc}") from None
            if self.options.move_to and not (session.has("MOVE") or session.has("UIDPLUS")):
                raise ConfigError(
                    f"{key}.after_ingest", "the server supports neither MOVE nor UIDPLUS"
                )
        except AuthFailed as exc:
            o = self.options
            field = (
                "password"
                if o.auth == "password"
                else ("oauth2_token_file" if o.oauth2_token_file else "oauth2_token_command")
            )
            raise ConfigError(f"{key}.{field}", str(exc)) from None
        except ImapError as exc:
            if "CERTIFICATE_VERIFY_FAILED" in str(exc) or "certificate" in str(exc).lower():
                raise ConfigError(f"{key}.ca_file", str(exc)) from None
            raise
        finally:
            await session.close()

    # --- read ------------------------------------------------------------------------

    async def read(self, cursor: str | None) -> AsyncGenerator[Batch, None]:
        """Batches of new mail of every folder, oldest first, each with its cursor."""
        state = load_cursor(cursor)
        seen: set[str] = set()
        try:
            session = await self._connect()
            for folder in self.options.folders:
                async for batch in self._read_folder(session, folder, state, seen):
                    yield batch
        except ImapError:
            await self._drop()
            raise

    async def _read_folder(
        self, session: ImapSession, folder: str, state: Cursor, seen: set[str]
    ) -> AsyncGenerator[Batch, None]:
        opened = await session.open_folder(folder, writable=self.options.after_ingest != "keep")
        validity, last = state.get(folder, (opened.uidvalidity, 0))
        if validity != opened.uidvalidity:
            self._log.warning(
                "imap.uidvalidity_changed",
                folder=folder,
                old=validity,
                new=opened.uidvalidity,
                action="resync: re-read the folder, ids from Message-ID dedupe downstream",
            )
            last = 0
        if folder in state and validity == opened.uidvalidity and 0 < opened.uidnext <= last + 1:
            return  # nothing new (cheap check, no SEARCH)
        uids = await session.search_after(last, self.options.since)
        if not uids:
            # Nothing after `last` matched (`since` can exclude every mail): all below
            # UIDNEXT was looked at, so the cursor moves there. Left at `last`, a
            # `backfill --from-scratch --since` that matched nothing would commit UID 0
            # and the next plain pass would read the whole folder again.
            last = max(last, opened.uidnext - 1)
            if state.get(folder) != (opened.uidvalidity, last):
                state[folder] = (opened.uidvalidity, last)
                yield Batch([], cursor=dump_cursor(state))
            return
        sizes = await session.sizes(uids)
        present = [u for u in uids if u in sizes]  # not expunged since the SEARCH
        progress = _Progress(self._log, folder, len(present))
        for chunk in self._chunks(present, sizes):
            outcomes = await self._fetch_and_parse(
                session, folder, opened.uidvalidity, chunk, sizes
            )
            events, bad = self._sort(outcomes, seen)
            state[folder] = (opened.uidvalidity, chunk[-1])
            progress.advance(len(chunk))
            yield Batch(
                events,
                cursor=dump_cursor(state),
                bad=bad,
                after_commit=self._after_ingest(folder, chunk),
                skipped=len(chunk) - len(events) - len(bad),
                pending=progress.total - progress.done,
            )

    def _chunks(self, uids: list[int], sizes: dict[int, int]) -> list[list[int]]:
        """Batches of at most batch_size mails and (beyond the first) batch_max_bytes."""
        chunks: list[list[int]] = []
        current: list[int] = []
        total = 0
        for uid in uids:
            size = min(sizes.get(uid, 0), self.options.max_message_bytes)
            if current and (
                len(current) >= self.options.batch_size
                or total + size > self.options.batch_max_bytes
            ):
                chunks.append(current)
                current, total = [], 0
            current.append(uid)
            total += size
        if current:
            chunks.append(current)
        return chunks

    async def _fetch_and_parse(
        self,
        session: ImapSession,
        folder: str,
        uidvalidity: int,
        chunk: list[int],
        sizes: dict[int, int],
    ) -> list[Outcome]:
        limit = self.options.max_message_bytes
        whole = [u for u in chunk if sizes[u] <= limit]
        heads = [u for u in chunk if sizes[u] > limit]
        fetched = await session.fetch(whole) + await session.fetch(heads, head_bytes=RAW_KEEP_BYTES)
        fetched.sort(key=lambda f: f.uid)
        contexts = [self._context(folder, uidvalidity, f, sizes) for f in fetched]
        return await asyncio.to_thread(
            lambda: [
                parse_message(f.raw, ctx, max_message_bytes=limit)
                for f, ctx in zip(fetched, contexts, strict=True)
            ]
        )

    def _context(
        self, folder: str, uidvalidity: int, fetched: Fetched, sizes: dict[int, int]
    ) -> MailContext:
        o = self.options
        ref = f"imap://{o.username}@{o.host}/{folder};UIDVALIDITY={uidvalidity}/;UID={fetched.uid}"
        return MailContext(
            connector=self.name,
            source=o.effective_source,
            folder=folder,
            internaldate=fetched.internaldate,
            raw_ref=ref,
            size=max(sizes.get(fetched.uid, 0), fetched.size),
        )

    def _sort(
        self, outcomes: list[Outcome], seen: set[str]
    ) -> tuple[list[FeedbackEvent], list[BadInput]]:
        events: list[FeedbackEvent] = []
        bad: list[BadInput] = []
        for outcome in outcomes:
            if isinstance(outcome, FeedbackEvent):
                if outcome.id in seen:  # the same Message-ID twice in this pass
                    telemetry.DROPPED.labels(CHANNEL, f"connector:{self.name}", "duplicate").inc()
                    continue
                seen.add(outcome.id)
                events.append(outcome)
            elif isinstance(outcome, Skipped):
                telemetry.DROPPED.labels(CHANNEL, f"connector:{self.name}", outcome.reason).inc()
                self._log.debug(
                    "imap.skipped",
                    reason=outcome.reason,
                    detail=outcome.detail,
                    event_id=stable_id(CHANNEL, outcome.native_id),  # Message-IDs hold addresses
                )
            else:
                bad.append(outcome)
        return events, bad

    def _after_ingest(self, folder: str, chunk: list[int]) -> Callable[[], Awaitable[None]] | None:
        """Runs after the cursor commit. `move` moves every UID up to the committed one, so a
        move that failed after an earlier commit is done by the next one."""
        action = self.options.after_ingest
        if action == "keep":
            return None

        async def apply() -> None:
            session = await self._connect()
            try:
                if session.selected != folder or not session.writable:
                    await session.open_folder(folder, writable=True)
                if action == "seen":
                    await session.mark_seen(uid_set(chunk))
                else:
                    await session.move(f"1:{chunk[-1]}", self.options.move_to)
            except ImapError as exc:
                await self._drop()
                raise TransientError(
                    f"after_ingest {action!r} in {folder!r} failed: {exc}"
                ) from None

        return apply

    # --- waiting for new mail ----------------------------------------------------------

    async def wait_for_input(self, timeout_secs: float) -> None:
        """IDLE on the first folder until new mail arrives, at most `timeout_secs`;
        without IDLE (or after it failed) just sleep."""
        started = time.monotonic()
        session = self._session
        if not self.options.idle or session is None or not session.has("IDLE"):
            await asyncio.sleep(timeout_secs)
            return
        folder = self.options.folders[0]
        try:
            if session.selected != folder:
                await session.open_folder(folder, writable=self.options.after_ingest != "keep")
            if await session.idle(min(timeout_secs, self.options.idle_renew_secs)):
                self._log.debug("imap.idle_new_mail", folder=folder)
            return
        except ImapError as exc:
            self._log.warning("imap.idle_failed", error=str(exc))
            await self._drop()
        except asyncio.CancelledError:
            await self._drop()
            raise
        await asyncio.sleep(max(0.0, timeout_secs - (time.monotonic() - started)))


def _read_text(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


async def _run_token_command(argv: Sequence[str], timeout_secs: float) -> str:
    try:
        process = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
    except OSError as exc:
        raise ImapError(f"oauth2_token_command cannot run: {exc.strerror}") from None
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout_secs)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise ImapError("oauth2_token_command timed out") from None
    if process.returncode != 0:
        raise ImapError(
            f"oauth2_token_command exited {process.returncode}: "
            + err.decode(errors="replace")[:200]
        )
    return out.decode("utf-8", errors="replace")
