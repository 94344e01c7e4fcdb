"""The `churn` step: flags a customer who says they will leave (销户, 转走, 换一家,
再也不用 …) for retention follow-up, with `meta["churn"] = True` and a reason naming
the words. The level is left alone: whether a threat to leave raises a complaint is
the urgency rules' decision (their `churn` escalator), taken once, in one place.

Words live in `processors/rules/churn.toml`, grouped so the reason says which kind of
intent it was; negation cues keep "没有销户", "卡被注销" and "钱被转走" (fraud, not
churn) out.

Options (`[classify.options.churn]`):
    rules_file  path of an operator's churn words (TOML, same shape as the built-in)
    rules_mode  "extend" (default: added to the built-in words) or "replace"
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from ingest.errors import ConfigError
from ingest.model import FeedbackRecord, Reason
from processors import step_options
from processors.rules import Group, Matcher, MergeMode, _read, merge

BUILTIN_CHURN = Path(__file__).with_name("rules") / "churn.toml"
OPTIONS_KEY = "classify.options.churn.rules_file"


@dataclass(frozen=True)
class ChurnOptions:
    rules_file: str = ""
    rules_mode: Literal["extend", "replace"] = "extend"


def _fail(source: str, where: str, reason: str) -> ConfigError:
    return ConfigError(OPTIONS_KEY, f"{source}: {where} {reason}")


def build_matcher(doc: Mapping[str, Any], source: str) -> Matcher:
    """Validate a churn rules document and compile it into one matcher."""
    for key in doc:
        if key not in ("version", "negation", "churn"):
            raise _fail(source, key, "is not a known table (version, negation, churn)")
    negation = doc.get("negation", {})
    cues = negation.get("before", []) if isinstance(negation, Mapping) else None
    window = negation.get("window", 3) if isinstance(negation, Mapping) else None
    if not isinstance(cues, list) or not all(isinstance(c, str) and c.strip() for c in cues):
        raise _fail(source, "negation.before", "must be a list of non-empty strings")
    if isinstance(window, bool) or not isinstance(window, int) or window < 0:
        raise _fail(source, "negation.window", "must be an integer >= 0")
    table = doc.get("churn", {})
    if not isinstance(table, Mapping) or not table:
        raise _fail(source, "churn", "must be a table of word groups")
    groups = []
    for name, spec in table.items():
        words = spec.get("words") if isinstance(spec, Mapping) else None
        if not isinstance(words, list) or not all(isinstance(w, str) and w.strip() for w in words):
            raise _fail(source, f"churn.{name}.words", "must be a list of non-empty strings")
        extra = set(spec) - {"label", "words"}
        if extra:
            raise _fail(source, f"churn.{name}", f"has unknown key(s) {sorted(extra)}")
        groups.append(Group(name, str(spec.get("label", name)), tuple(words)))
    return Matcher(groups, cues, window)


@lru_cache(maxsize=8)
def load_churn(rules_file: str = "", mode: MergeMode = "extend") -> Matcher:
    """The built-in churn words, extended by (or replaced with) `rules_file`, compiled
    once per process."""
    doc = _read(BUILTIN_CHURN, OPTIONS_KEY)
    source = "built-in churn.toml"
    if rules_file:
        extra = _read(Path(rules_file), OPTIONS_KEY)
        doc = extra if mode == "replace" else merge(doc, extra)
        source = rules_file if mode == "replace" else f"{source} + {rules_file}"
    return build_matcher(doc, source)


class Churn:
    """Sets `meta["churn"] = True` when the customer says they will leave."""

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self.options = step_options(ChurnOptions, options, "churn")
        self.matcher = load_churn(self.options.rules_file, self.options.rules_mode)

    def __call__(self, record: FeedbackRecord) -> FeedbackRecord:
        scan = self.matcher.scan(record.text)
        reasons = [
            Reason("churn", f"not counted: {n.word} after {n.cue}", 0.0) for n in scan.negated
        ]
        meta = record.meta
        if scan.hits:
            found = "; ".join(
                f"{self.matcher.groups[name].label} [{name}]: {', '.join(words)}"
                for name, words in scan.hits.items()
            )
            reasons.append(Reason("churn", f"retention follow-up: {found} (level unchanged)"))
            meta = {**meta, "churn": True}
        if not reasons:
            return record
        return replace(record, meta=meta, reasons=record.reasons + tuple(reasons))
