"""Names and addresses for the `pii` step, found only where a clear cue introduces them
("我叫", "姓名:", "客户…先生", "地址:", "住在"): free text is full of surnames and place
words, and a masked "王府井" or "高级客户" would hide what the desk needs to read.
The cue words, surnames and units live in `rules/pii_cues.toml` (see its header).

Masking keeps what identifies no one on its own:
- a full name keeps its surname: 张三 → 张*, 欧阳娜娜 → 欧阳** (the common display form);
- a bare surname with an honorific loses the surname: 王先生 → *先生, 我姓王 → 我姓*
  (it has no given name to hide, and a masked name never shows more than a surname);
- an address keeps its province / city / district and loses the rest, with a fixed
  "***" that does not tell its length: 上海市浦东新区张江路100号 → 上海市浦东新区***.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

CUES_FILE = Path(__file__).with_name("rules") / "pii_cues.toml"
_HAN = "\u4e00-\u9fff"
_REGION = re.compile(
    rf"(?:[{_HAN}]{{2,7}}?(?:省|自治区|特别行政区))?"
    rf"(?:[{_HAN}]{{2,8}}?(?:市|自治州|地区|盟))?"
    rf"(?:[{_HAN}]{{1,6}}?(?:(?<![小园社校景街])区|县|旗|市))?"  # 小区 is no district
)
_NUMBER = "[0-9一二三四五六七八九十百零]+"


@dataclass(frozen=True, slots=True)
class Span:
    """One name or address to mask: where it is, what replaces it, which kind."""

    start: int
    end: int
    replacement: str
    kind: str


def _chars(text: str) -> frozenset[str]:
    return frozenset(ch for ch in text if not ch.isspace())


def _alternation(words: list[str]) -> str:
    return "|".join(sorted(words, key=len, reverse=True))


class CueFinder:
    """Precompiled cue patterns of one `pii_cues.toml` document."""

    def __init__(self, doc: dict[str, Any]) -> None:
        names, addresses = doc["names"], doc["addresses"]
        self.surnames = _chars(names["surnames"])
        self.compound: tuple[str, ...] = tuple(names["compound_surnames"])
        self.name_stop = _chars(names["stop"])
        self.titles: tuple[str, ...] = tuple(names["titles"])
        self.honorifics = tuple(sorted(names["honorifics"], key=len, reverse=True))
        self._intro = re.compile(f"(?:{_alternation(names['intro'])})\\s*")
        self._surname_only = re.compile(f"(?:{_alternation(names['surname_only'])})")
        honor = _alternation([re.escape(h) for h in names["honorifics"]])
        self._honorific = re.compile(
            f"(?:{_alternation(names['honorific_cues'])})([{_HAN}]{{1,4}}?)(?:{honor})"
        )
        self._address_cue = re.compile(f"(?:{_alternation(addresses['cues'])})\\s*")
        stop = re.escape("".join(sorted(_chars(addresses["stop"]))))
        limit = int(addresses["max_chars"])
        self._address_run = re.compile(
            f"(?:[^\\W0-9_{stop}]|[A-Za-z#-]|[0-9]{{1,6}}(?![0-9])){{1,{limit}}}"
        )
        units = _alternation([re.escape(u) for u in addresses["units"]])
        self._unit = re.compile(f"(?:{units})")
        self._unit_or_number = re.compile(f"(?:{units})|[0-9A-Za-z#-]+|{_NUMBER}")
        street = _alternation([re.escape(u) for u in addresses["street_units"]])
        self._street = re.compile(f"(?:{street}).*?{_NUMBER}(?:号|栋|幢|单元|室|楼|弄|组)")

    # --- names ------------------------------------------------------------------

    def _surname(self, text: str, pos: int) -> str:
        for compound in self.compound:
            if text.startswith(compound, pos):
                return compound
        return text[pos] if pos < len(text) and text[pos] in self.surnames else ""

    def _full_name(self, text: str, pos: int) -> Span | None:
        """Surname and one or two given-name characters at `pos` (after an intro cue)."""
        surname = self._surname(text, pos)
        if not surname:
            return None
        after = pos + len(surname)
        if text.startswith(self.titles, after):
            return None
        if text.startswith(self.honorifics, after):
            return Span(pos, after, "*" * len(surname), "name")
        given = 0
        while given < 2 and after + given < len(text):
            char = text[after + given]
            if not ("\u4e00" <= char <= "\u9fff") or char in self.name_stop:
                break
            given += 1
        if not given:
            return None
        return Span(pos, after + given, surname + "*" * given, "name")

    def names(self, text: str) -> list[Span]:
        spans = []
        for match in self._honorific.finditer(text):
            name = match.group(1)
            surname = self._surname(name, 0)
            given = name[len(surname) :]
            if surname and not any(ch in self.name_stop for ch in given) and len(given) <= 2:
                masked = surname + "*" * len(given) if given else "*" * len(surname)
                spans.append(Span(match.start(1), match.end(1), masked, "name"))
        for match in self._intro.finditer(text):
            span = self._full_name(text, match.end())
            if span:
                spans.append(span)
        for match in self._surname_only.finditer(text):
            surname = self._surname(text, match.end())
            if surname:
                end = match.end() + len(surname)
                spans.append(Span(match.end(), end, "*" * len(surname), "name"))
        return spans

    # --- addresses ----------------------------------------------------------------

    def _address_at(self, text: str, pos: int) -> Span | None:
        run = self._address_run.match(text, pos)
        if not run:
            return None
        candidate = run.group()
        prefix = _REGION.match(candidate)
        keep = prefix.end() if prefix else 0
        rest = candidate[keep:]
        if not rest or not self._unit.search(rest):
            return None
        if not keep and not self._street.search(rest):
            return None  # no province/city/district: a street and a number at least
        ends = [m.end() for m in self._unit_or_number.finditer(rest)]
        end = pos + keep + ends[-1]
        return Span(pos, end, candidate[:keep] + "***", "address")

    def addresses(self, text: str) -> list[Span]:
        spans = []
        for match in self._address_cue.finditer(text):
            span = self._address_at(text, match.end())
            if span:
                spans.append(span)
        return spans


@lru_cache(maxsize=2)
def load_cues(path: str = str(CUES_FILE)) -> CueFinder:
    """The cue patterns, compiled once per process."""
    with open(path, "rb") as handle:
        return CueFinder(tomllib.load(handle))
