"""The transcripts connector: I/O only, around the pure `parse_transcript`.

Both inputs of one source in one class (mode "both"): the runtime polls the drop
folder and mounts the webhook. A dropped file is one call; moving it (and its sidecar)
to `done/` or `failed/` is its commit, run by the runtime only after the broker
confirmed the event or the dead letter. A webhook is answered only after that confirm,
so the sender's retry is the safety net. Either way the id comes from the call id:
the same call delivered twice, or by both paths, is one record.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal

from aiohttp import web

from connectors.transcripts.config import DEAD_LETTER_BYTES, TranscriptsOptions
from connectors.transcripts.parse import CHANNEL, parse_transcript
from connectors.transcripts.signing import verify
from ingest import dropfolder
from ingest.abc import BadInput, Batch, PullConnector, PushConnector, Route
from ingest.dropfolder import DONE, FAILED, SettledFile, open_regular
from ingest.errors import Rejected
from ingest.log import get_logger
from ingest.model import FeedbackEvent

SIDECAR_SUFFIX = ".meta.json"
MAX_SIDECAR_BYTES = 64 << 10


@dataclass(frozen=True, slots=True)
class _Dropped:
    """One settled transcript as read: its bytes (or just the head if oversized)."""

    found: SettledFile
    data: bytes
    sidecar: Path | None
    sidecar_data: bytes | None
    oversized: bool


def sidecar_of(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


class TranscriptsConnector(PullConnector, PushConnector):
    """Phone-call transcripts from a drop folder and a signed webhook."""

    type = "transcripts"
    channel = CHANNEL
    description = (
        "phone-call transcripts (Alibaba recording-file recognition, Amazon Connect "
        "Contact Lens, generic JSON) from a drop folder and an HMAC-signed webhook"
    )
    mode: ClassVar[Literal["pull", "push", "both"]] = "both"
    Options = TranscriptsOptions
    options: TranscriptsOptions
    keeps_cursor = False  # moving a file to done/ is its commit

    def __init__(self, name: str, options: TranscriptsOptions) -> None:
        super().__init__(name, options)
        self.poll_interval_secs = options.poll_interval_secs
        self.folder = Path(options.path) if options.path.strip() else None
        self.clock: Callable[[], float] = time.time
        self._log = get_logger("connectors.transcripts").bind(connector=name)

    @classmethod
    def parse_payload(
        cls, data: bytes, options: Any
    ) -> tuple[Sequence[FeedbackEvent], Sequence[BadInput]]:
        """One saved transcript through the pure parser (`feedback-ingest parse`)."""
        return parse_transcript(data, options, received_at=datetime.now(UTC), ref="payload")

    async def check(self) -> None:
        """The drop folder (if any) exists and done/, failed/ and files can be created;
        the webhook has nothing to reach (its secret was validated with the options)."""
        if self.folder is not None:
            key = f"connectors.{self.name}.path"
            await asyncio.to_thread(dropfolder.prepare, self.folder, key, ".transcripts")

    # --- drop folder -------------------------------------------------------------

    async def read(self, cursor: str | None) -> AsyncGenerator[Batch, None]:
        """One batch per settled transcript, oldest first; its commit moves the file."""
        if self.folder is None:
            return
        found = await asyncio.to_thread(
            dropfolder.settled_files,
            self.folder,
            self.options.patterns,
            self.options.settle_secs,
            skip=lambda name: name.endswith(SIDECAR_SUFFIX),
            log=self._log,
        )
        for item in found:
            dropped = await asyncio.to_thread(self._load, item)
            if dropped is not None:
                yield self._batch(dropped)

    def _load(self, found: SettledFile) -> _Dropped | None:
        """The file's bytes (only a bounded head if it is over the limit) and its
        sidecar; None if it vanished or changed since it was listed."""
        try:
            with open_regular(found.path) as stream:
                oversized = found.size > self.options.max_file_bytes
                data = stream.read(DEAD_LETTER_BYTES if oversized else found.size + 1)
                if not found.same(os.fstat(stream.fileno())):
                    self._log.info("transcripts.still_changing", file=found.path.name)
                    return None
        except OSError as exc:  # vanished or unreadable: logged every poll until fixed
            self._log.error("transcripts.open_failed", file=found.path.name, error=str(exc))
            return None
        sidecar = sidecar_of(found.path)
        try:
            with open_regular(sidecar) as stream:
                sidecar_data: bytes | None = stream.read(MAX_SIDECAR_BYTES + 1)
        except FileNotFoundError:
            return _Dropped(found, data, None, None, oversized)
        except OSError as exc:
            self._log.error("transcripts.sidecar_unreadable", file=sidecar.name, error=str(exc))
            return None
        return _Dropped(found, data, sidecar, sidecar_data, oversized)

    def _batch(self, dropped: _Dropped) -> Batch:
        name = dropped.found.path.name
        ref = f"transcripts:{self.name}/{name}"
        events: Sequence[FeedbackEvent]
        bad: Sequence[BadInput]
        if dropped.oversized:
            reason = (
                f"{name}: {dropped.found.size} bytes, the limit is max_file_bytes = "
                f"{self.options.max_file_bytes}"
            )
            events, bad = [], [BadInput(reason, dropped.data, ref, "oversized")]
        elif dropped.sidecar_data is not None and len(dropped.sidecar_data) > MAX_SIDECAR_BYTES:
            reason = f"{name}{SIDECAR_SUFFIX}: sidecar over {MAX_SIDECAR_BYTES} bytes"
            events, bad = (
                [],
                [BadInput(reason, dropped.data[:DEAD_LETTER_BYTES], ref, "bad_sidecar")],
            )
        else:
            mtime = datetime.fromtimestamp(dropped.found.mtime_ns / 1e9, UTC)
            events, bad = parse_transcript(
                dropped.data,
                self.options,
                received_at=mtime,
                name=name,
                sidecar=dropped.sidecar_data,
                ref=ref,
            )
        to = FAILED if bad else DONE
        self._log.info("transcripts.read", file=name, events=len(events), to=to)
        return Batch(events=events, cursor=None, bad=bad, after_commit=self._mover(dropped, to))

    def _mover(self, dropped: _Dropped, to: str) -> Callable[[], Awaitable[None]]:
        async def move() -> None:
            await asyncio.to_thread(self._move, dropped, to)

        return move

    def _move(self, dropped: _Dropped, to: str) -> None:
        assert self.folder is not None
        moved = dropfolder.move(self.folder, dropped.found, to, self._log)
        if moved is not None and dropped.sidecar is not None and dropped.sidecar.exists():
            dropfolder.move_path(self.folder, dropped.sidecar, to, self._log)

    # --- webhook -----------------------------------------------------------------

    def routes(self) -> Sequence[Route]:
        return [Route("POST", self.receive)]

    async def receive(self, request: web.Request) -> web.Response:
        """Verify, parse, publish with a confirm, then answer: 200 with the record id,
        400 (after dead-lettering it) for a signed but unusable transcript."""
        secret = self.options.secret.reveal()
        if not secret:
            raise Rejected(404, "disabled", "webhook disabled: no secret configured")
        body = await request.read()
        verify(
            secret,
            request.headers.get(self.options.signature_header),
            request.headers.get(self.options.timestamp_header),
            body,
            now_secs=self.clock(),
            window_secs=self.options.replay_window_secs,
        )
        events, bad = parse_transcript(
            body,
            self.options,
            received_at=datetime.fromtimestamp(self.clock(), UTC),
            ref=f"transcripts:{self.name}/webhook",
        )
        await self.intake.publish(events, bad)  # returns once the broker confirmed
        if bad:
            error = {"ok": False, "error": bad[0].reason, "kind": bad[0].kind}
            return web.json_response(error, status=400)
        event = events[0]
        return web.json_response({"ok": True, "id": event.id, "call_id": event.native_id})
