"""The `urgency` step: urgency level, kind, category and business line, decided by the
keyword tables of `processors/rules/urgency.toml` (see its header for the policy),
with three small learned models beside them (`processors/ngram_model.py`).

Rules first because the desk and auditors must be able to check every decision: each
one leaves a reason naming the rule and the words. The models only fill gaps the
rules leave: the level model may raise a complaint or a question in which the rules
found no failure word (never lower one), the category model names the
category where no category word occurs, the kind model names the kind where no cue
word does; their reasons name the character sequences behind them.
Reason signals (bounded, usable as metric labels):

    trigger         a trigger family fired: level, family, words
    negated         a keyword was found but cancelled by a cue before it (没有, 谨防 …)
    default_level   no trigger word: the default level
    escalator       an escalator raised (or would have raised) the level
    rating          the star rating's effect (a low one with failure words raises;
                    a good one is noted and never lowers)
    model           the learned n-gram model (processors/ngram_model.py) raised the
                    level: its probability and the character sequences behind it
    kept_level      an earlier step had already set a higher level
    urgency         the final level and how it was reached
    kind / category / business   the classification and its cue words

Options (`[classify.options.urgency]`):
    rules_file  path of an operator's rules file (TOML, same shape as the built-in)
    rules_mode  "extend" (default: laid over the built-in rules) or "replace"
    model       "builtin" (default: processors/rules/urgency_model.json), "off", or the
                path of a model file written by bench/train_urgency_model.py. The model
                only ever raises the rules' level, only for complaints and questions (not
                praise or suggestions) in which the rules found no negated keyword, and
                only when sure enough:
    model_urgent_probability     (default 0.5) to raise to urgent where the rules found
                no failure or defect word
    model_important_probability  (default 0.6) to raise to important, likewise
    model_over_defect_probability  (default 0.8) to raise to urgent where the rules
                named a defect of one feature (an important trigger word): only a
                model this sure that the whole service is down overrides the word
    category_model  the same for the category (processors/rules/category_model.json):
                it decides only where no category word is found (instead of the default)
    kind_model  the same for the kind (processors/rules/kind_model.json): it decides
                only where no kind cue word and no failure or defect word is found
                (instead of reading the sentiment), when at least
    kind_model_probability  (default 0.7) sure
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal, cast

from ingest.errors import ConfigError
from ingest.model import KINDS, URGENCY_LEVELS, URGENCY_RANK, FeedbackRecord, Kind, Reason
from processors import step_options
from processors.ngram_model import NgramModel, load_model
from processors.rules import Matcher, Rules, Scan, load_rules

OPTIONS_KEY = "classify.options.urgency"

_CN_DIGITS = {char: value for value, char in enumerate("一二三四五六七八九", start=1)} | {"两": 2}
_CN_NUMBER = "[一二两三四五六七八九十]{1,3}"
_AMOUNT = re.compile(
    rf"([0-9][0-9,]*(?:\.[0-9]+)?|{_CN_NUMBER})\s*"
    r"(?:(万|千)多?\s*(?:元|块钱|块|人民币)?|多?(?:元|块钱|块))"
)
_AGE = re.compile(r"([0-9]{2,3}|[六七八九]十[一二三四五六七八九]?)\s*(?:多|几)?\s*(?:周岁|岁)")


def _cn_number(text: str) -> int | None:
    """1..99 written in Chinese numerals ("两", "十五", "三十"), else None."""
    if "十" in text:
        tens, _, ones = text.partition("十")
        if len(tens) > 1 or len(ones) > 1:
            return None
        return (_CN_DIGITS.get(tens, 0) if tens else 1) * 10 + (_CN_DIGITS.get(ones, 0))
    return _CN_DIGITS.get(text) if len(text) == 1 else None


def _number(text: str) -> float | None:
    if text[0].isdigit():
        try:
            return float(text.replace(",", ""))
        except ValueError:
            return None
    value = _cn_number(text)
    return None if value is None else float(value)


def largest_amount(text: str) -> tuple[float, str] | None:
    """The largest sum of money the text names in yuan, with the words that named it."""
    best: tuple[float, str] | None = None
    for match in _AMOUNT.finditer(text):
        value = _number(match.group(1))
        if value is None:
            continue
        value *= {"万": 10_000, "千": 1_000}.get(match.group(2) or "", 1)
        if best is None or value > best[0]:
            best = (value, match.group().strip())
    return best


def oldest_age(text: str) -> tuple[int, str] | None:
    """The highest age the text mentions ("72岁", "八十多岁"), with its words."""
    best: tuple[int, str] | None = None
    for match in _AGE.finditer(text):
        raw = match.group(1)
        age = int(raw) if raw.isdigit() else _cn_number(raw)
        if age is not None and (best is None or age > best[0]):
            best = (age, match.group())
    return best


@dataclass(frozen=True)
class UrgencyOptions:
    rules_file: str = ""
    rules_mode: Literal["extend", "replace"] = "extend"
    model: str = "builtin"
    category_model: str = "builtin"
    model_urgent_probability: float = 0.5
    model_important_probability: float = 0.6
    model_over_defect_probability: float = 0.8
    kind_model: str = "builtin"
    kind_model_probability: float = 0.7


def _words(words: tuple[str, ...]) -> str:
    return ", ".join(words)


def _best_group(matcher: Matcher, scan: Scan, bonus: Mapping[str, int]) -> tuple[str, int]:
    """The group with most distinct keywords (plus `bonus`); ties go to table order."""
    best, best_score = "", 0
    for name in matcher.groups:
        score = len(scan.words(name)) + bonus.get(name, 0)
        if score > best_score:
            best, best_score = name, score
    return best, best_score


class Urgency:
    """Level (urgent / important / general), kind, category and business of a record."""

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self.options = step_options(UrgencyOptions, options, "urgency")
        self.rules: Rules = load_rules(
            self.options.rules_file, self.options.rules_mode, f"{OPTIONS_KEY}.rules_file"
        )
        self.model = load_model("urgency", self.options.model, f"{OPTIONS_KEY}.model")
        self.category_model = load_model(
            "category", self.options.category_model, f"{OPTIONS_KEY}.category_model"
        )
        self.kind_model = load_model("kind", self.options.kind_model, f"{OPTIONS_KEY}.kind_model")
        for option in (
            "model_urgent_probability",
            "model_important_probability",
            "model_over_defect_probability",
            "kind_model_probability",
        ):
            if not 0.0 <= getattr(self.options, option) <= 1.0:
                raise ConfigError(f"{OPTIONS_KEY}.{option}", "must be within 0 and 1")
        categories = {*self.rules.categories.groups, self.rules.default_category}
        self.model = self._fitting(self.model, set(URGENCY_RANK), "model")
        self.category_model = self._fitting(self.category_model, categories, "category_model")
        self.kind_model = self._fitting(self.kind_model, set(KINDS), "kind_model")

    def _fitting(
        self, model: NgramModel | None, allowed: set[str], option: str
    ) -> NgramModel | None:
        """`model` if its classes are among `allowed`. A built-in model that does not fit
        an operator's replaced rules (other categories) is left out; a model file the
        operator named is an error."""
        if model is None or set(model.classes) <= allowed:
            return model
        if getattr(self.options, option) == "builtin":
            return None
        raise ConfigError(
            f"{OPTIONS_KEY}.{option}",
            f"the model's classes {list(model.classes)} are not all of {sorted(allowed)}",
        )

    def __call__(self, record: FeedbackRecord) -> FeedbackRecord:
        text = record.text
        rules = self.rules
        reasons: list[Reason] = []
        triggers = rules.triggers.scan(text)
        topic = self._topic(triggers, reasons)
        kind = self._kind(record, rules.kinds.scan(text), topic, bool(triggers.hits), reasons)
        rank = self._escalate(record, kind, URGENCY_RANK[topic], reasons)
        rank, by_model = self._learned(text, kind, topic, bool(triggers.negated), rank, reasons)
        if URGENCY_RANK[record.urgency] < rank:
            reasons.append(Reason("kept_level", f"kept {record.urgency} set by an earlier step"))
            rank = URGENCY_RANK[record.urgency]
        level = URGENCY_LEVELS[rank]
        raised = URGENCY_RANK[topic] - rank
        how = f"topic {topic}" + (f", raised {raised} level(s)" if raised > 0 else "")
        how += " (by the learned model)" if by_model and raised > 0 else ""
        reasons.append(Reason("urgency", f"{level}: {how}"))
        category = self._category(text, triggers, topic, reasons)
        business = self._business(text, reasons)
        return replace(
            record,
            urgency=level,
            kind=kind,
            category=category,
            business=business,
            reasons=record.reasons + tuple(reasons),
        )

    def _topic(self, triggers: Scan, reasons: list[Reason]) -> str:
        for negated in triggers.negated:
            reasons.append(
                Reason("negated", f"not counted: {negated.word} after {negated.cue}", 0.0)
            )
        if not triggers.hits:
            level = self.rules.default_level
            reasons.append(Reason("default_level", f"no trigger word: {level} by default", 0.5))
            return level
        groups = self.rules.triggers.groups
        topic = min((groups[name].level for name in triggers.hits), key=URGENCY_RANK.__getitem__)
        for name, words in triggers.hits.items():
            group = groups[name]
            weight = 1.0 if group.level == topic else 0.5
            detail = f"{group.level} · {group.label} [{name}]: {_words(words)}"
            reasons.append(Reason("trigger", detail, weight))
        return topic

    def _kind(
        self,
        record: FeedbackRecord,
        cues: Scan,
        topic: str,
        any_trigger: bool,
        reasons: list[Reason],
    ) -> Kind:
        label = record.sentiment.label if record.sentiment else "neutral"
        negative = label == "negative"
        rating = record.rating
        low = rating is not None and rating <= self.rules.low_rating_max
        kind: Kind
        if cues.words("complaint"):
            kind, why = "complaint", f"cue {_words(cues.words('complaint'))}"
        elif topic == "urgent":
            kind, why = "complaint", "a funds, account or system problem, however it is phrased"
        elif cues.words("praise") and not negative and not low:
            kind, why = "praise", f"cue {_words(cues.words('praise'))}"
        elif cues.words("suggestion"):
            kind, why = "suggestion", f"cue {_words(cues.words('suggestion'))}"
        elif cues.words("consultation") and topic != "important":
            kind, why = "consultation", f"cue {_words(cues.words('consultation'))}"
        elif learned := self._learned_kind(record.text, topic, low):
            kind, why = learned
        elif negative or low or topic == "important":
            kind, why = (
                "complaint",
                f"no cue word; sentiment {label}, rating {rating}, topic {topic}",
            )
        elif label == "positive" or (rating is not None and rating >= 4):
            kind, why = "praise", f"no cue word; sentiment {label}, rating {rating}"
        else:
            general = "general trigger words" if any_trigger else "nothing else"
            kind, why = "complaint", f"no cue word, {general}: complaint by default"
        reasons.append(Reason("kind", f"{kind}: {why}", 0.5))
        return kind

    def _learned_kind(self, text: str, topic: str, low: bool) -> tuple[Kind, str] | None:
        """The kind model's answer where no cue word spoke and no failure or defect word
        was found, if it is sure enough: sentiment alone misreads app reviews
        (snownlp gives 0.81 to "卡在输入验证码的位置，无法进入，悲剧了"). Never praise for a
        low star rating."""
        if self.kind_model is None or topic != "general":
            return None
        prediction = self.kind_model.predict(text)
        best = prediction.label
        probability = prediction.probabilities[best]
        if probability < self.options.kind_model_probability or (best == "praise" and low):
            return None
        why = f"no cue word; {self.kind_model.chose(text, best, probability)}"
        return cast(Kind, best), why  # its classes are checked at start-up

    def _escalations(self, record: FeedbackRecord) -> list[tuple[str, str]]:
        """(signal, detail) for every escalation signal in the record."""
        rules = self.rules
        text = record.text
        found: list[tuple[str, str]] = []
        escalators = rules.escalators.scan(text)
        for name, words in escalators.hits.items():
            label = rules.escalators.groups[name].label
            found.append(("escalator", f"{label} [{name}]: {_words(words)}"))
        age = oldest_age(text)
        if age and age[0] >= rules.elderly_min_age and "elderly" not in escalators.hits:
            found.append(("escalator", f"老年客户 [elderly]: {age[1]}"))
        amount = largest_amount(text)
        if amount and amount[0] >= rules.amount_min_yuan:
            found.append(
                ("escalator", f"涉及金额 [amount]: {amount[1]} (≥ {rules.amount_min_yuan:g} 元)")
            )
        rating = record.rating
        if rating is not None and rating <= rules.low_rating_max:
            failure = rules.failure_words.scan(text).words("failure")
            if failure:
                found.append(("rating", f"{rating}★ with failure words {_words(failure)}"))
        return found

    def _escalate(
        self, record: FeedbackRecord, kind: Kind, rank: int, reasons: list[Reason]
    ) -> int:
        rules = self.rules
        applies = kind in rules.escalate_kinds
        raised = 0
        for signal, detail in self._escalations(record):
            if not applies:
                reasons.append(Reason(signal, f"{detail}: not applied to a {kind}", 0.0))
            elif rank == 0:
                reasons.append(Reason(signal, f"{detail}: already urgent", 0.5))
            elif raised >= rules.max_raise:
                reasons.append(
                    Reason(signal, f"{detail}: no further raise (at most {rules.max_raise})", 0.5)
                )
            else:
                before, rank, raised = URGENCY_LEVELS[rank], rank - 1, raised + 1
                reasons.append(Reason(signal, f"{detail}: {before} → {URGENCY_LEVELS[rank]}"))
        if record.rating is not None and record.rating > rules.low_rating_max and rank < 2:
            reasons.append(
                Reason(
                    "rating", f"{record.rating}★ noted: a good rating never lowers the level", 0.0
                )
            )
        return rank

    def _learned(
        self, text: str, kind: Kind, topic: str, negated: bool, rank: int, reasons: list[Reason]
    ) -> tuple[int, bool]:
        """Raise `rank` to the learned model's level when that is higher and the model
        is sure enough; the reason names the n-grams that pushed towards it. Never lower;
        complaints and questions only (a question can put money at stake: 转账20万一天了
        怎么还不到账？; praise and suggestions are not raised); not where the rules found a
        keyword negated (不是冻结, 没有被盗刷): the model sees the characters, not the "not".
        Where the rules named a defect of one feature (`topic` important) the bar is
        higher and only urgent is reachable: trained on thousands of short "用不了" /
        "打不开" reviews of a whole app that was down, the model would otherwise make every
        broken feature urgent, while domain.md keeps a single defect important."""
        raisable = kind in ("complaint", "consultation")
        if self.model is None or not raisable or negated or topic == "urgent":
            return rank, False
        options = self.options
        bars = (
            {
                "urgent": options.model_urgent_probability,
                "important": options.model_important_probability,
            }
            if topic == "general"
            else {"urgent": options.model_over_defect_probability}
        )
        probabilities = self.model.predict(text).probabilities
        level = next(
            (
                name
                for name, bar in bars.items()
                if URGENCY_RANK[name] < rank and probabilities.get(name, 0.0) >= bar
            ),
            None,
        )
        if level is None:
            return rank, False
        pushes = self.model.because(text, level)
        over = f", over the {topic} rule words (p ≥ {bars[level]:g})" if topic != "general" else ""
        detail = (
            f"learned n-gram model: {level} p={probabilities[level]:.2f} "
            f"({pushes or 'no single sequence'}): {URGENCY_LEVELS[rank]} → {level}{over}"
        )
        reasons.append(Reason("model", detail, 0.7))
        return URGENCY_RANK[level], True

    def _category(self, text: str, triggers: Scan, topic: str, reasons: list[Reason]) -> str:
        groups = self.rules.triggers.groups
        bonus: dict[str, int] = {}
        for name in triggers.hits:
            if groups[name].level == topic and groups[name].category:
                bonus[groups[name].category] = 2
        matcher = self.rules.categories
        scan = matcher.scan(text)
        best, _ = _best_group(matcher, scan, bonus)
        if not best and self.category_model is not None:
            # Only where the words say nothing: the model learned from app reviews, where
            # "product" dominates, and would outvote 理赔/审核 words on an insurer's text.
            prediction = self.category_model.predict(text)
            best = prediction.label
            chose = self.category_model.chose(text, best, prediction.probabilities[best])
            reasons.append(Reason("category", f"{best}: no category word; {chose}", 0.3))
            return best
        if not best:
            best = self.rules.default_category
            reasons.append(Reason("category", f"{best}: no category word, the default", 0.3))
            return best
        because = [_words(scan.words(best))] if scan.words(best) else []
        if best in bonus:
            because.append(f"the {topic} trigger family belongs here")
        label = matcher.groups[best].label
        reasons.append(Reason("category", f"{best} ({label}): {'; '.join(because)}", 0.5))
        return best

    def _business(self, text: str, reasons: list[Reason]) -> str:
        matcher = self.rules.business
        scan = matcher.scan(text)
        best, _ = _best_group(matcher, scan, {})
        if not best:
            best = self.rules.default_business
            reasons.append(Reason("business", f"{best or 'unknown'}: no business word", 0.0))
            return best
        label = matcher.groups[best].label
        reasons.append(Reason("business", f"{best} ({label}): {_words(scan.words(best))}", 0.5))
        return best
