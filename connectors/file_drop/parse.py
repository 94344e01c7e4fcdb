"""Pure parsing of dropped exports: bytes in, events and bad lines out, no I/O.

Every physical line of a JSON Lines file and every record of a CSV file becomes either
a `FeedbackEvent` or a `BadInput` carrying its own bytes, so one broken line never
hides the lines around it. Ids are deterministic: from a declared id column, else from
the file's content hash and the line number, so dropping the same export again lands
on the same records downstream.

`iter_jsonl` / `iter_csv` take an iterable of physical lines (what a binary file
yields), which lets the connector stream a file of any size; `parse_jsonl` /
`parse_csv` are the same over whole bytes.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from connectors.file_drop.config import MAX_LINE_BYTES_LIMIT, FileDropOptions
from connectors.file_drop.record import DropFile, to_event
from ingest.abc import BadInput
from ingest.errors import PermanentError
from ingest.model import FeedbackEvent
from ingest.text_bytes import mostly_utf8

Item = FeedbackEvent | BadInput

# csv's own field limit (131,072 characters, process-wide) sits below max_line_bytes:
# past it, csv.Error left the rest of the record to be read as a record of its own.
# Our per-record byte limit (_TooLong) is the one that must decide.
csv.field_size_limit(max(csv.field_size_limit(), MAX_LINE_BYTES_LIMIT))

SNIFF_BYTES = 8192
ENCODING_SAMPLE_BYTES = 4 << 20
"""The CSV encoding is decided from the first 4 MiB, so a huge file is not read twice."""
UTF8_BOM = b"\xef\xbb\xbf"
GB18030_BOM = b"\x84\x31\x95\x33"
_MAGIC = (
    (b"PK\x03\x04", "a ZIP archive (an .xlsx workbook?): save it as CSV UTF-8 first"),
    (b"\xd0\xcf\x11\xe0", "an old Excel .xls workbook: save it as CSV UTF-8 first"),
    (b"\xff\xfe", "UTF-16 text (Excel 'Unicode Text'?): save it as CSV UTF-8"),
    (b"\xfe\xff", "UTF-16 text: save it as UTF-8"),
)
_DELIMITERS = (",", "\t", ";")


@dataclass(frozen=True, slots=True)
class Oversized:
    """A physical line over `max_line_bytes` that a streaming reader did not keep whole:
    its first bytes (what gets dead-lettered) and its real size."""

    head: bytes
    size: int


Line = bytes | Oversized


class UnreadableFile(PermanentError):
    """Nothing in the file can become an event (binary, no usable CSV header): it is
    dead-lettered as one and moved to failed/, instead of once per line."""


class _TooLong(Exception):
    """Internal signal from _CsvSource: the record is over max_line_bytes."""


def sniff_unreadable(head: bytes) -> str | None:
    """Why the file is not a text export at all, judged from its first bytes, or None."""
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return what
    sample = head[:SNIFF_BYTES]
    if sample.count(b"\x00") * 10 > len(sample):  # a stray NUL is a bad line, not a bad file
        return "binary data or UTF-16 (over 10% NUL bytes): save it as UTF-8 text"
    return None


def split_lines(data: bytes) -> Iterator[bytes]:
    """Physical lines with their line breaks, split exactly as iterating a binary file
    splits them, so line numbers (hence ids) do not depend on how the file was read."""
    return iter(io.BytesIO(data))


def detect_csv_encoding(head: bytes) -> str:
    """The encoding of a CSV export, "utf-8" or "gb18030", from its first bytes.

    A BOM decides. Otherwise the non-ASCII lines vote: GB18030 (the superset of GBK
    that Excel on a Chinese Windows writes) only if most of them are not UTF-8, so a
    UTF-8 file with one corrupt line stays UTF-8 and only that line is dead-lettered.
    A line that is UTF-8 but for a stray byte (`ingest.text_bytes.mostly_utf8`) votes
    UTF-8: when it was the only non-ASCII line, the file was read as GB18030 and the
    line became mojibake.
    """
    if head.startswith(GB18030_BOM):
        return "gb18030"
    if head.startswith(UTF8_BOM):
        return "utf-8"
    if len(head) > ENCODING_SAMPLE_BYTES:  # cut at a line break, never inside a character
        head = head[: head.rfind(b"\n", 0, ENCODING_SAMPLE_BYTES) + 1]
    utf8 = other = 0
    for line in split_lines(head):
        if line.isascii():
            continue
        try:
            line.decode("utf-8")
            utf8 += 1
        except UnicodeDecodeError:
            if mostly_utf8(line):
                utf8 += 1
            else:
                other += 1
    return "utf-8" if utf8 >= other else "gb18030"


def whole_file(
    file_name: str, reason: str, head: bytes, options: FileDropOptions, kind: str = "unreadable"
) -> BadInput:
    """The dead letter for a file as a whole; it carries the file's first bytes (the
    file itself is kept in failed/)."""
    return BadInput(reason, head[: options.max_line_bytes], ref=file_name, kind=kind)


# --- JSON Lines ----------------------------------------------------------------


def iter_jsonl(lines: Iterable[Line], file: DropFile, options: FileDropOptions) -> Iterator[Item]:
    """One event or bad input per non-blank physical line (UTF-8, RFC 8259)."""
    limit = options.max_line_bytes
    for number, line in enumerate(lines, 1):
        ref = f"{file.name}:{number}"
        if isinstance(line, Oversized):
            yield _oversized(line.head, line.size, ref, limit)
            continue
        content = _strip_eol(line)
        if number == 1:
            content = content.removeprefix(UTF8_BOM)
        if not content.strip():
            continue
        if len(content) > limit:
            yield _oversized(content, len(content), ref, limit)
            continue
        try:
            yield to_event(_json_object(content), line=number, file=file, options=options)
        except PermanentError as exc:
            yield BadInput(str(exc), content, ref=ref, kind=exc.kind)
        except (ValueError, TypeError, OverflowError) as exc:
            yield _unexpected(exc, content, ref)


def _unexpected(exc: Exception, raw: bytes, ref: str) -> BadInput:
    """A value our checks let through and the standard library refused (a "⑤" rating
    once did): this record is dead-lettered, the records around it go on. The
    exception's text is left out: it quotes the value, which may be personal data."""
    return BadInput(f"unusable value ({type(exc).__name__})", raw, ref=ref, kind="bad_value")


