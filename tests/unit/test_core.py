"""The core's pure parts: codec, options, settings, registry, rendering."""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Literal

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest import registry
from ingest.codec import (
    MAX_MESSAGE_BYTES,
    decode_event,
    decode_record,
    encode_event,
    encode_record,
    event_from_dict,
)
from ingest.dead import replay_target
from ingest.errors import ConfigError, PermanentError
from ingest.model import FeedbackEvent, FeedbackRecord, Reason, Sentiment, Turn, stable_id
from ingest.options import Secret, parse_options
from ingest.render import display_width, fit
from ingest.settings import apply_env, load_settings, settings_from_dict


def full_record() -> FeedbackRecord:
    event = FeedbackEvent(
        id="wechat-1",
        channel="wechat",
        text="卡被盗刷了",
        source="gh_1",
        native_id="9223372036854775807",
        received_at=datetime(2026, 11, 20, 1, 2, 3, tzinfo=UTC),
        author="oAbc",
        turns=(Turn("customer", "喂", 0, 900, 7.0, -2.0), Turn("agent", "您好", 900, 1500)),
        rating=1,
        meta={"msg_type": "text", "nested": {"a": [1, 2]}},
        raw_ref="s3://x",
    )
    base = FeedbackRecord.from_event(event)
    return FeedbackRecord(
        **{
            **{f: getattr(base, f) for f in base.__dataclass_fields__},
            "kind": "complaint",
            "urgency": "urgent",
            "sentiment": Sentiment(0.01, 0.05, "negative"),
            "reasons": (Reason("funds_at_risk", "盗刷", 3.0),),
            "due_at": datetime(2026, 11, 21, 1, 2, 3, tzinfo=UTC),
            "pii_found": ("card",),
            "repeat_count": 2,
            "category": "service",
            "business": "cards",
            "customer_ref": "abc",
        }
    )


def test_event_and_record_round_trip_through_the_wire_format() -> None:
    record = full_record()
    assert decode_record(encode_record(record)) == record
    event = FeedbackEvent(id="x", channel="phone", text="你好")
    assert decode_event(encode_event(event)) == event


def test_native_dataclass_encoding_is_byte_identical_to_asdict() -> None:
    """The codec lets orjson serialise dataclasses itself (10x faster than asdict);
    the bytes on the bus must be exactly what the asdict encoding gave."""
    record = full_record()
    by_asdict = orjson.dumps(
        {"schema": 1, "record": dataclasses.asdict(record)}, option=orjson.OPT_NON_STR_KEYS
    )
    assert encode_record(record) == by_asdict


def test_wire_format_is_the_contract_envelope() -> None:
    doc = orjson.loads(encode_event(FeedbackEvent(id="x", channel="email", text="t")))
    assert doc["schema"] == 1 and set(doc) == {"schema", "event"}
    assert doc["event"]["received_at"].endswith("+00:00")


def test_only_id_channel_and_text_are_required() -> None:
    event = decode_event(b'{"schema":1,"event":{"id":"a","channel":"sms","text":"hi"}}')
    assert (event.rating, event.turns, event.lang) == (None, (), "zh")


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b"not json", "bad_json"),
        (b"[1,2]", "bad_schema"),
        (b'{"schema":2,"event":{}}', "bad_schema"),
        (b'{"schema":1,"event":{"channel":"x","text":"t"}}', "bad_schema"),
        (b'{"schema":1,"event":{"id":"a","channel":"x","text":5}}', "bad_schema"),
        (b'{"schema":1,"event":{"id":"a","channel":"x","text":"t","rating":9}}', "bad_schema"),
        (
            b'{"schema":1,"event":{"id":"a","channel":"x","text":"t","received_at":"yesterday"}}',
            "bad_schema",
        ),
        (
            b'{"schema":1,"event":{"id":"a","channel":"x","text":"t","received_at":"2026-01-01T00:00:00"}}',
            "bad_schema",
        ),
        (
            b'{"schema":1,"event":{"id":"a","channel":"x","text":"t","turns":[{"role":"boss"}]}}',
            "bad_schema",
        ),
        (
            b'{"schema":1,"event":{"id":"a","channel":"x","text":"' + b"x" * 60_000 + b'"}}',
            "oversized",
        ),
        (b" " * (MAX_MESSAGE_BYTES + 1), "oversized"),
    ],
)
def test_bad_messages_are_permanent_errors_with_a_kind(body: bytes, kind: str) -> None:
    with pytest.raises(PermanentError) as info:
        decode_event(body)
    assert info.value.kind == kind


