"""The file_drop pull connector: the I/O around `parse` (list, hash, read, move).

Moving a file out of the drop folder is its commit: the last batch of a file carries
an `after_commit` that moves it to `done/` (or `failed/`), and the runtime awaits it
only after the broker confirmed every event and dead letter before it. A crash before
that leaves the file in place; the next poll reads it again and, ids coming from the
content hash (or the export's own ids), lands on the same records. So no cursor is
needed: every batch has `cursor=None`.

Files are read in a worker thread, first hashed (the ids need the hash), then parsed
line by line in chunks of `batch_size`: memory stays bounded whatever the file size.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
    Sequence,
)
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from connectors.file_drop.config import FileDropOptions
from connectors.file_drop.parse import (
    ENCODING_SAMPLE_BYTES,
    UTF8_BOM,
    Item,
    Line,
    Oversized,
    UnreadableFile,
    detect_csv_encoding,
    iter_csv,
    iter_jsonl,
    parse_csv,
    parse_jsonl,
    sniff_unreadable,
    split_items,
    split_lines,
    whole_file,
)
from connectors.file_drop.record import DropFile
from ingest import dropfolder
from ingest.abc import BadInput, Batch, PullConnector
from ingest.dropfolder import DONE, FAILED, SettledFile, open_regular
from ingest.log import get_logger
from ingest.model import FeedbackEvent

_HASH_CHUNK = 1 << 20


def read_lines(stream: IO[bytes], max_line_bytes: int) -> Iterator[Line]:
    """Physical lines of a binary stream; a line over the limit is not kept whole (a
    1 GB line must not be read into memory) but skipped to its end: `Oversized`."""
    limit = max_line_bytes + 2  # room for "\r\n" after a line of exactly the limit
    while line := stream.readline(limit):
        if len(line) < limit or line.endswith(b"\n"):
            yield line
            continue
        head, size = line[:max_line_bytes], len(line)
        while not line.endswith(b"\n"):
            line = stream.readline(_HASH_CHUNK)
            if not line:
                break
            size += len(line)
        size -= 2 if line.endswith(b"\r\n") else 1 if line.endswith(b"\n") else 0
        yield Oversized(head, size)


class _DropReader:
    """One open dropped file, driven from a worker thread one call at a time."""

    def __init__(self, found: SettledFile, connector: str, options: FileDropOptions) -> None:
        self.found = found
        self._connector = connector
        self._options = options
        self._stream = open_regular(found.path)
        self._items: Iterator[Item] = iter(())
        self._refused: UnreadableFile | None = None
        self.head = b""

    def scan(self) -> bool:
        """Hash the file (the ids need it) and set up its parser; False if it changed
        since it was listed: its writer is still at work, it is read on a later poll."""
        digest = hashlib.sha256()
        self.head = self._stream.read(ENCODING_SAMPLE_BYTES + 1)
        digest.update(self.head)
        while chunk := self._stream.read(_HASH_CHUNK):
            digest.update(chunk)
        if not self.found.same(os.fstat(self._stream.fileno())):
            return False
        name = self.found.path.name
        why = sniff_unreadable(self.head)
        if why:
            self._refused = UnreadableFile(f"{name}: {why}", kind="unreadable")
            return True
        self._stream.seek(0)
        mtime = datetime.fromtimestamp(self.found.mtime_ns / 1e9, UTC)
        file = DropFile(name, digest.hexdigest(), mtime, self._connector)
        lines = read_lines(self._stream, self._options.max_line_bytes)
        if self.found.path.suffix.lower() == ".csv":
            encoding = detect_csv_encoding(self.head)
            self._items = iter_csv(lines, file, self._options, encoding)
        else:
            self._items = iter_jsonl(lines, file, self._options)
        return True

    def next_chunk(self) -> list[Item]:
        """Up to batch_size items, empty at the end; `UnreadableFile` if nothing in the
        file can be read."""
        if self._refused is not None:
            raise self._refused
        return list(itertools.islice(self._items, self._options.batch_size))

    def close(self) -> None:
        self._stream.close()


class FileDropConnector(PullConnector):
    """Reads JSON Lines and CSV exports dropped in a folder, oldest first."""

    type = "file_drop"

    @property
    def input_channel(self) -> str:
        """A file's bad lines are labelled with the folder's default channel."""
        return self.options.channel

    description = (
        "JSON Lines / CSV exports dropped in a folder (web forms, questionnaires, "
        "historical complaints): live intake and backfill"
    )
    Options = FileDropOptions
    options: FileDropOptions
    keeps_cursor = False  # moving a file to done/ is its commit

    def __init__(self, name: str, options: FileDropOptions) -> None:
        super().__init__(name, options)
        self.poll_interval_secs = options.poll_interval_secs
        self.folder = Path(options.path)
        self._log = get_logger("connectors.file_drop").bind(connector=name)

    @classmethod
    def parse_payload(
        cls, data: bytes, options: Any
    ) -> tuple[Sequence[FeedbackEvent], Sequence[BadInput]]:
        """One saved export through the pure parser (`feedback-ingest parse file_drop F`).
        No file name comes with it, so the format is guessed: a first line starting with
        `{` is JSON Lines, anything else CSV."""
        first = next(split_lines(data.lstrip()), b"").removeprefix(UTF8_BOM).lstrip()
        parse = parse_jsonl if first.startswith(b"{") else parse_csv
        return parse(
            data,
            file_id=hashlib.sha256(data).hexdigest(),
            options=options,
            file_name="payload",
            file_mtime=datetime.now(UTC),
            connector=cls.type,
        )

    # --- check -----------------------------------------------------------------

    async def check(self) -> None:
        """The folder exists and we can create, write and remove files in it."""
        await asyncio.to_thread(self._prepare)

    def _prepare(self) -> None:
        dropfolder.prepare(self.folder, f"connectors.{self.name}.path", ".file_drop")

    # --- read ------------------------------------------------------------------

    async def read(self, cursor: str | None) -> AsyncGenerator[Batch, None]:
        """Batches of every settled file, oldest first; the last batch of a file moves it."""
        for found in await asyncio.to_thread(self._settled_files):
            async for batch in self._read_file(found):
                yield batch

    def _settled_files(self) -> list[SettledFile]:
        """Matching settled files, oldest first (`ingest.dropfolder`)."""
        return dropfolder.settled_files(
            self.folder, self.options.patterns, self.options.settle_secs, log=self._log
        )

    async def _read_file(self, found: SettledFile) -> AsyncIterator[Batch]:
        """The file's batches; the last one moves it to done/, or to failed/ with one more
        dead letter for the whole file when not a single line of it could be read."""
        name = found.path.name
        try:
            reader = await asyncio.to_thread(_DropReader, found, self.name, self.options)
        except OSError as exc:  # vanished or unreadable: logged every poll until fixed
            self._log.error("file_drop.open_failed", file=name, error=str(exc))
            return
        try:
            if not await asyncio.to_thread(reader.scan):
                self._log.info("file_drop.still_changing", file=name)
                return
            pending: list[Item] = []
            n_events = n_bad = 0
            verdict: BadInput | None = None
            try:
                while chunk := await asyncio.to_thread(reader.next_chunk):
                    if pending:
                        events, bad = split_items(pending)
                        yield Batch(events=events, cursor=None, bad=bad)
                    pending = chunk
                    chunk_bad = sum(isinstance(item, BadInput) for item in chunk)
                    n_bad += chunk_bad
                    n_events += len(chunk) - chunk_bad
            except UnreadableFile as exc:
                verdict = whole_file(name, str(exc), reader.head, self.options, kind=exc.kind)
            if verdict is None and n_events == 0 and n_bad > 0:
                reason = f"{name}: none of its {n_bad} lines could be read"
                verdict = whole_file(name, reason, reader.head, self.options, kind="all_bad")
            events, bad = split_items(pending)
            if verdict is not None:
                bad.append(verdict)
            to = DONE if verdict is None else FAILED
            self._log.info("file_drop.read", file=name, events=n_events, bad=n_bad, to=to)
            yield Batch(events=events, cursor=None, bad=bad, after_commit=self._mover(found, to))
        finally:
            reader.close()

    # --- commit: move the file -------------------------------------------------

    def _mover(self, found: SettledFile, to: str) -> Callable[[], Awaitable[None]]:
        async def move() -> None:
            await asyncio.to_thread(self._move, found, to)

        return move

    def _move(self, found: SettledFile, to: str) -> None:
        """Move the file to done/ or failed/, unless it changed while being read: its new
        content is read on the next poll."""
        dropfolder.move(self.folder, found, to, self._log)
