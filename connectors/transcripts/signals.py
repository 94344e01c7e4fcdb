"""Urgency signals of a call (channels.md §4.5), as pure functions over turn lists.

The classifier reads these from `meta["signals"]`; each is defined here once, the same
for every vendor, so a threshold tuned on Alibaba calls means the same on Contact Lens
calls. Vendor measurements are preferred where the vendor saw the audio and we only
see text (Contact Lens non-talk time and interruptions); everything else is computed
from the turns. Every function returns None rather than a made-up number when the call
lacks what it needs.
"""

from __future__ import annotations

import itertools
import re
import statistics
from collections.abc import Sequence
from typing import Any

from connectors.transcripts.call import Call, CallTurn, Interruptions, Silence
from ingest.model import Role

MIN_SILENCE_MS = 1000
"""Gaps shorter than this are breathing and turn-taking, not silence."""
MIN_OVERLAP_MS = 300
"""ASR turn boundaries jitter by a few hundred ms; a smaller overlap is not an interruption."""
MIN_RATE_TURN_MS = 1000
"""A speech rate computed from a turn shorter than this is noise."""
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_WORD = re.compile(r"[A-Za-z0-9]+(?:['’][A-Za-z]+)?")


def _of(turns: Sequence[CallTurn], role: Role) -> list[CallTurn]:
    return [t for t in turns if t.role == role]


def _ordered(turns: Sequence[CallTurn]) -> list[CallTurn]:
    return sorted(turns, key=lambda t: (t.start_ms, t.end_ms))


def talk_ms(turns: Sequence[CallTurn], role: Role) -> int:
    return sum(t.end_ms - t.start_ms for t in _of(turns, role))


def customer_talk_ratio(turns: Sequence[CallTurn]) -> float | None:
    """Customer talk time over customer + agent talk time (0..1)."""
    customer, agent = talk_ms(turns, "customer"), talk_ms(turns, "agent")
    return None if customer + agent == 0 else round(customer / (customer + agent), 3)


def longest_turn_ms(turns: Sequence[CallTurn], role: Role) -> int:
    return max((t.end_ms - t.start_ms for t in _of(turns, role)), default=0)


def interruptions(turns: Sequence[CallTurn]) -> Interruptions:
    """A turn of one party that starts at least MIN_OVERLAP_MS before the other party's
    running turn ends (and after it began)."""
    last_start: dict[str, int] = {}
    last_end: dict[str, int] = {}
    by = {"customer": 0, "agent": 0}
    for turn in _ordered(turns):
        if turn.role not in by:
            continue
        other = "agent" if turn.role == "customer" else "customer"
        if (
            other in last_end
            and last_start[other] < turn.start_ms
            and last_end[other] - turn.start_ms >= MIN_OVERLAP_MS
        ):
            by[turn.role] += 1
        last_start[turn.role] = turn.start_ms
        last_end[turn.role] = max(last_end.get(turn.role, 0), turn.end_ms)
    return Interruptions(by["customer"] + by["agent"], by["customer"], by["agent"])


def gap_silences(turns: Sequence[CallTurn]) -> list[Silence]:
    """Stretches of at least MIN_SILENCE_MS in which nobody speaks, between the first
    and the last turn (ringing before and hang-up after are not dead air)."""
    silences: list[Silence] = []
    spoken_until: int | None = None
    for turn in _ordered(turns):
        if spoken_until is not None and turn.start_ms - spoken_until >= MIN_SILENCE_MS:
            silences.append(Silence(spoken_until, turn.start_ms))
        spoken_until = turn.end_ms if spoken_until is None else max(spoken_until, turn.end_ms)
    return silences


def silence_totals(silences: Sequence[Silence]) -> tuple[int, int]:
    """(total ms, longest ms)."""
    lengths = [s.end_ms - s.begin_ms for s in silences]
    return sum(lengths), max(lengths, default=0)


def dead_air_after_customer_ms(turns: Sequence[CallTurn]) -> int:
    """Longest wait, in silence, from the end of a customer turn to the agent's answer:
    hold or dead air after the customer asked something."""
    longest = 0
    spoken_until = 0
    ordered = _ordered(turns)
    for before, after in itertools.pairwise(ordered):
        spoken_until = max(spoken_until, before.end_ms)
        if before.role == "customer" and after.role == "agent":
            longest = max(longest, after.start_ms - spoken_until)
    return longest


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def energy_rise(turns: Sequence[CallTurn], role: Role = "customer") -> float | None:
    """Mean energy of the party's last quarter of turns minus that of its first
    quarter (by turn count, at least one turn each): escalating emotion is positive."""
    energies = [t.energy for t in _ordered(_of(turns, role)) if t.energy is not None]
    if len(energies) < 2:
        return None
    k = max(1, len(energies) // 4)
    return round(_mean(energies[-k:]) - _mean(energies[:k]), 3)


def energy_max(turns: Sequence[CallTurn], role: Role = "customer") -> float | None:
    energies = [t.energy for t in _of(turns, role) if t.energy is not None]
    return max(energies) if energies else None


def speech_units(words: str) -> int:
    """Characters of Chinese plus words of anything else: the unit of speech rate."""
    return len(_CJK.findall(words)) + len(_WORD.findall(words))


def turn_rate(turn: CallTurn) -> float | None:
    """The vendor's rate, else units per minute for turns long enough to measure."""
    if turn.rate is not None:
        return turn.rate
    duration = turn.end_ms - turn.start_ms
    units = speech_units(turn.text)
    if duration < MIN_RATE_TURN_MS or units < 2:
        return None
    return units * 60_000 / duration


def rate_spike(turns: Sequence[CallTurn], role: Role = "customer") -> tuple[float, float] | None:
    """(median rate, fastest turn / median) of the party's own turns; needs three."""
    rates = [r for t in _of(turns, role) if (r := turn_rate(t)) is not None]
    if len(rates) < 3:
        return None
    median = statistics.median(rates)
    if median <= 0:
        return None
    return round(median, 1), round(max(rates) / median, 2)


def call_signals(call: Call) -> dict[str, Any]:
    """Every signal of one call, as `meta["signals"]` (units in the names)."""
    turns = call.turns
    if call.vendor_silences is not None:
        silence_source, silences = "vendor", call.vendor_silences
    else:
        silence_source, silences = "gaps", gap_silences(turns)
    silence_total, silence_longest = silence_totals(silences)
    if call.vendor_interruptions is not None:
        cut, interruptions_source = call.vendor_interruptions, "vendor"
    else:
        cut, interruptions_source = interruptions(turns), "turns"
    spike = rate_spike(turns)
    return {
        "duration_ms": call.duration_ms,
        "turns": len(turns),
        "customer_turns": len(_of(turns, "customer")),
        "customer_talk_ms": talk_ms(turns, "customer"),
        "agent_talk_ms": talk_ms(turns, "agent"),
        "customer_talk_ratio": customer_talk_ratio(turns),
        "customer_longest_turn_ms": longest_turn_ms(turns, "customer"),
        "interruptions": cut.total,
        "customer_interruptions": cut.by_customer,
        "agent_interruptions": cut.by_agent,
        "interruptions_source": interruptions_source,
        "silence_total_ms": silence_total,
        "silence_longest_ms": silence_longest,
        "silence_source": silence_source,
        "dead_air_after_customer_ms": dead_air_after_customer_ms(turns),
        "customer_energy_max": energy_max(turns),
        "customer_energy_rise": energy_rise(turns),
        "energy_scale": call.energy_scale,
        "customer_rate_median": None if spike is None else spike[0],
        "customer_rate_spike": None if spike is None else spike[1],
    }