def test_times_are_normalised_to_utc() -> None:
    event = event_from_dict(
        {"id": "a", "channel": "x", "text": "t", "received_at": "2026-11-24T08:00:00+08:00"}
    )
    assert event.received_at == datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
    shanghai = datetime(2026, 11, 24, 8, tzinfo=timezone(timedelta(hours=8)))
    assert (
        event_from_dict(
            {"id": "a", "channel": "x", "text": "t", "received_at": shanghai.timestamp()}
        ).received_at
        == shanghai
    )


@pytest.mark.parametrize(
    ("value", "shape"),
    [
        ("张三 13800138000", "14 characters: digits, letters (non-ASCII), spaces"),
        ("zhang.san@example.com", "21 characters: letters (ASCII), other"),
        ("2026-13-01T00:00:00+08:00", "25 characters: digits, letters (ASCII), other"),
    ],
)
def test_a_refused_time_is_described_not_quoted(value: str, shape: str) -> None:
    """parse_time's reason goes to the logs and the dead letter's reason: it says what
    the value looks like (length, kinds of character), never the value itself (it
    quoted up to 40 characters of it)."""
    body = orjson.dumps(
        {"schema": 1, "event": {"id": "a", "channel": "x", "text": "t", "received_at": value}}
    )
    with pytest.raises(PermanentError) as info:
        decode_event(body)
    reason = str(info.value)
    assert reason == f"field 'received_at' is not ISO 8601 (got {shape})"
    assert info.value.kind == "bad_schema"
    assert not any(part in reason for part in ("13800138000", "张三", "zhang", "2026-13"))


def test_a_time_before_the_first_utc_instant_is_a_permanent_error() -> None:
    """0001-01-01T00:00:00+01:00 is before datetime.min in UTC: astimezone raised
    OverflowError, which escaped decode_event instead of dead-lettering the message."""
    body = orjson.dumps(
        {
            "schema": 1,
            "event": {
                "id": "a",
                "channel": "x",
                "text": "t",
                "received_at": "0001-01-01T00:00:00+01:00",
            },
        }
    )
    with pytest.raises(PermanentError, match="out of range") as info:
        decode_event(body)
    assert info.value.kind == "bad_schema"


def test_an_unknown_schema_is_described_not_quoted() -> None:
    """The schema field is whatever the producer sent: the reason says its shape."""
    with pytest.raises(PermanentError) as info:
        decode_event(orjson.dumps({"schema": "张三 13800138000", "event": {}}))
    assert "13800138000" not in str(info.value) and "张三" not in str(info.value)
    assert "unknown schema (14 characters" in str(info.value)


def test_numeric_vendor_ids_are_kept_as_strings() -> None:
    event = event_from_dict({"id": 9223372036854775807, "channel": "wechat", "text": "t"})
    assert event.id == "9223372036854775807"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_decoding_arbitrary_bytes_never_raises_anything_but_permanent_error(data: bytes) -> None:
    with contextlib.suppress(PermanentError):
        decode_event(data)


def test_stable_ids_are_deterministic_and_channel_scoped() -> None:
    assert stable_id("email", "42", "7") == stable_id("email", "42", "7")
    assert stable_id("email", "42", "7") != stable_id("wechat", "42", "7")
    assert stable_id("email", "4", "27") != stable_id("email", "42", "7")


