"""`feedback-ingest backfill`'s parts that need no server: which connector it may run and
how `--since` reaches it, and the progress it draws (ingest/backfill.py)."""

from __future__ import annotations

import io
import itertools
from typing import Any

import pytest

from connectors.file_drop.connector import FileDropConnector
from ingest.abc import BadInput, Batch
from ingest.backfill import Progress, backfill_settings
from ingest.errors import ConfigError
from ingest.model import FeedbackEvent
from ingest.runtime.components import make_connectors
from ingest.settings import settings_from_dict

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