def _json_object(content: bytes) -> dict[str, Any]:
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PermanentError(f"not UTF-8 at byte {exc.start}", kind="bad_encoding") from None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise PermanentError(f"not JSON: {exc}", kind="bad_json") from None
    if not isinstance(value, dict):
        raise PermanentError(
            f"line is a JSON {type(value).__name__}, not an object", kind="bad_schema"
        )
    return value


# --- CSV -------------------------------------------------------------------------


class _CsvSource:
    """Feeds csv.reader one decoded physical line at a time and keeps the lines of the
    record being read, so a bad record is dead-lettered with exactly its bytes, and an
    unclosed quote swallows at most `max_line_bytes`, not the rest of the file."""

    def __init__(self, lines: Iterator[Line], encoding: str, limit: int) -> None:
        self._lines = lines
        self._back: list[Line] = []
        self._encoding = encoding
        self._limit = limit
        self.number = 0
        self.start = 1
        self.items: list[Line] = []
        self.text: list[str] = []
        self.size = 0
        self.decode_error = ""

    def begin(self) -> None:
        """Start a new record at the next physical line."""
        self.start = self.number + 1
        self.items, self.text, self.size, self.decode_error = [], [], 0, ""

    def raw_bytes(self) -> bytes:
        parts = (item.head if isinstance(item, Oversized) else item for item in self.items)
        return _strip_eol(b"".join(parts))

    def give_back_last(self) -> bool:
        """After `_TooLong` on a record of several lines, hand its last line back to be
        read again as the next record; the bad record keeps only whole lines."""
        if len(self.items) < 2:
            return False
        self._back.append(self.items.pop())
        self.number -= 1
        return True

    def __iter__(self) -> _CsvSource:
        return self

    def __next__(self) -> str:
        line = self._back.pop() if self._back else next(self._lines)
        self.number += 1
        self.items.append(line)
        if isinstance(line, Oversized):
            raise _TooLong
        self.size += len(line)
        if self.size - (len(line) - len(_strip_eol(line))) > self._limit:
            raise _TooLong
        try:
            text = line.decode(self._encoding)
        except UnicodeDecodeError as exc:
            if not self.decode_error:
                self.decode_error = (
                    f"not {self._encoding} at byte {exc.start} of line {self.number}"
                )
            text = line.decode(self._encoding, "replace")
        if self.number == 1:
            text = text.removeprefix("\ufeff")
        self.text.append(text)
        return text


