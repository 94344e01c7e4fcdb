"""The `normalize` step: one canonical form of the customer's words, so that every
later step (PII patterns, keyword tables, sentiment) sees the same characters
whatever the channel sent.

- Unicode NFKC: full-width letters, digits and punctuation become half-width
  ("６２２２" → "6222", "？" → "?", "，" → ","), compatibility forms collapse ("①" → "1").
- Traditional → simplified Chinese (option `to_simplified`, default on), with
  `zhconv`'s "zh-cn" tables: mainland vocabulary and standard forms, so 帳戶 / 轉帳
  become 账户 / 转账, the words the rule tables hold (OpenCC's t2s gives 帐户 / 转帐
  and would miss "转账失败"). Pure Python with its table bundled: works offline.
  Only text holding a traditional character is converted (see `to_simplified`).
- Control and invisible format characters are removed (zero-width spaces, BOMs,
  bidi overrides that can disguise text), except the zero-width joiner of emoji.
- Emoji are kept as sent, with their joiners and variation selectors: they carry
  the customer's tone for the desk agent, and no keyword contains one.
- Whitespace runs collapse: to one newline when the run holds a line break
  (e-mail paragraphs stay readable), else to one space; ends are trimmed.
- Spaces between two Chinese characters are dropped (option `join_cjk_spaces`,
  default on): Chinese does not separate words, but speech recognition and
  copy-paste insert spaces that would split keywords ("转 账 失败").
- Truncation: a text (or turn) longer than `max_chars` (20 000) keeps its first
  `max_chars - tail_chars` and last `tail_chars` (2 000) characters around a
  "…[省略 N 字]…" marker, and a reason says so. The head holds the complaint, the
  tail of a call or thread the latest turn (threats, the final ask); quoted e-mail
  history in between is what goes. Cuts never fall inside a run of digits or
  letters, so the pii step (next) never meets half a card number it cannot
  recognise. The codec already rejects texts over 50 000 characters.

Sets `text` and `text_masked` (PII masking comes next) and the turn texts.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from ingest.model import FeedbackRecord, Reason
from processors import step_options

_KEEP_FORMAT = {"\u200d"}  # zero-width joiner: part of emoji sequences
_WHITESPACE = re.compile(r"\s+")
_CJK = r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]"
_CJK_GAP = re.compile(rf"(?<={_CJK}) (?={_CJK})")
_TOKEN = re.compile(r"[0-9A-Za-z@._+\- ]")
_MAX_BACKOFF = 64
"""No identifier the pii step masks is longer: a cut moves back at most this far."""


@dataclass(frozen=True)
class NormalizeOptions:
    join_cjk_spaces: bool = True
    to_simplified: bool = True
    max_chars: int = 20_000
    tail_chars: int = 2_000

    def __post_init__(self) -> None:
        if self.max_chars < 100:
            raise ValueError("max_chars must be at least 100")
        if not 0 <= self.tail_chars <= self.max_chars // 2:
            raise ValueError("tail_chars must be between 0 and max_chars / 2")


@lru_cache(maxsize=1)
def _traditional_chars() -> frozenset[str]:
    """Characters zhconv converts on their own: the marks of traditional text."""
    from zhconv import zhconv as tables

    table: dict[str, str] = tables.getdict("zh-cn")
    return frozenset(key for key, value in table.items() if len(key) == 1 and value != key)


def to_simplified(text: str) -> str:
    """Mainland simplified Chinese (zhconv "zh-cn"), for text holding at least one
    traditional character; other text is returned as it is. zhconv also rewrites
    vocabulary in simplified text, not always rightly ("怎么女儿" → "怎幺女儿"), and
    the check (a C-speed set test) spares most messages its per-character loop."""
    if _traditional_chars().isdisjoint(text):
        return text
    import zhconv

    converted: str = zhconv.convert(text, "zh-cn")
    return converted


def _drop_invisible(text: str) -> tuple[str, int]:
    kept = [
        ch
        for ch in text
        if ch.isspace() or ch in _KEEP_FORMAT or unicodedata.category(ch) not in ("Cc", "Cf")
    ]
    return "".join(kept), len(text) - len(kept)


def _collapse(match: re.Match[str]) -> str:
    return "\n" if "\n" in match.group() or "\r" in match.group() else " "


def _safe_cut(text: str, at: int) -> int:
    """`at`, moved back so that it does not split a run of digits or letters."""
    start = at
    while (
        at > 0
        and start - at < _MAX_BACKOFF
        and _TOKEN.match(text, at - 1)
        and _TOKEN.match(text, at)
    ):
        at -= 1
    return at if start - at < _MAX_BACKOFF else start


def truncate(text: str, max_chars: int, tail_chars: int) -> tuple[str, int]:
    """Head and tail of an over-long `text` around a marker, and how many characters went."""
    if len(text) <= max_chars:
        return text, 0
    head_end = _safe_cut(text, max_chars - tail_chars)
    tail_start = _safe_cut(text, len(text) - tail_chars) if tail_chars else len(text)
    tail_start = max(tail_start, head_end)
    dropped = tail_start - head_end
    return f"{text[:head_end]}…[省略 {dropped} 字]…{text[tail_start:]}", dropped


def normalize_text(text: str, join_cjk_spaces: bool = True) -> tuple[str, int]:
    """The canonical form of `text` and how many invisible characters were removed."""
    text = unicodedata.normalize("NFKC", text)
    text, removed = _drop_invisible(text)
    text = _WHITESPACE.sub(_collapse, text).strip()
    if join_cjk_spaces:
        text = _CJK_GAP.sub("", text)
    return text, removed


@dataclass
class _Tally:
    removed: int = 0
    simplified: int = 0
    truncated: int = 0
    dropped: int = 0


class Normalize:
    """NFKC, simplified, invisible characters out, whitespace collapsed, long texts
    truncated: for the text and every turn."""

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self.options = step_options(NormalizeOptions, options, "normalize")

    def _one(self, text: str, tally: _Tally) -> str:
        opts = self.options
        out, removed = normalize_text(text, opts.join_cjk_spaces)
        tally.removed += removed
        if opts.to_simplified and out:
            simple = to_simplified(out)
            if simple != out:
                tally.simplified += sum(a != b for a, b in zip(out, simple, strict=False)) or 1
                out = simple
        out, dropped = truncate(out, opts.max_chars, opts.tail_chars)
        if dropped:
            tally.truncated += 1
            tally.dropped += dropped
        return out

    def __call__(self, record: FeedbackRecord) -> FeedbackRecord:
        tally = _Tally()
        text = self._one(record.text, tally)
        turns = tuple(replace(turn, text=self._one(turn.text, tally)) for turn in record.turns)
        reasons = record.reasons
        if tally.removed:
            detail = f"removed {tally.removed} control or invisible character(s)"
            reasons += (Reason("normalize", detail, 0.0),)
        if tally.simplified:
            detail = f"traditional → simplified: {tally.simplified} character(s)"
            reasons += (Reason("normalize", detail, 0.0),)
        if tally.truncated:
            detail = (
                f"truncated {tally.truncated} text(s) over {self.options.max_chars} characters: "
                f"{tally.dropped} character(s) left out between head and tail"
            )
            reasons += (Reason("normalize", detail, 0.0),)
        return replace(record, text=text, text_masked=text, turns=turns, reasons=reasons)
