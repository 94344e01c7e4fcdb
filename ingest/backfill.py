"""`feedback-ingest backfill NAME [--since YYYY-MM-DD] [--from-scratch]`: one pass of one
pull connector from its cursor, through the runtime `run --once` uses (read, publish with
broker confirms, commit the cursor, batch by batch), with a progress line on stderr and
the counts at the end.

`--since` sets the connector's own `since` option (imap: IMAP `SEARCH SINCE`; the review
connectors stop paging at older reviews). It bounds the read from below and never
rewinds the cursor: what the cursor already covers is not read again, so an interrupted
backfill resumes where its last committed batch ended.

`--from-scratch` re-reads what the cursor already covers (after a change of the
classification rules, or a wiped store): the pass starts with no cursor, as if the
connector had never run, so it reads as far back as a first run does (imap: every mail
still in its folders; the review stores: `backfill_days`, or `--since`). It still commits
the cursor batch by batch, overwriting the stored one: interrupted, a plain `backfill
NAME` (with the same `--since`, if any) goes on from the last batch it committed, and
reads what the interrupted pass had not reached yet, since that pass's cursor only
covers what it read (imap: folders not reached yet are read from their first mail; the
review stores' watermark moved back to the oldest review re-read and forward from
there). The same command with `--from-scratch` again starts over. A connector that keeps
no cursor (drop folders: moving a file to done/ is its commit) is refused.

Re-read items carry the same deterministic ids as before, and the sinks upsert by id: an
unchanged record is not written again (no new row, no audit entry, no feed event); one
the current rules classify differently is updated in place, keeping the desk's status
and owner (audited as `reclassified`). Input that cannot be parsed is dead-lettered
again, so `feedback.dead` may hold it twice.

Embedded (no `[broker] url`), the pass also runs the processors and sinks and ends once
everything read is stored: the in-memory bus does not outlive the process. With a broker
it only publishes (the deployed workers classify and store) and ends once the last batch
is confirmed and its cursor committed.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import TextIO

from ingest import registry
from ingest.abc import Batch, PullConnector
from ingest.errors import ConfigError
from ingest.options import suggest
from ingest.settings import Settings

EMBEDDED_ROLES = ("connectors", "processors", "sinks")
BAR_WIDTH = 24


@dataclass
class Counts:
    """What one connector's committed batches held."""

    published: int = 0
    dead_lettered: int = 0
    skipped: int = 0

    @property
    def fetched(self) -> int:
        return self.published + self.dead_lettered + self.skipped


