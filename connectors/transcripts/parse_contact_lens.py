"""Amazon Connect Contact Lens post-call analysis (`Analysis/Voice/…/<contactId>_analysis_
<ts>.json`) → Call, for both `Version` "1.1.0" and "VOICE-2022-11-30" (channels.md §4.3;
AWS's published example output files).

Participant ids may be opaque or the literal role names, and the two are mixed within
one real example file, so a turn's `ParticipantId` is looked up in `Participants` and
otherwise read as a role name. Vendor measurements (non-talk time, interruptions,
sentiment scores) are kept: Contact Lens saw the audio, we only see its text.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

from connectors.transcripts.call import (
    Call,
    CallTurn,
    Interruptions,
    Refused,
    Silence,
    count,
    items,
    number,
    obj,
    offset_ms,
    opt_number,
    opt_text,
    span,
    text,
)
from connectors.transcripts.config import TranscriptsOptions
from ingest.model import Role

LABEL_SCORE = {"POSITIVE": 1.0, "NEGATIVE": -1.0, "NEUTRAL": 0.0, "MIXED": 0.0}
_FILE_NAME = re.compile(r"(?:^|/)([A-Za-z0-9-]{8,})_analysis(?:_redacted)?_([^/]*)\.json$")
_RECORDING = re.compile(r"(?:^|/)([A-Za-z0-9-]{8,})_[^/]*$")
_DONE = frozenset({"COMPLETED", "PARTIAL_SUCCESS"})
MAX_KEPT_TEXTS = 20
"""Issues / outcomes / action items kept in meta, each cut to 200 characters."""


def looks_like(doc: Mapping[str, Any]) -> bool:
    return isinstance(doc.get("Transcript"), list) and any(
        k in doc for k in ("Participants", "ConversationCharacteristics", "Version")
    )


def contact_id_from_name(name: str) -> str:
    """`<contactId>_analysis_<ts>.json` (or `_analysis_redacted_`) → contactId, else ""."""
    match = _FILE_NAME.search(name)
    return match.group(1) if match else ""


def analysed_at_from_name(name: str) -> str | None:
    """The `<ts>` of the S3 key (when Contact Lens wrote the analysis), else None."""
    match = _FILE_NAME.search(name)
    return match.group(2) if match else None


class _Roles:
    """ParticipantId → role, with the literal role names as fallback."""

    def __init__(self, doc: Mapping[str, Any], customer: str) -> None:
        self.customer = customer
        self.by_id: dict[str, Role] = {}
        for i, raw in enumerate(items(doc.get("Participants", []), "Participants")):
            p = obj(raw, f"Participants[{i}]")
            pid = opt_text(p.get("ParticipantId"), f"Participants[{i}].ParticipantId")
            role = opt_text(p.get("ParticipantRole"), f"Participants[{i}].ParticipantRole")
            if pid:
                self.by_id[pid] = self._role(role, pid)

    def _role(self, role: str, pid: str = "") -> Role:
        if self.customer in (role, pid):
            return "customer"
        return "agent" if "AGENT" in (role, pid) else "system"

    def of(self, pid: str, where: str) -> Role:
        if pid in self.by_id:
            return self.by_id[pid]
        if pid in ("AGENT", "CUSTOMER", self.customer):
            return self._role(pid)
        raise Refused(f"{where}.ParticipantId {pid[:60]!r} is not in Participants")

    def keyed(self, table: Any, where: str) -> dict[Role, Any]:
        """A vendor table keyed by role names or participant ids, keyed by our roles."""
        out: dict[Role, Any] = {}
        for key, value in obj(table, where).items():
            try:
                out[self.of(str(key), where)] = value
            except Refused:
                continue  # a key for a participant we do not know: not ours to judge
        return out


def _turn(raw: Any, where: str, roles: _Roles) -> tuple[CallTurn, dict[str, list[str]]]:
    t = obj(raw, where)
    role = roles.of(opt_text(t.get("ParticipantId"), f"{where}.ParticipantId"), where)
    start_ms, end_ms = span(t.get("BeginOffsetMillis"), t.get("EndOffsetMillis"), where)
    label = opt_text(t.get("Sentiment"), f"{where}.Sentiment").upper()
    loud = [
        number(v, f"{where}.LoudnessScore")
        for v in items(t.get("LoudnessScore", []), f"{where}.LoudnessScore")
        if v is not None
    ]
    found: dict[str, list[str]] = {}
    for key in ("IssuesDetected", "OutcomesDetected", "ActionItemsDetected"):
        for j, hit in enumerate(items(t.get(key, []), f"{where}.{key}")):
            said = opt_text(obj(hit, f"{where}.{key}[{j}]").get("Text"), f"{where}.{key}.Text")
            found.setdefault(key, []).append(said[:200])
    turn = CallTurn(
        role=role,
        text=text(t.get("Content"), f"{where}.Content").strip(),
        start_ms=start_ms,
        end_ms=end_ms,
        energy=round(sum(loud) / len(loud), 2) if loud else None,
        sentiment=LABEL_SCORE.get(label),
        label=label,
    )
    return turn, found


def _sentiment(cc: Mapping[str, Any], roles: _Roles) -> dict[str, Any]:
    sentiment = obj(cc.get("Sentiment", {}), "Sentiment")
    overall = roles.keyed(sentiment.get("OverallSentiment", {}), "OverallSentiment")
    periods = obj(sentiment.get("SentimentByPeriod", {}), "SentimentByPeriod")
    quarters = roles.keyed(periods.get("QUARTER", {}), "SentimentByPeriod.QUARTER")
    customer_quarters = items(quarters.get("customer", []), "QUARTER.CUSTOMER")
    last = obj(customer_quarters[-1], "QUARTER.CUSTOMER[-1]") if customer_quarters else {}
    return {
        "overall_customer": opt_number(overall.get("customer"), "OverallSentiment.CUSTOMER"),
        "overall_agent": opt_number(overall.get("agent"), "OverallSentiment.AGENT"),
        "last_quarter_customer": opt_number(last.get("Score"), "QUARTER.CUSTOMER.Score"),
    }


def _characteristics(cc: Mapping[str, Any], roles: _Roles, call: Call) -> None:
    total = cc.get("TotalConversationDurationMillis")
    call.duration_ms = None if total is None else offset_ms(total, "TotalConversationDuration")
    if "NonTalkTime" in cc:
        non_talk = obj(cc["NonTalkTime"], "NonTalkTime")
        call.vendor_silences = [
            Silence(*span(s.get("BeginOffsetMillis"), s.get("EndOffsetMillis"), "NonTalkTime"))
            for s in (
                obj(x, "NonTalkTime.Instances[]")
                for x in items(non_talk.get("Instances", []), "NonTalkTime.Instances")
            )
        ]
    if "Interruptions" in cc:
        cut = obj(cc["Interruptions"], "Interruptions")
        by = roles.keyed(cut.get("InterruptionsByInterrupter", {}), "InterruptionsByInterrupter")
        by_customer = len(items(by.get("customer", []), "InterruptionsByInterrupter.CUSTOMER"))
        by_agent = len(items(by.get("agent", []), "InterruptionsByInterrupter.AGENT"))
        given = cut.get("TotalCount")
        total_count = by_customer + by_agent if given is None else count(given, "TotalCount")
        call.vendor_interruptions = Interruptions(total_count, by_customer, by_agent)


def _contact_id(doc: Mapping[str, Any], name: str) -> str:
    meta = doc.get("CustomerMetadata")
    if isinstance(meta, dict):
        contact = opt_text(meta.get("ContactId"), "CustomerMetadata.ContactId")
        if contact:
            return contact
    from_name = contact_id_from_name(name)
    if from_name:
        return from_name
    if isinstance(meta, dict) and isinstance(meta.get("InputS3Uri"), str):
        match = _RECORDING.search(meta["InputS3Uri"])
        if match:
            return match.group(1)
    return ""


def parse(doc: Mapping[str, Any], options: TranscriptsOptions, name: str = "") -> Call:
    status = doc.get("JobStatus")
    if isinstance(status, str) and status not in _DONE:
        raise Refused(f"Contact Lens job status is {status[:40]}", "vendor_failed")
    channel = doc.get("Channel", "VOICE")
    if channel != "VOICE":
        raise Refused(f"Contact Lens Channel {str(channel)[:20]!r} is not a phone call")
    roles = _Roles(doc, options.contact_lens_customer_role)
    turns: list[CallTurn] = []
    found: dict[str, list[str]] = {}
    labels: Counter[str] = Counter()
    for i, raw in enumerate(items(doc.get("Transcript"), "Transcript")):
        turn, hits = _turn(raw, f"Transcript[{i}]", roles)
        for key, texts in hits.items():
            found.setdefault(key, []).extend(texts)
        if not turn.text:
            continue
        turns.append(turn)
        if turn.role == "customer" and turn.label:
            labels[turn.label] += 1
    call = Call(
        format="contact_lens",
        turns=turns,
        call_id=_contact_id(doc, name),
        produced_at=analysed_at_from_name(name),
    )
    cc = obj(doc.get("ConversationCharacteristics", {}), "ConversationCharacteristics")
    _characteristics(cc, roles, call)
    categories = obj(doc.get("Categories", {}), "Categories")
    matched = items(categories.get("MatchedCategories", []), "MatchedCategories")
    language = doc.get("LanguageCode")
    call.vendor = {
        "version": opt_text(doc.get("Version"), "Version"),
        "contact_id": call.call_id,
        "language_code": language if isinstance(language, str) else "",
        "output": opt_text(
            obj(doc.get("ContentMetadata", {}), "ContentMetadata").get("Output"), "Output"
        ),
        "sentiment": {
            **_sentiment(cc, roles),
            "customer_turn_labels": dict(sorted(labels.items())),
        },
        "categories": [opt_text(c, "MatchedCategories[]") for c in matched],
        "issues": found.get("IssuesDetected", [])[:MAX_KEPT_TEXTS],
        "outcomes": found.get("OutcomesDetected", [])[:MAX_KEPT_TEXTS],
        "action_items": found.get("ActionItemsDetected", [])[:MAX_KEPT_TEXTS],
    }
    skipped = obj(doc.get("JobDetails", {}), "JobDetails").get("SkippedAnalysis")
    if isinstance(skipped, list) and skipped:
        call.vendor["skipped_analysis"] = skipped[:MAX_KEPT_TEXTS]
    call.energy_scale = "contact_lens_loudness"
    return call
