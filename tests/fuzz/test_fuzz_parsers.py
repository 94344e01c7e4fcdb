"""Hostile input at every parser of every connector in the registry and at the whole
classification chain: arbitrary bytes, truncated real-shaped payloads, deep nesting,
entity-expansion XML, JSON of the wrong types. Anything but our typed errors, a hang
(per-example time limit) or a memory blow-up (per-example allocation limit) fails.

CI runs a few hundred examples per target; the full run is
`FEEDBACK_FUZZ_EXAMPLES=10000 pytest tests/fuzz`.
"""

from __future__ import annotations

import os
import signal
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest import registry
from ingest.abc import BadInput
from ingest.classify import Chain, ChainSpec
from ingest.codec import encode_event
from ingest.errors import Drop, PermanentError
from ingest.model import FeedbackEvent
from ingest.settings import settings_from_dict

EXAMPLES = int(os.environ.get("FEEDBACK_FUZZ_EXAMPLES", "150"))
SECONDS_PER_EXAMPLE = 5
BYTES_PER_EXAMPLE = 256 * 1024 * 1024

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # the alarm below bounds time; hypothesis' deadline flakes on busy CI
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)


@contextmanager
def bounded(what: str) -> Iterator[None]:
    """Fail on a hang (SIGALRM) or an allocation spike (tracemalloc peak)."""

    def hang(_signum: int, _frame: Any) -> None:
        raise AssertionError(f"{what}: no answer within {SECONDS_PER_EXAMPLE} s")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(SECONDS_PER_EXAMPLE)
    tracemalloc.start()
    try:
        yield
        _, peak = tracemalloc.get_traced_memory()
        assert peak < BYTES_PER_EXAMPLE, f"{what}: allocated {peak / 1e6:.0f} MB"
    finally:
        tracemalloc.stop()
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# --- inputs --------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=40,
)
KEYS = [
    "id", "text", "Text", "Content", "MsgType", "msg_list", "Sentences", "Transcript",
    "Participants", "Result", "turns", "call_id", "reviewId", "comments", "feed", "entry",
    "data", "ToUserName", "Encrypt", "BeginTime", "ChannelId", "ParticipantId",
]  # fmt: skip
keyed_objects = st.dictionaries(st.sampled_from(KEYS), json_values, max_size=8)


def xml_documents() -> st.SearchStrategy[bytes]:
    tags = st.sampled_from(["xml", "ToUserName", "MsgType", "Content", "Encrypt", "MsgId", "a"])
    body = st.text(max_size=60)
    element = st.builds(lambda t, b: f"<{t}><![CDATA[{b}]]></{t}>", tags, body)
    return st.lists(element, max_size=8).map(lambda xs: f"<xml>{''.join(xs)}</xml>".encode())


HOSTILE = [
    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;'
    b'&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><xml><Content>&c;'
    b"</Content></xml>",
    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
    b"<xml><Content>&e;</Content></xml>",
    b"<xml>" * 50_000,
    b"[" * 100_000 + b"]" * 100_000,
    b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
    "投诉".encode("gb18030") * 1000,
    "\ufeff{}".encode("utf-16"),
    b"\x00" * 10_000,
    b'{"text": "' + b"\xe6\x8a" * 1000 + b'"}',
    b"From: a@b\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n"
    + b"--x\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n" * 2000,
]

payloads = (
    st.binary(max_size=4096)
    | keyed_objects.map(orjson.dumps)
    | json_values.map(lambda v: orjson.dumps(v, option=orjson.OPT_NON_STR_KEYS))
    | xml_documents()
    | st.sampled_from(HOSTILE)
)


# --- connectors ------------------------------------------------------------------


def connector_parsers() -> list[tuple[str, Callable[[bytes], Any]]]:
    out = []
    for name in sorted(registry.connector_types()):
        cls = registry.connector_class(name)
        options = cls.Options.example()
        out.append((name, lambda data, cls=cls, options=options: cls.parse_payload(data, options)))
    return out


@pytest.mark.parametrize(
    ("name", "parse"), connector_parsers(), ids=[n for n, _ in connector_parsers()]
)
def test_connector_parser_survives_hostile_input(name: str, parse: Callable[[bytes], Any]) -> None:
    @FUZZ
    @given(data=payloads)
    def check(data: bytes) -> None:
        with bounded(f"{name} parser"):
            try:
                events, bad = parse(data)
            except PermanentError as exc:
                assert str(exc)
                return
            for item in bad:
                assert isinstance(item, BadInput) and item.reason
            for event in events:
                assert isinstance(event, FeedbackEvent) and event.id
                encode_event(event)  # whatever a parser accepts must fit the bus

    check()


@pytest.mark.parametrize("truncate_at", [1, 7, 64, 333])
def test_truncated_real_payloads_never_crash_a_parser(truncate_at: int) -> None:
    """Every connector's own example payload (its contract suite's good payloads are
    real-shaped) cut short at several points."""
    from tests.fuzz.real_payloads import real_payloads

    for name, parse in connector_parsers():
        for data in real_payloads(name):
            with bounded(f"{name} parser, truncated"):
                try:
                    parse(data[:truncate_at])
                    parse(data[: len(data) // 2])
                except PermanentError:
                    pass


# --- the classification chain --------------------------------------------------------

_CHAIN: list[Chain] = []


def chain() -> Chain:
    if not _CHAIN:
        _CHAIN.append(Chain(ChainSpec.from_settings(settings_from_dict({}).classify)))
    return _CHAIN[0]


texts = st.text(max_size=3000) | st.sampled_from(
    ["", " ", "\u202e", "𠀀" * 500, "6222021234567890128" * 50, "投诉" * 5000, "\x00\ud7ff"]
)


@FUZZ
@given(text=texts, rating=st.none() | st.integers(1, 5), meta=keyed_objects)
def test_the_classification_chain_survives_any_text(
    text: str, rating: int | None, meta: dict[str, Any]
) -> None:
    event = FeedbackEvent(id="fuzz", channel="app_review", text=text, rating=rating, meta=meta)
    with bounded("classification chain"):
        try:
            record = chain()(event)
        except (PermanentError, Drop):
            return
    assert record.urgency in ("urgent", "important", "general")
    assert record.due_at is not None
