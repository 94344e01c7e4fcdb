"""The generic transcript format (documented in README.md) → Call.

For any ASR or PBX system that is not Alibaba or Contact Lens: a nightly export
script or a small forwarder writes this shape, already split into turns with roles.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.transcripts.call import (
    Call,
    CallTurn,
    Refused,
    items,
    obj,
    offset_ms,
    opt_number,
    opt_text,
    span,
    text,
)
from ingest.model import Role

ROLES: dict[str, Role] = {
    "customer": "customer",
    "客户": "customer",
    "agent": "agent",
    "客服": "agent",
    "坐席": "agent",
    "system": "system",
    "ivr": "system",
}
"""Accepted role names (the Chinese ones as Alibaba's quality-check API labels turns)."""


def looks_like(doc: Mapping[str, Any]) -> bool:
    return isinstance(doc.get("turns"), list) and "call_id" in doc


def _sentiment(value: Any, where: str) -> float | None:
    score = opt_number(value, where)
    if score is not None and not -1.0 <= score <= 1.0:
        raise Refused(f"{where} must be within -1..1, got {score}")
    return score


def parse(doc: Mapping[str, Any]) -> Call:
    turns: list[CallTurn] = []
    for i, raw in enumerate(items(doc.get("turns"), "turns")):
        where = f"turns[{i}]"
        t = obj(raw, where)
        role_name = text(t.get("role"), f"{where}.role").strip().lower()
        if role_name not in ROLES:
            raise Refused(f"{where}.role must be one of {', '.join(ROLES)}, got {role_name[:20]!r}")
        start_ms, end_ms = span(t.get("start_ms"), t.get("end_ms"), where)
        words = text(t.get("text"), f"{where}.text").strip()
        if not words:
            continue
        turns.append(
            CallTurn(
                role=ROLES[role_name],
                text=words,
                start_ms=start_ms,
                end_ms=end_ms,
                energy=opt_number(t.get("energy"), f"{where}.energy"),
                sentiment=_sentiment(t.get("sentiment"), f"{where}.sentiment"),
                rate=opt_number(t.get("rate"), f"{where}.rate"),
            )
        )
    duration = doc.get("duration_ms")
    categories = items(doc.get("categories", []), "categories")
    lang = doc.get("lang")
    return Call(
        format="generic",
        turns=turns,
        call_id=opt_text(doc.get("call_id"), "call_id"),
        agent_id=opt_text(doc.get("agent_id"), "agent_id"),
        queue=opt_text(doc.get("queue"), "queue"),
        caller=opt_text(doc.get("caller"), "caller"),
        started_at=doc.get("started_at"),
        duration_ms=None if duration is None else offset_ms(duration, "duration_ms"),
        vendor={
            "categories": [opt_text(c, "categories[]") for c in categories],
            "language_code": lang if isinstance(lang, str) else "",
        },
        energy_scale="generic",
    )
