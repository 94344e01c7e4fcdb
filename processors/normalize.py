"""The `normalize` step: one canonical form of the customer's words, so that every
later step (PII patterns, keyword tables, sentiment) sees the same characters
whatever the channel sent.

- Unicode NFKC: full-width letters, digits and punctuation become half-width
  ("６２２２" → "6222", "？" → "?"), compatibility forms collapse ("①" → "1").
- Control and invisible format characters are removed (zero-width spaces, BOMs,
  bidi overrides that can disguise text), except the zero-width joiner of emoji.
- Whitespace runs collapse: to one newline when the run holds a line break
  (e-mail paragraphs stay readable), else to one space; ends are trimmed.
- Spaces between two Chinese characters are dropped (option `join_cjk_spaces`,
  default on): Chinese does not separate words, but speech recognition and
  copy-paste insert spaces that would split keywords ("转 账 失败").

Sets `text` and `text_masked` (PII masking comes next) and the turn texts.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from ingest.model import FeedbackRecord, Reason
from processors import step_options

_KEEP_FORMAT = {"\u200d"}  # zero-width joiner: part of emoji sequences
_WHITESPACE = re.compile(r"\s+")
_CJK = r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]"
_CJK_GAP = re.compile(rf"(?<={_CJK}) (?={_CJK})")


@dataclass(frozen=True)
class NormalizeOptions:
    join_cjk_spaces: bool = True


def _drop_invisible(text: str) -> tuple[str, int]:
    kept = [
        ch
        for ch in text
        if ch.isspace() or ch in _KEEP_FORMAT or unicodedata.category(ch) not in ("Cc", "Cf")
    ]
    return "".join(kept), len(text) - len(kept)


def _collapse(match: re.Match[str]) -> str:
    return "\n" if "\n" in match.group() or "\r" in match.group() else " "


def normalize_text(text: str, join_cjk_spaces: bool = True) -> tuple[str, int]:
    """The canonical form of `text` and how many invisible characters were removed."""
    text = unicodedata.normalize("NFKC", text)
    text, removed = _drop_invisible(text)
    text = _WHITESPACE.sub(_collapse, text).strip()
    if join_cjk_spaces:
        text = _CJK_GAP.sub("", text)
    return text, removed


class Normalize:
    """NFKC, invisible characters out, whitespace collapsed, for text and turns."""

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self.options = step_options(NormalizeOptions, options, "normalize")

    def __call__(self, record: FeedbackRecord) -> FeedbackRecord:
        join = self.options.join_cjk_spaces
        text, removed = normalize_text(record.text, join)
        turns = []
        for turn in record.turns:
            turn_text, turn_removed = normalize_text(turn.text, join)
            removed += turn_removed
            turns.append(replace(turn, text=turn_text))
        reasons = record.reasons
        if removed:
            detail = f"removed {removed} control or invisible character(s)"
            reasons += (Reason("normalize", detail, 0.0),)
        return replace(record, text=text, text_masked=text, turns=tuple(turns), reasons=reasons)