@dataclass(frozen=True)
class _Opts:
    path: str
    token: Secret = Secret("")  # noqa: RUF009 - immutable
    interval_secs: float = 5.0
    mode: Literal["a", "b"] = "a"
    tags: tuple[str, ...] = ()


def test_options_reject_unknown_keys_with_a_suggestion() -> None:
    with pytest.raises(ConfigError) as info:
        parse_options(_Opts, {"path": "x", "intervall_secs": 3}, "connectors.forms")
    assert info.value.key == "connectors.forms.intervall_secs"
    assert 'did you mean "interval_secs"' in str(info.value)


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({}, "c.path"),
        ({"path": 3}, "c.path"),
        ({"path": "x", "mode": "z"}, "c.mode"),
        ({"path": "x", "interval_secs": "5"}, "c.interval_secs"),
        ({"path": "x", "tags": "a"}, "c.tags"),
    ],
)
def test_options_name_the_bad_key(table: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_options(_Opts, table, "c")
    assert info.value.key == key


def test_secrets_never_show_in_repr() -> None:
    opts = parse_options(_Opts, {"path": "x", "token": "s3cr3t-value"})
    assert "s3cr3t" not in repr(opts)
    assert opts.token.reveal() == "s3cr3t-value"


def test_environment_overrides_follow_the_documented_shape() -> None:
    doc = apply_env(
        {"http": {"port": 1}},
        {
            "FEEDBACK_HTTP__PORT": "9000",
            "FEEDBACK_BROKER__URL": "amqp://h/",
            "FEEDBACK_CONNECTORS__WX_MAIN__TOKEN": "tok",
            "FEEDBACK_CONFIG": "ignored.toml",
            "OTHER": "x",
        },
    )
    assert doc == {
        "http": {"port": 9000},
        "broker": {"url": "amqp://h/"},
        "connectors": {"wx_main": {"token": "tok"}},
    }


def test_settings_file_plus_environment(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "f.toml"
    path.write_text(
        '[broker]\nurl = "amqp://a/"\n[connectors.forms]\ntype = "file_drop"\npath = "/in"\n',
        encoding="utf-8",
    )
    path.chmod(0o600)
    s = load_settings(path, {"FEEDBACK_BROKER__URL": "amqp://b/"})
    assert s.broker.url is not None and s.broker.url.reveal() == "amqp://b/"
    assert not s.embedded and s.connectors["forms"]["path"] == "/in"
    assert "amqp://b" not in repr(s)


@pytest.mark.parametrize(
    ("doc", "key"),
    [
        ({"brokr": {}}, "brokr"),
        ({"http": {"prot": 1}}, "http.prot"),
        ({"connectors": {"x": {"path": "/"}}}, "connectors.x.type"),
        ({"log": {"level": "loud"}}, "log.level"),
    ],
)
def test_bad_settings_name_the_key(doc: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings_from_dict(doc)
    assert info.value.key == key


def test_no_config_means_embedded_defaults() -> None:
    s = load_settings(None, {})
    assert s.embedded and s.store_url.startswith("sqlite:///")


def test_registry_suggests_the_connector_meant() -> None:
    with pytest.raises(ConfigError) as info:
        registry.connector_class("file_dorp", key="connectors.x.type")
    assert 'did you mean "file_drop"' in str(info.value)


def test_replay_targets() -> None:
    assert replay_target({"x-error-stage": "connector:forms"}) is None
    assert replay_target({"x-error-stage": "processor", "x-channel": "email"}) == (
        "feedback.ingress",
        "email.normal",
    )
    assert replay_target({"x-error-stage": "sink:sql_store", "x-channel": "email"})[0] == (
        "feedback.classified"
    )
    assert replay_target(
        {"x-origin-exchange": "feedback.ingress", "x-origin-routing-key": "wechat.urgent"}
    ) == ("feedback.ingress", "wechat.urgent")


def test_table_cells_fit_cjk_width() -> None:
    assert display_width(fit("银行卡被盗刷了怎么办啊", 10)) == 10
    assert fit("abc", 5) == "abc  "
