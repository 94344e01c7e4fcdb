"""The call signals (connectors/transcripts/signals.py) on constructed turn lists, and
the webhook signature (signing.py)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from connectors.transcripts import signals
from connectors.transcripts.call import Call, CallTurn, Interruptions, Silence
from connectors.transcripts.signing import sign, verify
from ingest.errors import Rejected
from ingest.model import Role


def turn(
    role: Role,
    start_ms: int,
    end_ms: int,
    text: str = "好的",
    energy: float | None = None,
    rate: float | None = None,
) -> CallTurn:
    return CallTurn(role, text, start_ms, end_ms, energy=energy, rate=rate)


def c(start_ms: int, end_ms: int, **kw: float | str | None) -> CallTurn:
    return turn("customer", start_ms, end_ms, **kw)  # type: ignore[arg-type]


def a(start_ms: int, end_ms: int, **kw: float | str | None) -> CallTurn:
    return turn("agent", start_ms, end_ms, **kw)  # type: ignore[arg-type]


def test_talk_ratio_and_longest_turn() -> None:
    turns = [a(0, 2000), c(2000, 8000), a(8000, 10000), c(10000, 11000)]
    assert signals.talk_ms(turns, "customer") == 7000
    assert signals.customer_talk_ratio(turns) == pytest.approx(7000 / 11000, abs=0.001)
    assert signals.longest_turn_ms(turns, "customer") == 6000
    assert signals.customer_talk_ratio([turn("system", 0, 5000)]) is None
    assert signals.longest_turn_ms([a(0, 1)], "customer") == 0


@pytest.mark.parametrize(
    ("turns", "expected"),
    [
        ([a(0, 5000), c(3000, 6000)], Interruptions(1, 1, 0)),  # customer cuts in
        ([c(0, 5000), a(4000, 6000)], Interruptions(1, 0, 1)),  # agent cuts in
        ([a(0, 5000), c(4800, 6000)], Interruptions(0, 0, 0)),  # 200 ms: ASR jitter
        ([a(0, 5000), c(5000, 6000), a(6500, 7000)], Interruptions(0, 0, 0)),
        ([a(0, 9000), c(1000, 2000), c(3000, 4000)], Interruptions(2, 2, 0)),
        ([c(0, 2000), c(1000, 3000)], Interruptions(0, 0, 0)),  # same party: not one
        ([turn("system", 0, 9000), c(1000, 2000)], Interruptions(0, 0, 0)),  # IVR prompt
        ([c(3000, 6000), a(0, 5000)], Interruptions(1, 1, 0)),  # order of the list is not time
    ],
)
def test_interruptions_count_who_cut_in(turns: list[CallTurn], expected: Interruptions) -> None:
    assert signals.interruptions(turns) == expected


def test_silence_is_gaps_of_a_second_or_more_between_first_and_last_turn() -> None:
    turns = [a(5000, 8000), c(8500, 12000), a(20000, 23000), c(22000, 30000), a(31500, 32000)]
    gaps = signals.gap_silences(turns)
    assert gaps == [Silence(12000, 20000), Silence(30000, 31500)]  # 500 ms is turn-taking
    assert signals.silence_totals(gaps) == (9500, 8000)
    assert signals.silence_totals([]) == (0, 0)


def test_dead_air_after_the_customer_is_the_longest_silent_wait_for_the_agent() -> None:
    turns = [c(0, 3000), a(15000, 18000), c(18500, 20000), a(20400, 21000), a(40000, 41000)]
    assert signals.dead_air_after_customer_ms(turns) == 12000
    assert signals.dead_air_after_customer_ms([a(0, 1000), a(9000, 9500)]) == 0


def test_energy_rise_compares_the_last_and_first_quarter_of_customer_turns() -> None:
    energies = [5.0, 5.2, 6.0, 6.5, 7.0, 7.5, 8.0, 9.0]  # 8 turns: quarters of 2
    turns = [c(i * 1000, i * 1000 + 900, energy=e) for i, e in enumerate(energies)]
    turns.append(a(9000, 9500, energy=10.0))  # the agent's energy is not the customer's
    assert signals.energy_rise(turns) == pytest.approx((8.0 + 9.0) / 2 - (5.0 + 5.2) / 2)
    assert signals.energy_max(turns) == 9.0
    assert signals.energy_rise([c(0, 1, energy=5.0)]) is None
    assert signals.energy_rise([c(0, 1, energy=7.0), c(2, 3, energy=5.0)]) == -2.0
    assert signals.energy_max([c(0, 1)]) is None


def test_speech_units_count_chinese_characters_and_other_words() -> None:
    assert signals.speech_units("我要投诉，VIP card 12378！") == 4 + 3


def test_rate_spike_is_the_fastest_customer_turn_over_their_own_median() -> None:
    turns = [c(0, 1, rate=r) for r in (200, 210, 220, 400)]
    assert signals.rate_spike(turns) == (215.0, 1.86)
    assert signals.rate_spike(turns[:2]) is None
    # Without a vendor rate: characters per minute, short turns skipped.
    computed = [
        c(0, 3000, text="我" * 10),  # 200 per minute
        c(5000, 8000, text="我" * 12),  # 240
        c(9000, 11000, text="我" * 20),  # 600
        c(12000, 12500, text="我" * 30),  # too short to measure
    ]
    assert signals.rate_spike(computed) == (240.0, 2.5)


def test_call_signals_prefer_vendor_measurements_and_name_the_source() -> None:
    turns = [a(0, 5000), c(3000, 6000), a(9000, 10000)]
    gaps = signals.call_signals(Call("generic", turns))
    assert (gaps["silence_source"], gaps["silence_longest_ms"]) == ("gaps", 3000)
    assert (gaps["interruptions_source"], gaps["customer_interruptions"]) == ("turns", 1)
    vendor = signals.call_signals(
        Call(
            "contact_lens",
            turns,
            vendor_silences=[Silence(100, 4100)],
            vendor_interruptions=Interruptions(3, 1, 2),
        )
    )
    assert (vendor["silence_source"], vendor["silence_longest_ms"]) == ("vendor", 4000)
    assert (vendor["interruptions"], vendor["agent_interruptions"]) == (3, 2)


# --- the webhook signature ---------------------------------------------------------

SECRET = "s3cret-for-transcript-webhooks"
BODY = b'{"call_id": "c1"}'


def test_the_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), b"1709280000." + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, "1709280000", BODY) == "sha256=" + expected


def test_a_genuine_fresh_request_verifies_in_either_hex_case() -> None:
    signature = sign(SECRET, "1709280000", BODY)
    verify(SECRET, signature, "1709280000", BODY, now_secs=1709280100, window_secs=300)
    verify(SECRET, signature.upper().replace("SHA256=", "sha256="), "1709280000", BODY,
           now_secs=1709280100, window_secs=300)  # fmt: skip


@pytest.mark.parametrize(
    ("signature", "timestamp", "body", "now", "kind"),
    [
        (None, "1709280000", BODY, 1709280000, "forged"),
        (sign(SECRET, "1709280000", BODY), None, BODY, 1709280000, "forged"),
        (sign("x" * 20, "1709280000", BODY), "1709280000", BODY, 1709280000, "forged"),
        (sign(SECRET, "1709280000", BODY), "1709280000", BODY + b" ", 1709280000, "forged"),
        (sign(SECRET, "1709280000", BODY), "1709280001", BODY, 1709280000, "forged"),
        (sign(SECRET, "17e8", BODY), "17e8", BODY, 1709280000, "forged"),
        (sign(SECRET, "1709280000", BODY), "1709280000", BODY, 1709280000 + 301, "stale"),
        (sign(SECRET, "1709280000", BODY), "1709280000", BODY, 1709280000 - 301, "stale"),
    ],
)  # fmt: skip
def test_forged_and_stale_requests_are_rejected_with_403(
    signature: str | None, timestamp: str | None, body: bytes, now: int, kind: str
) -> None:
    with pytest.raises(Rejected) as info:
        verify(SECRET, signature, timestamp, body, now_secs=now, window_secs=300)
    assert (info.value.status, info.value.kind) == (403, kind)


def test_a_zero_window_accepts_replayed_captures() -> None:
    signature = sign(SECRET, "1000", BODY)
    verify(SECRET, signature, "1000", BODY, now_secs=1709280000, window_secs=0)
