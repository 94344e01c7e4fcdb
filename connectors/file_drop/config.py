"""Options of the file_drop connector (`[connectors.<name>]`, `type = "file_drop"`).

Validated once at start-up so a typo fails the worker with a message naming the
option, instead of dead-lettering every line of every file later.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property

from ingest.codec import MAX_MESSAGE_BYTES

CHANNEL_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
"""A channel becomes the first word of the routing key `<channel>.<lane>`, so it must
not contain dots, spaces or upper case."""

MAPPABLE_FIELDS = frozenset({"channel", "source", "received_at", "rating", "author", "lang"})
"""Event fields a column can be mapped to with `column_map` (text and id have their own
options)."""

MAX_LINE_BYTES_LIMIT = MAX_MESSAGE_BYTES // 2
"""A bad line is dead-lettered with its bytes, and a dead letter must fit in one bus
message (1 MiB) with its envelope: half of it leaves room for that."""


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")


@dataclass(frozen=True)
class FileDropOptions:
    """Where to look, what to read, and how the columns of an export map to an event."""

    path: str
    """The drop folder; `done/` and `failed/` are created inside it."""
    patterns: tuple[str, ...] = ("*.jsonl", "*.csv")
    """Glob patterns of file names to read (case-insensitive); `.csv` files are read
    as CSV, everything else as JSON Lines."""
    channel: str = "web_form"
    """Channel of a line that has no `channel` column."""
    source: str = ""
    """Source of a line that has no `source` column (form or system name)."""
    id_column: str = ""
    """Column holding the export's own id; empty: ids come from the file's content
    hash and the line number."""
    text_column: str = "text"
    """Column holding the customer's words (the only required column)."""
    column_map: dict[str, str] = field(default_factory=dict)
    """Other columns to read as event fields, e.g. {"提交时间": "received_at"}."""
    max_line_bytes: int = 256 * 1024
    """Longest JSON line / CSV record accepted; longer ones are dead-lettered."""
    batch_size: int = 500
    """Lines (events and bad lines) per batch handed to the runtime."""
    poll_interval_secs: float = 5.0
    settle_secs: float = 1.0
    """A file modified less than this long ago is left for the next poll: its writer
    may still be writing."""

    def __post_init__(self) -> None:
        if not self.path.strip():
            raise ValueError("path must name the drop folder")
        if not self.patterns or not all(p.strip() for p in self.patterns):
            raise ValueError("patterns must list at least one non-empty glob, e.g. ['*.csv']")
        if not CHANNEL_RE.match(self.channel):
            raise ValueError(
                f"channel {self.channel!r} must be lower-case letters, digits and '_' "
                "(it is the first word of the routing key)"
            )
        if not self.text_column:
            raise ValueError("text_column must name the column holding the feedback text")
        if self.id_column == self.text_column:
            raise ValueError("id_column and text_column must be different columns")
        self._check_column_map()
        _positive("max_line_bytes", self.max_line_bytes)
        if self.max_line_bytes > MAX_LINE_BYTES_LIMIT:
            raise ValueError(
                f"max_line_bytes must be at most {MAX_LINE_BYTES_LIMIT} "
                "(a bad line is dead-lettered whole and must fit in one bus message)"
            )
        _positive("batch_size", self.batch_size)
        if self.batch_size > 10_000:
            raise ValueError("batch_size must be at most 10000 (a batch is held in memory)")
        _positive("poll_interval_secs", self.poll_interval_secs)
        if self.settle_secs < 0:
            raise ValueError(f"settle_secs must be >= 0, got {self.settle_secs!r}")

    def _check_column_map(self) -> None:
        targets: set[str] = set()
        for column, target in self.column_map.items():
            if not isinstance(column, str) or not column:
                raise ValueError("column_map keys must be non-empty column names")
            if target not in MAPPABLE_FIELDS:
                raise ValueError(
                    f"column_map[{column!r}] = {target!r}: the target must be one of "
                    f"{', '.join(sorted(MAPPABLE_FIELDS))}"
                )
            if column in (self.text_column, self.id_column):
                raise ValueError(f"column {column!r} is already text_column or id_column")
            if target in targets:
                raise ValueError(f"column_map maps two columns to {target!r}")
            targets.add(target)

    @cached_property
    def columns(self) -> dict[str, str]:
        """Each mappable event field → the column it is read from."""
        columns = {name: name for name in MAPPABLE_FIELDS}
        columns.update({target: column for column, target in self.column_map.items()})
        return columns

    @cached_property
    def used_columns(self) -> frozenset[str]:
        """Columns read into event fields; every other column goes to `meta`."""
        used = {self.text_column, *self.columns.values()}
        return frozenset(used | {self.id_column} if self.id_column else used)

    @classmethod
    def example(cls) -> FileDropOptions:
        """A valid configuration that reads any export with a `text` column: the default
        of `feedback-ingest parse file_drop`, docs and contract tests."""
        return cls(path="/var/lib/feedback-ingest/inbox", source="官网意见反馈")
