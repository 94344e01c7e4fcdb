"""Keyword rule tables (`urgency.toml`): loading, merging an operator's file,
validation, and one precompiled matcher per table.

The urgency step (in worker processes) and edge triage (in connectors, where it
must take microseconds) read the same tables, so they are parsed, checked and
compiled here, once per process, and cached.

Keywords are NFKC-normalised like the text they meet, matched case-insensitively,
and each table is compiled into one regex built from a trie of its words: a
single left-to-right pass, the longest keyword wins at a position
("转账失败但扣款" over "转账失败"), and a position no keyword starts at is
rejected on its first character.

A trigger family may also list `near` patterns, the one non-literal form: "one of
`first`, then one of `then` at most `within` characters later" (登录 … 不上 catches
"登陆半天也登录不上" and "登录了三次都登不上" without listing every filler). They are
compiled into one regex per family that has them (each side a trie, the gap a bounded
lazy `.{0,N}?`): a few extra linear passes, and a family's match is never hidden by an
overlapping one of another family; the hit a reason shows is the
matched span itself, so a person sees exactly what fired. Negation cues apply to
them as to words.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from ingest.errors import ConfigError
from ingest.model import KINDS, URGENCY_LEVELS
from ingest.options import suggest

BUILTIN_RULES = Path(__file__).with_name("urgency.toml")
"""The rules shipped with the product; an operator's `rules_file` extends or replaces them."""

MergeMode = Literal["extend", "replace"]

_GROUP_TABLES = ("triggers", "escalators", "kinds", "categories", "business")
_TOP_KEYS = (
    "version",
    "negation",
    "defaults",
    "escalation",
    "rating",
    "amount",
    *_GROUP_TABLES,
)
_GROUP_KEYS = {
    "triggers": ("label", "words", "level", "category", "near"),
    "escalators": ("label", "words"),
    "kinds": ("label", "words"),
    "categories": ("label", "words"),
    "business": ("label", "words"),
}
_CLAUSE_BREAK = re.compile(r"[,.!?;:，。！？；：、\n]")
_ASCII_WORD = re.compile(r"[0-9a-z]", re.IGNORECASE)
_NEAR_KEYS = ("first", "then", "within")
NEAR_MAX_WITHIN = 30
"""Longest gap a `near` pattern may allow: beyond a sentence, co-occurrence means little."""


def normalize_word(word: str) -> str:
    """The form a keyword is compared in: NFKC (as `Normalize` leaves text), lower case."""
    return unicodedata.normalize("NFKC", word).strip().lower()


def trie_pattern(words: Iterable[str]) -> str:
    """One regex alternation for `words`, factored as a trie so that the regex engine
    tries one branch per character instead of every keyword at every position."""
    root: dict[str, Any] = {}
    for word in words:
        node = root
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def build(node: dict[str, Any]) -> str:
        branches = [re.escape(char) + build(child) for char, child in sorted(node.items()) if char]
        if not branches:
            return ""
        ends_here = "" in node
        if len(branches) == 1 and not ends_here:
            return branches[0]
        body = "(?:" + "|".join(branches) + ")"
        return body + "?" if ends_here else body

    return build(root) or "(?!)"


@dataclass(frozen=True, slots=True)
class Near:
    """One of `first`, then one of `then`, with at most `within` characters between them."""

    first: tuple[str, ...]
    then: tuple[str, ...]
    within: int

    def pattern(self) -> str:
        first = trie_pattern(normalize_word(w) for w in self.first)
        then = trie_pattern(normalize_word(w) for w in self.then)
        return f"(?:{first})[^\\n]{{0,{self.within}}}?(?:{then})"


@dataclass(frozen=True, slots=True)
class Group:
    """A named list of keywords: a trigger family, an escalator, a kind, a category…"""

    name: str
    label: str
    words: tuple[str, ...]
    level: str = ""
    """Triggers only: the urgency level the family puts a record at."""
    category: str = ""
    """Triggers only: the complaint category the family suggests."""
    near: tuple[Near, ...] = ()
    """Triggers only: `first … then` patterns, matched besides the words."""