def _too_long(source: _CsvSource, ref: str, limit: int) -> BadInput:
    if source.give_back_last():
        last = source.number
        reason = (
            f"record of lines {source.start}-{last} runs past max_line_bytes = {limit} "
            f"(an unclosed quote?); line {last + 1} is read again as a new record"
        )
        return BadInput(reason, source.raw_bytes(), ref=ref, kind="bad_csv")
    item = source.items[0]
    size = item.size if isinstance(item, Oversized) else len(_strip_eol(item))
    return _oversized(source.raw_bytes(), size, ref, limit)


def iter_csv(
    lines: Iterable[Line], file: DropFile, options: FileDropOptions, encoding: str
) -> Iterator[Item]:
    """One event or bad input per CSV record after the header row. Raises
    `UnreadableFile` (before yielding anything) when the header is unusable."""
    source = _CsvSource(iter(lines), encoding, options.max_line_bytes)
    found = _header(source, file, options)
    if found is None:
        return
    columns, delimiter = found
    while True:
        source.begin()
        ref = f"{file.name}:{source.start}"
        try:
            row = next(csv.reader(source, delimiter=delimiter))
        except StopIteration:
            return
        except _TooLong:
            yield _too_long(source, ref, options.max_line_bytes)
            continue
        except csv.Error as exc:
            yield BadInput(f"not CSV: {exc}", source.raw_bytes(), ref=ref, kind="bad_csv")
            continue
        if not any(cell.strip() for cell in row):
            continue  # blank line, or an empty row Excel leaves at the end
        try:
            if source.decode_error:
                raise PermanentError(source.decode_error, kind="bad_encoding")
            record = _csv_record(columns, row)
            yield to_event(record, line=source.start, file=file, options=options)
        except PermanentError as exc:
            yield BadInput(str(exc), source.raw_bytes(), ref=ref, kind=exc.kind)
        except (ValueError, TypeError, OverflowError) as exc:
            yield _unexpected(exc, source.raw_bytes(), ref)


def _header(
    source: _CsvSource, file: DropFile, options: FileDropOptions
) -> tuple[list[str], str] | None:
    """Column names and delimiter (comma, else tab or semicolon: whichever finds the text
    column), or None for a file with no rows at all."""
    while True:
        source.begin()
        try:
            row = next(csv.reader(source))
        except StopIteration:
            return None
        except _TooLong:
            raise UnreadableFile(
                f"{file.name}: the header row is over {options.max_line_bytes} bytes",
                kind="bad_header",
            ) from None
        except csv.Error as exc:
            raise UnreadableFile(
                f"{file.name}: header is not CSV: {exc}", kind="bad_header"
            ) from None
        if source.decode_error:
            raise UnreadableFile(
                f"{file.name}: header is {source.decode_error}", kind="bad_encoding"
            )
        if any(cell.strip() for cell in row):
            break
    for delimiter in _DELIMITERS:
        columns = _column_names(next(csv.reader(source.text, delimiter=delimiter), []))
        if options.text_column in columns:
            if options.id_column and options.id_column not in columns:
                raise UnreadableFile(
                    f"{file.name}: no id column {options.id_column!r} in the header "
                    f"({_listing(columns)}); set id_column",
                    kind="bad_header",
                )
            return columns, delimiter
    raise UnreadableFile(
        f"{file.name}: no text column {options.text_column!r} in the header "
        f"({_listing(_column_names(row))}); set text_column",
        kind="bad_header",
    )


