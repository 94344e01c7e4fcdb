"""Shared by the pipeline tests: input files with known ids, and counting what arrived."""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson

SAMPLES = Path(__file__).resolve().parents[1] / "ingest" / "data" / "samples.jsonl"
GOOD_TEXTS = [orjson.loads(line)["text"] for line in SAMPLES.read_bytes().splitlines() if line]

BAD_LINES: dict[str, bytes] = {
    "bad_json": b'{"id": "bad-json", "text": "\xe6\x88\x91\xe7\x9a\x84\xe5\x8d\xa1',
    "invalid_utf8": b'{"id": "bad-utf8", "text": "\xff\xfe\xfa broken"}',
    "wrong_types": b'{"id": "bad-types", "text": "\xe5\xa5\xbd", "rating": "five stars"}',
    "huge": b'{"id": "bad-huge", "text": "' + b"a" * (10 * 1024 * 1024) + b'"}',
}


def good_line(i: int, channel: str = "web_form") -> bytes:
    text = GOOD_TEXTS[i % len(GOOD_TEXTS)]
    return orjson.dumps(
        {
            "id": f"ev-{i:06d}",
            "channel": channel,
            "text": f"{text}（{i}）",
            "author": f"user{i % 37}@example.com",
        }
    )


def write_feedback_file(path: Path, count: int, *, with_bad: bool = False) -> list[str]:
    """A JSONL export with `count` good lines (ids ev-000000…) and, if asked, the bad
    lines spread among them. Returns the good ids."""
    lines = [good_line(i) for i in range(count)]
    if with_bad:
        for offset, bad in zip(
            itertools.count(1, max(1, count // 5)), BAD_LINES.values(), strict=False
        ):
            lines.insert(min(offset, len(lines)), bad)
    tmp = path.with_suffix(".part")
    tmp.write_bytes(b"\n".join(lines) + b"\n")
    old = os.stat(tmp).st_mtime - 60  # look settled to the connector at once
    os.utime(tmp, (old, old))
    tmp.rename(path)
    return [f"ev-{i:06d}" for i in range(count)]


async def wait_until(
    predicate: Callable[[], Awaitable[bool]], timeout_secs: float, what: str
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_secs
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout_secs}s waiting for {what}")
        await asyncio.sleep(0.2)


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "ingest.cli", *args]


def sqlite_store_rows(state_dir: Path) -> tuple[list[str], int, int]:
    """A SQLite store's rows as stored (read straight from `<state_dir>/feedback.db`):
    the native id of every record row, the `ingested` audit rows (one per record ever
    inserted), and the rows past version 1 (changed after their first write)."""
    import sqlite3
    from contextlib import closing

    with closing(sqlite3.connect(state_dir / "feedback.db")) as db:
        natives = [str(r[0]) for r in db.execute("SELECT native_id FROM feedback_records")]
        ingested = db.execute("SELECT count(*) FROM feedback_audit WHERE action = 'ingested'")
        changed = db.execute("SELECT count(*) FROM feedback_records WHERE version > 1")
        return natives, int(ingested.fetchone()[0]), int(changed.fetchone()[0])
