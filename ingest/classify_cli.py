"""`feedback-ingest classify`: JSON lines in, one record per line out, in order.
Streams (bounded chunks in flight, so memory stays constant) and uses every core."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import BinaryIO

import orjson

from ingest.classify import ChainPool, ChainSpec, default_workers
from ingest.settings import Settings


def _chunks(stream: BinaryIO, size: int) -> Iterator[list[bytes]]:
    lines = (line for line in stream if line.strip())
    while chunk := list(itertools.islice(lines, size)):
        yield chunk


def classify_stream(
    settings: Settings, stdin: BinaryIO, stdout: BinaryIO, *, workers: int = 0, chunk_size: int = 64
) -> int:
    """Write one line per non-empty input line: the record, or {"error", "kind", "line"}."""
    pool = ChainPool(
        ChainSpec.from_settings(settings.classify),
        default_workers(workers or settings.classify.workers),
    )
    failures = 0
    line_no = 0
    try:
        for outcomes in pool.map_lines(_chunks(stdin, chunk_size)):
            for status, value, kind, _ in outcomes:
                line_no += 1
                if status == "ok":
                    assert isinstance(value, bytes)
                    stdout.write(orjson.dumps(orjson.loads(value)["record"]) + b"\n")
                else:
                    failures += 1
                    stdout.write(
                        orjson.dumps({"error": value, "kind": kind or status, "line": line_no})
                        + b"\n"
                    )
            stdout.flush()
    finally:
        pool.close()
    return 1 if failures and failures == line_no else 0
