"""The classification chain: small pure steps over a `FeedbackRecord`.

Each step is a class built from a plain options mapping (its
`[classify.options.<step>]` table) whose `__call__(record)` returns a new record
made with `dataclasses.replace`, and which leaves a `Reason` for every decision.
`processors.chain` names the steps; the order of the default chain matters:
normalise, then mask personal data (before anything can be stored or logged),
then sentiment, urgency/kind/category/business, churn (a flag only), and the
deadlines (which need the level and the kind).

Nothing here imports snownlp at module level: the core imports
`processors.chain` and `processors.triage` in connectors and the CLI, where a
second of model loading would be wasted.
"""

from collections.abc import Mapping
from typing import Any, TypeVar

from ingest.options import parse_options

T = TypeVar("T")

SHARED_KEYS = ("timezone", "customer_ref_key", "contact_key", "holidays_file")
"""`[classify]` values the core passes to every step (see `ingest.classify.ChainSpec`);
a step that does not declare one simply does not receive it."""


def step_options(cls: type[T], options: Mapping[str, Any] | None, step: str) -> T:
    """A step's frozen options from its table: unknown keys are errors naming
    `classify.options.<step>.<key>`, except the shared keys the step does not use."""
    fields = getattr(cls, "__dataclass_fields__", {})
    table = {
        key: value
        for key, value in (options or {}).items()
        if key in fields or key not in SHARED_KEYS
    }
    return parse_options(cls, table, f"classify.options.{step}")