@dataclass(frozen=True, slots=True)
class Negated:
    """A keyword that was found but not counted, and the cue that cancelled it."""

    word: str
    cue: str


@dataclass(frozen=True, slots=True)
class Scan:
    """What one pass of a `Matcher` found: keywords per group, in first-seen order."""

    hits: dict[str, tuple[str, ...]]
    negated: tuple[Negated, ...] = ()

    def words(self, group: str) -> tuple[str, ...]:
        return self.hits.get(group, ())


def _asks_either_way(text: str, cue: str, at: int) -> bool:
    """Whether the cue at `at` is the middle of an A-not-A question (是不是冻结了,
    有没有被盗刷): 不是 after 是 or 没有 after 有 asks, it does not deny."""
    return len(cue) == 2 and cue[0] in "不没" and at > 0 and text[at - 1] == cue[1]


class Matcher:
    """All keywords of one table in one precompiled regex, mapped back to their groups.

    With `negations`, a keyword preceded (within `window` characters of the same
    clause) by a cue such as 没有 / 谨防 / 解除 is reported as negated, not as a hit:
    "没有被盗刷" and "谨防诈骗" are not fraud reports."""

    __slots__ = ("_near", "_negations", "_owners", "_regex", "_window", "groups")

    def __init__(
        self, groups: Sequence[Group], negations: Sequence[str] = (), window: int = 0
    ) -> None:
        self.groups = {group.name: group for group in groups}
        self._owners: dict[str, list[str]] = {}
        for group in groups:
            for word in group.words:
                owners = self._owners.setdefault(normalize_word(word), [])
                if group.name not in owners:
                    owners.append(group.name)
        self._regex = re.compile(trie_pattern(self._owners), re.IGNORECASE)
        # one regex per family, not one for all: matches of one alternation never
        # overlap, so "u盾支付一直签名认证失败" would fire the U-key family and hide the
        # payment-failure one; a pass per family with `near` patterns (a handful) keeps
        # every family's own leftmost match
        self._near = [
            (group.name, re.compile("|".join(n.pattern() for n in group.near), re.IGNORECASE))
            for group in groups
            if group.near
        ]
        self._negations = tuple(normalize_word(cue) for cue in negations if cue.strip())
        self._window = window

    @staticmethod
    def _inside_word(text: str, match: re.Match[str]) -> bool:
        """ASCII keywords ("12378", "app") must not be part of a longer number or word."""
        start, end = match.span()
        return bool(
            (start > 0 and _ASCII_WORD.match(text, start) and _ASCII_WORD.match(text, start - 1))
            or (
                end < len(text)
                and _ASCII_WORD.match(text, end - 1)
                and _ASCII_WORD.match(text, end)
            )
        )

    def _negator(self, text: str, start: int) -> str | None:
        if not self._negations or start == 0:
            return None
        # the window, and one character before it to see the 是 of 是不是
        lead_start = max(0, start - self._window - 1)
        lead = text[lead_start:start].lower()
        before = _CLAUSE_BREAK.split(lead[max(0, start - self._window) - lead_start :])[-1]
        offset = len(lead) - len(before)  # where `before` begins in `lead`
        for cue in self._negations:
            at = before.find(cue)
            while at >= 0:
                if not _asks_either_way(lead, cue, offset + at):
                    return cue
                at = before.find(cue, at + 1)
        return None

    def scan(self, text: str) -> Scan:
        hits: dict[str, list[str]] = {}
        negated: list[Negated] = []
        for match in self._regex.finditer(text):
            if self._inside_word(text, match):
                continue
            word = match.group().lower()
            cue = self._negator(text, match.start())
            if cue is not None:
                negated.append(Negated(word, cue))
                continue
            for owner in self._owners[word]:
                found = hits.setdefault(owner, [])
                if word not in found:
                    found.append(word)
        for match, owner in self._near_matches(text):
            word = match.group().lower()
            cue = self._negator(text, match.start())
            if cue is not None:
                negated.append(Negated(word, cue))
                continue
            found = hits.setdefault(owner, [])
            if word not in found:
                found.append(word)
        return Scan({name: tuple(words) for name, words in hits.items()}, tuple(negated))

    def _near_matches(self, text: str) -> Iterator[tuple[re.Match[str], str]]:
        for owner, regex in self._near:
            for match in regex.finditer(text):
                yield match, owner

    def first(self, text: str) -> str | None:
        """The first keyword that counts, or None: the cheapest possible yes/no."""
        for match in self._regex.finditer(text):
            if not self._inside_word(text, match) and self._negator(text, match.start()) is None:
                return match.group().lower()
        for match, _ in self._near_matches(text):
            if self._negator(text, match.start()) is None:
                return match.group().lower()
        return None


