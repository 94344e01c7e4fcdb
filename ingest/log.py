"""structlog set-up: JSON lines rendered with orjson, context (feedback id, channel,
stage) bound through contextvars, values as fields, never formatted into messages."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, TextIO

import orjson
import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def _orjson_dumps(obj: Any, default: Any = None) -> str:
    return orjson.dumps(obj, default=default or str).decode()


COPY_ENV = "FEEDBACK_LOG_COPY"
"""A file that also receives every log line, from every process (the test suite sets
it and scans the whole run's logs for personal data and secrets)."""


class _Tee:
    """The log stream, plus an appended copy (line-buffered, so child processes'
    lines interleave whole)."""

    def __init__(self, stream: TextIO, copy_path: str) -> None:
        self.stream = stream
        self.copy = open(copy_path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - lives as long as the process

    def write(self, text: str) -> int:
        self.copy.write(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


def configure_logging(level: str = "info", fmt: str = "json", stream: Any = None) -> None:
    """Idempotent; call once at start-up (the CLI does)."""
    stream = stream or sys.stderr
    if os.environ.get(COPY_ENV):
        stream = _Tee(stream, os.environ[COPY_ENV])
    renderer: Any
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    else:
        renderer = structlog.processors.JSONRenderer(serializer=_orjson_dumps)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
