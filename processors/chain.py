"""Names of the classification steps, for configuration (`[classify] steps`).

The core registry imports `STEPS` lazily, in every process, so this module stays
import-light: the step modules (and snownlp behind `sentiment`) are imported
only when `build` resolves a name.

Order of `DEFAULT_STEPS` matters: `non_feedback` drops channel events first;
`normalize` gives every later step one form of
the text; `pii` masks before anything could be stored or logged; `sentiment`
comes before `urgency` (the kind uses it) and `deadline` needs the level and kind;
`churn` only flags (it reads the text and changes no decision).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ingest.errors import ConfigError
from ingest.options import suggest

if TYPE_CHECKING:
    from ingest.abc import Step
    from ingest.model import FeedbackRecord

DEFAULT_STEPS: tuple[str, ...] = (
    "non_feedback",
    "normalize",
    "pii",
    "sentiment",
    "urgency",
    "churn",
    "deadline",
)

STEPS: dict[str, str] = {
    "non_feedback": "processors.non_feedback:NonFeedback",
    "normalize": "processors.normalize:Normalize",
    "pii": "processors.pii:MaskPii",
    "sentiment": "processors.sentiment:Sentiment",
    "urgency": "processors.urgency:Urgency",
    "churn": "processors.churn:Churn",
    "deadline": "processors.deadline:Deadline",
}


def build(
    names: Iterable[str] = DEFAULT_STEPS,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    key: str = "classify.steps",
) -> list[Step]:
    """The steps `names`, each built from its table in `options` (keyed by step name).
    A chain without `pii` is refused: unmasked personal data must never be stored."""
    from ingest.registry import import_string

    names = list(names)
    options = options or {}
    for name in names:
        if name not in STEPS:
            raise ConfigError(key, f"unknown processor step {name!r}" + suggest(name, STEPS))
    if "pii" not in names:
        raise ConfigError(
            key, "the chain must include 'pii' (personal data is masked before storage)"
        )
    for name in options:
        if name not in names:
            raise ConfigError(
                f"classify.options.{name}",
                "options for a step not in the chain" + suggest(name, names),
            )
    return [import_string(STEPS[name])(options.get(name, {})) for name in names]


def run(steps: Sequence[Step], record: FeedbackRecord) -> FeedbackRecord:
    """Apply `steps` in order (a step may raise `Drop` or `PermanentError`)."""
    for step in steps:
        record = step(record)
    return record
