"""`feedback-ingest backfill`'s parts that need no server: which connector it may run and
how `--since` and `--from-scratch` reach it, what a from-scratch pass reads and commits
(ingest/runtime/pull.py), and the progress it draws (ingest/backfill.py)."""

from __future__ import annotations

import io
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from connectors.file_drop.connector import FileDropConnector
from ingest.abc import BadInput, Batch, PullConnector
from ingest.backfill import Counts, Progress, Report, backfill_settings
from ingest.bus.memory import MemoryBus
from ingest.cli import build_parser
from ingest.errors import ConfigError, TransientError
from ingest.model import FeedbackEvent
from ingest.runtime.backoff import Backoff
from ingest.runtime.components import make_connectors
from ingest.runtime.publish import Publisher
from ingest.runtime.pull import PullScheduler
from ingest.settings import settings_from_dict
from ingest.testing import MemoryCursors
from tests.pipeline_helpers import run_cli

CONNECTORS: dict[str, dict[str, Any]] = {
    "kefu": {"type": "imap", "host": "imap.example", "username": "u", "password": "p"},
    "wx": {"type": "wechat", "token": "t", "app_id": "wx1"},
    "forms": {"type": "file_drop", "path": "/tmp/forms"},
    "play": {
        "type": "google_play",
        "package_name": "cn.example.bank",
        "service_account_file": "/nonexistent.json",
    },
}


def settings() -> Any:
    return settings_from_dict({"connectors": CONNECTORS})


def test_only_the_named_connector_runs_with_since_as_its_own_option() -> None:
    one = backfill_settings(settings(), "kefu", "2026-01-01")
    assert list(one.connectors) == ["kefu"]
    assert one.connectors["kefu"]["since"] == "2026-01-01"
    (conn,) = make_connectors(one)
    assert conn.options.since == "2026-01-01"  # → IMAP SEARCH SINCE 01-Jan-2026
    assert "since" not in settings().connectors["kefu"], "the loaded settings were changed"


@pytest.mark.parametrize(
    ("name", "since", "key", "words"),
    [
        ("kefuu", "", "CONNECTOR", 'did you mean "kefu"'),
        ("wx", "", "CONNECTOR", "pushed to"),
        ("forms", "2026-01-01", "--since", "cannot be bounded by a date"),
        ("kefu", "2026-13-01", "--since", "YYYY-MM-DD"),
    ],
)
def test_a_wrong_name_or_date_is_a_config_error_that_says_why(
    name: str, since: str, key: str, words: str
) -> None:
    with pytest.raises(ConfigError) as info:
        backfill_settings(settings(), name, since)
    assert info.value.key == key and words in str(info.value)


def test_the_review_connectors_take_since() -> None:
    one = backfill_settings(settings(), "play", "2026-11-01")
    assert one.connectors["play"]["since"] == "2026-11-01"


def test_from_scratch_is_refused_for_a_connector_without_a_cursor_and_a_push_one() -> None:
    """A drop folder's commit moves the file away: there is no cursor to start over
    from. A push connector is refused as without the flag."""
    with pytest.raises(ConfigError) as info:
        backfill_settings(settings(), "forms", from_scratch=True)
    assert info.value.key == "--from-scratch" and "keep no cursor" in str(info.value)
    with pytest.raises(ConfigError) as info:
        backfill_settings(settings(), "wx", from_scratch=True)
    assert info.value.key == "CONNECTOR" and "pushed to" in str(info.value)
    for name in ("kefu", "play"):  # connectors that keep a cursor
        assert list(backfill_settings(settings(), name, from_scratch=True).connectors) == [name]


def test_the_cli_takes_from_scratch_and_says_why_it_refuses(tmp_path: Path) -> None:
    parser = build_parser()
    assert parser.parse_args(["backfill", "kefu", "--from-scratch"]).from_scratch is True
    assert parser.parse_args(["backfill", "kefu"]).from_scratch is False
    config = tmp_path / "forms.toml"
    config.write_text(
        f'[runtime]\nstate_dir = "{tmp_path / "state"}"\n'
        f'[connectors.forms]\ntype = "file_drop"\npath = "{tmp_path / "in"}"\n',
        encoding="utf-8",
    )
    config.chmod(0o600)
    done = run_cli("backfill", "forms", "--from-scratch", "--config", str(config), timeout=60)
    assert done.returncode == 2
    assert b"configuration error: --from-scratch: file_drop connectors keep no cursor" in (
        done.stderr
    )
    assert not (tmp_path / "state").exists(), "refused before anything was opened"


class Numbers(PullConnector):
    """Items 0..total-1 two per batch; the cursor is the number of the next item to read.
    `fail_at` makes the read of that item fail once (a dropped link)."""

    type = "numbers"
    description = "test connector"
    Options = dict

    def __init__(self, total: int, fail_at: int | None = None) -> None:
        super().__init__("numbers", {})
        self.total, self.fail_at = total, fail_at
        self.read_ids: list[str] = []

    async def check(self) -> None:
        pass

    async def read(self, cursor: str | None) -> AsyncIterator[Batch]:
        for first in range(int(cursor or 0), self.total, 2):
            if first == self.fail_at:
                self.fail_at = None
                raise TransientError("link dropped")
            events = [
                FeedbackEvent(id=f"n{i}", channel="web_form", text=f"第{i}条意见")
                for i in range(first, min(first + 2, self.total))
            ]
            self.read_ids += [e.id for e in events]
            yield Batch(events, cursor=str(first + len(events)))