class Progress:
    """A `BatchObserver` that counts committed batches and shows them on `stream`: on a
    terminal one line redrawn in place, otherwise a new line at most every `every_secs`
    (a log file stays short); with a bar when the connector says how much is left."""

    def __init__(
        self,
        stream: TextIO,
        *,
        tty: bool | None = None,
        every_secs: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.every_secs = every_secs
        self.clock = clock
        self.counts: dict[str, Counts] = {}
        self.started_at = clock()
        self.last_batch_at = self.started_at
        self._current = ""
        self._since = self.started_at
        self._pending: int | None = None
        self._shown_at = float("-inf")
        self._dirty = False

    def __call__(self, connector: PullConnector, batch: Batch) -> None:
        now = self.clock()
        if connector.name != self._current:
            self._end_line()
            self._current, self._since = connector.name, self.last_batch_at
        counts = self.counts.setdefault(connector.name, Counts())
        counts.published += len(batch.events)
        counts.dead_lettered += len(batch.bad)
        counts.skipped += batch.skipped
        self._pending = batch.pending
        self.last_batch_at = now
        self._dirty = True
        if now - self._shown_at >= (0.1 if self.tty else self.every_secs):
            self._show(now)

    def line(self) -> str:
        """`kefu [######……] 1200/2000 in, 1100 published, 100 skipped, 0 dead-lettered, 412/s`
        (the rate up to the last committed batch)."""
        counts = self.counts.get(self._current, Counts())
        elapsed = max(self.last_batch_at - self._since, 1e-6)
        done = counts.fetched
        if self._pending is not None:
            total = done + self._pending
            filled = BAR_WIDTH * done // max(total, 1)
            head = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{total} in"
        else:
            head = f"{done} in"
        return (
            f"{self._current} {head}, {counts.published} published, {counts.skipped} skipped, "
            f"{counts.dead_lettered} dead-lettered, {done / elapsed:.0f}/s"
        )

    def finish(self) -> None:
        """Show the last state (if not shown yet) and end the line."""
        if self._dirty:
            self._show(self.clock())
        self._end_line()

    def _show(self, now: float) -> None:
        if self.tty:
            self.stream.write("\r" + self.line() + "\x1b[K")
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()
        self._shown_at, self._dirty = now, False

    def _end_line(self) -> None:
        if self._current and self._dirty:
            self._show(self.clock())
        if self._current and self.tty:
            self.stream.write("\n")
            self.stream.flush()
        self._current = ""


@dataclass(frozen=True)
class Report:
    connector: str
    counts: Counts
    read_secs: float
    """From the start of the pass (connections and worker start-up included) to the last
    batch committed: the intake rate."""
    total_secs: float
    """Until the command could exit: embedded, everything read is stored by then."""
    embedded: bool
    interrupted: bool
    from_scratch: bool = False

    def summary(self) -> str:
        c = self.counts
        rate = c.fetched / self.read_secs if self.read_secs > 0 else 0.0
        where = "stored" if self.embedded else "on the broker"
        text = (
            f"{self.connector}: {c.fetched} fetched, {c.published} published, "
            f"{c.skipped} skipped, {c.dead_lettered} dead-lettered; "
            f"read in {self.read_secs:.1f} s ({rate:.0f}/s), {where} after {self.total_secs:.1f} s"
        )
        if self.from_scratch and self.interrupted:
            text += (
                f" (interrupted: `backfill {self.connector}` without --from-scratch resumes "
                "from the last committed batch; with it, it starts over)"
            )
        elif self.interrupted:
            text += " (interrupted: run the same command again to resume from the cursor)"
        return text


def backfill_settings(
    settings: Settings, name: str, since: str = "", *, from_scratch: bool = False
) -> Settings:
    """The settings with only connector `name`, its `since` option set to `since`;
    `from_scratch` only checks that the connector has a cursor to start over from."""
    table = settings.connectors.get(name)
    if table is None:
        known = sorted(settings.connectors)
        hint = suggest(name, known) or (f"; configured: {', '.join(known)}" if known else "")
        raise ConfigError("CONNECTOR", f"no connector {name!r} in the settings{hint}")
    kind = str(table.get("type"))
    cls = registry.connector_class(kind, key=f"connectors.{name}.type")
    if not issubclass(cls, PullConnector):
        raise ConfigError(
            "CONNECTOR", f"{name!r} is a {kind} connector, which is pushed to: nothing to read"
        )
    if from_scratch and not cls.keeps_cursor:
        raise ConfigError(
            "--from-scratch",
            f"{kind} connectors keep no cursor, so there is nothing to start over from: "
            "their commit moves what was read away (a drop folder's done/); "
            "put it back to read it again",
        )
    if since:
        try:
            date.fromisoformat(since)
        except ValueError:
            raise ConfigError("--since", f"must be a date YYYY-MM-DD, got {since!r}") from None
        if "since" not in {f.name for f in dataclasses.fields(cls.Options)}:
            raise ConfigError("--since", f"{kind} connectors cannot be bounded by a date")
        table = {**table, "since": since}
    return dataclasses.replace(settings, connectors={name: table})


async def run_backfill(
    settings: Settings, name: str, since: str, progress: Progress, *, from_scratch: bool = False
) -> Report:
    """One pass of connector `name` (see the module docstring); `progress` sees each
    committed batch."""
    from ingest.runtime.supervisor import Worker

    roles = EMBEDDED_ROLES if settings.embedded else ("connectors",)
    worker = Worker(
        backfill_settings(settings, name, since, from_scratch=from_scratch),
        roles,
        once=True,
        http=False,
        observer=progress,
        from_scratch=from_scratch,
    )
    started = time.monotonic()
    await worker.run()
    progress.finish()
    return Report(
        connector=name,
        counts=progress.counts.get(name, Counts()),
        read_secs=max(progress.last_batch_at - progress.started_at, 0.0),
        total_secs=time.monotonic() - started,
        embedded=settings.embedded,
        interrupted=worker.stop_requested,
        from_scratch=from_scratch,
    )
