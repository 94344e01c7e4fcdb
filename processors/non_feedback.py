"""The `non_feedback` step: drops what a channel sends that is not a customer's
feedback — WeChat follow / menu / scan events, WeCom system rows and servicer
messages — which connectors publish (when told to keep them) marked
`meta["feedback"] = False`. First in the chain, so nothing is spent on them and they
never reach the desk; the drop is counted and logged with its reason, not stored."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ingest.errors import Drop
from ingest.model import FeedbackRecord
from processors import step_options


@dataclass(frozen=True)
class NonFeedbackOptions:
    pass


class NonFeedback:
    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        step_options(NonFeedbackOptions, options, "non_feedback")

    def __call__(self, record: FeedbackRecord) -> FeedbackRecord:
        if record.meta.get("feedback") is False:
            kind = record.meta.get("kind") or record.meta.get("event") or "event"
            raise Drop(f"not customer feedback ({kind})")
        return record