async def _pass(
    connector: Numbers, cursors: MemoryCursors, *, from_scratch: bool = False, stop_after: int = 0
) -> int:
    """One pass as `backfill` runs it (`stop_after` batches, then a Ctrl-C); the events
    published and committed, retries included."""
    bus = MemoryBus()
    await bus.start()
    seen: list[Batch] = []

    def observe(_: PullConnector, batch: Batch) -> None:
        seen.append(batch)
        if len(seen) == stop_after:
            scheduler.stop()

    scheduler = PullScheduler(
        [connector],
        Publisher(bus),
        cursors,
        Backoff(0.01, 0.02),
        observer=observe,
        from_scratch=from_scratch,
    )
    try:
        await scheduler.run_once()
    finally:
        await bus.close()
    return sum(len(batch.events) for batch in seen)


async def test_a_plain_pass_reads_only_what_is_new_and_from_scratch_reads_it_all_again() -> None:
    numbers, cursors = Numbers(5), MemoryCursors()
    assert await _pass(numbers, cursors) == 5
    assert await _pass(numbers, cursors) == 0, "the cursor covers everything"
    assert await _pass(numbers, cursors, from_scratch=True) == 5
    assert numbers.read_ids == [f"n{i}" for i in range(5)] * 2
    assert cursors.saved == {"numbers": "5"}
    assert await _pass(numbers, cursors) == 0, "from scratch committed its cursor"


async def test_an_interrupted_from_scratch_pass_is_resumed_by_a_plain_one() -> None:
    """The from-scratch pass overwrites the stored cursor batch by batch, so the plain
    pass after a Ctrl-C reads exactly what it had not reached."""
    numbers, cursors = Numbers(6), MemoryCursors()
    cursors.saved["numbers"] = "6"
    assert await _pass(numbers, cursors, from_scratch=True, stop_after=1) == 2
    assert cursors.saved == {"numbers": "2"}
    assert await _pass(numbers, cursors) == 4
    assert numbers.read_ids == [f"n{i}" for i in range(6)]


@pytest.mark.parametrize(
    ("fail_at", "read_ids"),
    [
        (2, [f"n{i}" for i in range(6)]),  # after a commit: goes on from it
        (0, [f"n{i}" for i in range(6)]),  # before any: starts over, still from scratch
    ],
)
async def test_a_from_scratch_pass_retried_after_a_failure_does_not_read_twice(
    fail_at: int, read_ids: list[str]
) -> None:
    numbers, cursors = Numbers(6, fail_at=fail_at), MemoryCursors()
    cursors.saved["numbers"] = "6"
    assert await _pass(numbers, cursors, from_scratch=True) == 6
    assert numbers.read_ids == read_ids and cursors.saved == {"numbers": "6"}


def test_an_interrupted_from_scratch_summary_says_how_to_resume() -> None:
    report = Report("kefu", Counts(published=2), 1.0, 1.0, True, True, from_scratch=True)
    assert "`backfill kefu` without --from-scratch resumes" in report.summary()


def _event(i: int) -> FeedbackEvent:
    return FeedbackEvent(id=f"e{i}", channel="web_form", text="转账失败")


def _connector() -> FileDropConnector:
    return FileDropConnector("forms", FileDropConnector.Options.example())


def test_on_a_terminal_one_line_is_redrawn_with_a_bar() -> None:
    out = io.StringIO()
    ticks = itertools.count(0.0, 0.5)
    progress = Progress(out, tty=True, clock=lambda: next(ticks))
    conn = _connector()
    progress(conn, Batch([_event(1), _event(2)], skipped=1, pending=7))
    progress(conn, Batch([_event(3)], bad=[BadInput("x", b"")], skipped=0, pending=0))
    progress.finish()
    text = out.getvalue()
    assert text.count("\r") >= 2 and text.endswith("\n") and text.count("\n") == 1
    last = text.rsplit("\r", 1)[1]
    assert "[" + "#" * 24 + "] 5/5 in" in last
    assert "3 published, 1 skipped, 1 dead-lettered" in last


def test_in_a_log_file_plain_lines_are_written_at_most_every_few_seconds() -> None:
    out = io.StringIO()
    now = [0.0]
    progress = Progress(out, tty=False, every_secs=2.0, clock=lambda: now[0])
    conn = _connector()
    for second in range(10):  # a batch a second, the connector cannot tell what is left
        now[0] = float(second + 1)
        progress(conn, Batch([_event(second)]))
    progress.finish()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and "[" not in out.getvalue()
    assert 4 <= len(lines) <= 7
    assert lines[-1] == "forms 10 in, 10 published, 0 skipped, 0 dead-lettered, 1/s"