@dataclass(frozen=True, slots=True)
class Rules:
    """The compiled tables of one rules document (built-in, extended or replaced)."""

    source: str
    triggers: Matcher
    urgent: Matcher
    """The urgent-level trigger families only: what edge triage looks for."""
    escalators: Matcher
    failure_words: Matcher
    kinds: Matcher
    categories: Matcher
    business: Matcher
    default_level: str
    default_category: str
    default_business: str
    max_raise: int
    escalate_kinds: tuple[str, ...]
    low_rating_max: int
    amount_min_yuan: float
    elderly_min_age: int


def merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """`extra` laid over `base`: tables merge key by key, lists are united (order kept),
    anything else is replaced. This is what "extend" means for an operator's file."""
    out = dict(base)
    for key, value in extra.items():
        old = out.get(key)
        if isinstance(old, Mapping) and isinstance(value, Mapping):
            out[key] = merge(old, value)
        elif isinstance(old, list) and isinstance(value, list):
            out[key] = old + [item for item in value if item not in old]
        else:
            out[key] = value
    return out


def _read(path: Path, key: str) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(key, f"cannot read rules file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(key, f"rules file {path} is not valid TOML: {exc}") from None


class _Reader:
    """Typed access to the rules document; every error names the file and the path."""

    def __init__(self, doc: Mapping[str, Any], source: str, key: str) -> None:
        self.doc, self.source, self.key = doc, source, key

    def fail(self, where: str, reason: str) -> ConfigError:
        return ConfigError(self.key, f"{self.source}: {where} {reason}")

    def table(self, name: str) -> Mapping[str, Any]:
        value = self.doc.get(name, {})
        if not isinstance(value, Mapping):
            raise self.fail(name, "must be a table")
        return value

    def words(self, where: str, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(w, str) and w.strip() for w in value):
            raise self.fail(where, "must be a list of non-empty strings")
        return tuple(value)

    def number(self, where: str, value: Any, low: float) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or value < low:
            raise self.fail(where, f"must be a number >= {low}")
        return float(value)

    def near(self, where: str, value: Any) -> tuple[Near, ...]:
        if not isinstance(value, list):
            raise self.fail(where, "must be a list of {first, then, within} tables")
        out = []
        for i, spec in enumerate(value):
            at = f"{where}[{i}]"
            if not isinstance(spec, Mapping):
                raise self.fail(at, "must be a table with first, then, within")
            for field in spec:
                if field not in _NEAR_KEYS:
                    raise self.fail(
                        f"{at}.{field}", "is not a known key" + suggest(field, _NEAR_KEYS)
                    )
            within = spec.get("within")
            if isinstance(within, bool) or not isinstance(within, int):
                raise self.fail(f"{at}.within", "must be an integer")
            if not 0 <= within <= NEAR_MAX_WITHIN:
                raise self.fail(f"{at}.within", f"must be between 0 and {NEAR_MAX_WITHIN}")
            first = self.words(f"{at}.first", spec.get("first"))
            then = self.words(f"{at}.then", spec.get("then"))
            if not first or not then:
                raise self.fail(at, "needs non-empty strings in both first and then")
            out.append(Near(first, then, within))
        return tuple(out)

    def groups(self, table: str) -> list[Group]:
        groups = []
        for name, spec in self.table(table).items():
            where = f"{table}.{name}"
            if not isinstance(spec, Mapping):
                raise self.fail(where, "must be a table")
            allowed = _GROUP_KEYS[table]
            for field in spec:
                if field not in allowed:
                    raise self.fail(
                        f"{where}.{field}", "is not a known key" + suggest(field, allowed)
                    )
            level = str(spec.get("level", ""))
            if table == "triggers" and level not in URGENCY_LEVELS:
                raise self.fail(f"{where}.level", f"must be one of {', '.join(URGENCY_LEVELS)}")
            if table == "kinds" and name not in KINDS:
                raise self.fail(where, f"is not a kind; kinds are {', '.join(KINDS)}")
            groups.append(
                Group(
                    name=name,
                    label=str(spec.get("label", name)),
                    words=self.words(f"{where}.words", spec.get("words", [])),
                    level=level,
                    category=str(spec.get("category", "")),
                    near=self.near(f"{where}.near", spec.get("near", [])),
                )
            )
        return groups


def build_rules(doc: Mapping[str, Any], source: str, key: str = "rules_file") -> Rules:
    """Validate a rules document and compile its matchers."""
    reader = _Reader(doc, source, key)
    for name in doc:
        if name not in _TOP_KEYS:
            raise reader.fail(name, "is not a known table" + suggest(name, _TOP_KEYS))
    negation = reader.table("negation")
    cues = reader.words("negation.before", negation.get("before", []))
    window = int(reader.number("negation.window", negation.get("window", 4), 0))
    defaults = reader.table("defaults")
    default_level = str(defaults.get("level", "general"))
    if default_level not in URGENCY_LEVELS:
        raise reader.fail("defaults.level", f"must be one of {', '.join(URGENCY_LEVELS)}")
    escalation = reader.table("escalation")
    rating = reader.table("rating")
    triggers = reader.groups("triggers")
    failure = Group(
        "failure", "失败词", reader.words("rating.failure_words", rating.get("failure_words", []))
    )
    return Rules(
        source=source,
        triggers=Matcher(triggers, cues, window),
        urgent=Matcher([g for g in triggers if g.level == "urgent"], cues, window),
        escalators=Matcher(reader.groups("escalators"), cues, window),
        failure_words=Matcher([failure], cues, window),
        kinds=Matcher(reader.groups("kinds")),
        categories=Matcher(reader.groups("categories")),
        business=Matcher(reader.groups("business")),
        default_level=default_level,
        default_category=str(defaults.get("category", "service")),
        default_business=str(defaults.get("business", "")),
        max_raise=int(reader.number("escalation.max_raise", escalation.get("max_raise", 1), 0)),
        escalate_kinds=reader.words("escalation.kinds", escalation.get("kinds", ["complaint"])),
        low_rating_max=int(reader.number("rating.low_max", rating.get("low_max", 2), 0)),
        amount_min_yuan=reader.number(
            "amount.min_yuan", reader.table("amount").get("min_yuan", 10_000), 0
        ),
        elderly_min_age=int(
            reader.number("escalation.elderly_min_age", escalation.get("elderly_min_age", 65), 0)
        ),
    )


@lru_cache(maxsize=8)
def load_rules(rules_file: str = "", mode: MergeMode = "extend", key: str = "rules_file") -> Rules:
    """The built-in rules, extended by (or replaced with) `rules_file`; compiled once
    per process for each distinct argument set."""
    if mode not in ("extend", "replace"):
        raise ValueError(f"mode must be 'extend' or 'replace', not {mode!r}")
    doc = _read(BUILTIN_RULES, key)
    source = "built-in urgency.toml"
    if rules_file:
        extra = _read(Path(rules_file), key)
        doc = extra if mode == "replace" else merge(doc, extra)
        source = rules_file if mode == "replace" else f"built-in urgency.toml + {rules_file}"
    return build_rules(doc, source, key)