def _column_names(cells: list[str]) -> list[str]:
    names: list[str] = []
    for index, cell in enumerate(cells, 1):
        name = cell.strip().removeprefix("\ufeff") or f"column_{index}"
        names.append(f"{name}_{index}" if name in names else name)
    return names


def _listing(columns: list[str]) -> str:
    shown = ", ".join(repr(c) for c in columns[:12])
    return f"columns: {shown}" + (", ..." if len(columns) > 12 else "")


def _csv_record(columns: list[str], row: list[str]) -> dict[str, str]:
    """Cells by column name; empty cells are absent (CSV cannot tell empty from none)."""
    extra = row[len(columns) :]
    if any(cell.strip() for cell in extra):
        raise PermanentError(
            f"row has {len(row)} fields, the header has {len(columns)} "
            "(a delimiter inside an unquoted field?)",
            kind="bad_csv",
        )
    return {name: cell for name, cell in zip(columns, row, strict=False) if cell.strip()}


# --- helpers and whole-bytes entry points ----------------------------------------


def _strip_eol(line: bytes) -> bytes:
    if line.endswith(b"\n"):
        line = line[:-1]
        if line.endswith(b"\r"):
            line = line[:-1]
    return line


def _oversized(head: bytes, size: int, ref: str, limit: int) -> BadInput:
    reason = f"line is {size} bytes, over max_line_bytes = {limit}; first {limit} bytes kept"
    return BadInput(reason, head[:limit], ref=ref, kind="oversized")


def split_items(items: Iterable[Item]) -> tuple[list[FeedbackEvent], list[BadInput]]:
    """Events and bad inputs apart, each in its original order."""
    events: list[FeedbackEvent] = []
    bad: list[BadInput] = []
    for item in items:
        if isinstance(item, BadInput):
            bad.append(item)
        else:
            events.append(item)
    return events, bad


def parse_jsonl(
    data: bytes,
    *,
    file_id: str,
    options: FileDropOptions,
    file_name: str,
    file_mtime: datetime,
    connector: str,
) -> tuple[list[FeedbackEvent], list[BadInput]]:
    """Events and bad lines of a whole JSON Lines file. `file_id` is the SHA-256 of
    `data` (hex), `file_mtime` the `received_at` of lines without a time."""
    why = sniff_unreadable(data[:SNIFF_BYTES])
    if why:
        return [], [whole_file(file_name, f"{file_name}: {why}", data, options)]
    file = DropFile(file_name, file_id, file_mtime.astimezone(UTC), connector)
    return split_items(iter_jsonl(split_lines(data), file, options))


def parse_csv(
    data: bytes,
    *,
    file_id: str,
    options: FileDropOptions,
    file_name: str,
    file_mtime: datetime,
    connector: str,
) -> tuple[list[FeedbackEvent], list[BadInput]]:
    """Events and bad records of a whole CSV file (UTF-8 with or without BOM, or
    GB18030/GBK); an unusable file gives one `BadInput` for the whole file."""
    why = sniff_unreadable(data[:SNIFF_BYTES])
    if why:
        return [], [whole_file(file_name, f"{file_name}: {why}", data, options)]
    file = DropFile(file_name, file_id, file_mtime.astimezone(UTC), connector)
    encoding = detect_csv_encoding(data[: ENCODING_SAMPLE_BYTES + 1])
    try:
        return split_items(iter_csv(split_lines(data), file, options, encoding))
    except UnreadableFile as exc:
        return [], [whole_file(file_name, str(exc), data, options, kind=exc.kind)]
