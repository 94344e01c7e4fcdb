"""Edge triage: `lane(text)` → "urgent" or "normal", called by connectors before an
event is published, so an urgent complaint never waits behind routine reviews.

It must cost microseconds: it uses the urgent trigger families of the same
`rules/urgency.toml` the `urgency` step uses (one precompiled trie regex, built
once per process) and does nothing else. Escalators (regulator, media …) are
left to the full classification: they raise a level only in context, and a
missed fast lane costs minutes, not the deadline.

The connector's raw text may be full-width or carry speech-recognition spaces,
so it gets the same cheap normalisation as the chain (NFKC, no spaces between
Chinese characters). An operator's rules file reaches triage through
`configure(rules_file, rules_mode)`, which the runtime calls at start-up with
the `[classify.options.urgency]` values.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

from processors.rules import MergeMode, Rules, load_rules

Lane = Literal["urgent", "normal"]

_CJK_GAP = re.compile(r"(?<=[\u3400-\u9fff])\s+(?=[\u3400-\u9fff])")
_rules_file = ""
_rules_mode: MergeMode = "extend"


def configure(rules_file: str = "", rules_mode: MergeMode = "extend") -> None:
    """Use an operator's rules (the urgency step's `rules_file` / `rules_mode`).
    Raises `ConfigError` now, at start-up, if the file is unreadable or invalid."""
    global _rules_file, _rules_mode
    load_rules(rules_file, rules_mode, "classify.options.urgency.rules_file")
    _rules_file, _rules_mode = rules_file, rules_mode


def _rules() -> Rules:
    return load_rules(_rules_file, _rules_mode, "classify.options.urgency.rules_file")


def urgent_word(text: str) -> str | None:
    """The urgent keyword that puts `text` in the fast lane, or None."""
    if not unicodedata.is_normalized("NFKC", text):
        text = unicodedata.normalize("NFKC", text)
    return _rules().urgent.first(_CJK_GAP.sub("", text))


def lane(text: str) -> Lane:
    """The fast lane: "urgent" when the text names a funds, account or system
    problem, else "normal"."""
    return "normal" if urgent_word(text) is None else "urgent"
