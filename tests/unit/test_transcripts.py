"""The transcripts connector (connectors/transcripts): every format, role mapping,
call metadata, ids, hostile input, the drop folder and the webhook, and the contract.

Fixtures in tests/fixtures/transcripts are shaped exactly like the vendors' published
output: Alibaba's `GetTaskResult` / 4.0 callback and the legacy 2.0 snake_case callback
(Alibaba NLS 录音文件识别 API reference), Contact Lens "1.1.0" and "VOICE-2022-11-30"
(AWS "Example Contact Lens output files", amazon-connect-admin-guide), with Chinese
bank service calls in place of the sample dialogue.
"""

from __future__ import annotations

import json
import os
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.transcripts.config import DEAD_LETTER_BYTES, TranscriptsOptions
from connectors.transcripts.connector import TranscriptsConnector
from connectors.transcripts.parse import parse_transcript
from connectors.transcripts.signing import sign
from ingest.abc import Batch
from ingest.bus.base import Q_DEAD, Q_PROCESS
from ingest.codec import decode_event, event_to_dict
from ingest.errors import ConfigError
from ingest.model import FeedbackEvent
from ingest.options import parse_options
from ingest.registry import connector_class
from ingest.testing import ConfirmControlBus, ConnectorContract, PushRequest, push_client, send

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "transcripts"
ALIBABA = "alibaba_getresult_dual.json"
ALIBABA_V2 = "alibaba_callback_v2.json"
CL_110 = "6f1b3c2e-8d4a-4b9e-9c1f-2a7e5d0b3c41_analysis_2024-03-02T03:41:09Z.json"
CL_2022 = "0e4c7a91-3f2b-4d8e-a6c5-9b1d2e3f4a5b_analysis_redacted_2024-03-03T01:30:44Z.json"
GENERIC = "generic_collection_call.json"
SECRET = "s3cret-for-transcript-webhooks"
SOURCE = "95588信用卡中心"
NOW = datetime(2024, 3, 5, 8, 0, tzinfo=UTC)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def doc(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = orjson.loads(fixture(name))
    return loaded


def opts(**overrides: Any) -> TranscriptsOptions:
    table = {"source": SOURCE, "path": "/srv/transcripts", "secret": SECRET, **overrides}
    return parse_options(TranscriptsOptions, table, "connectors.calls")


def parse(
    data: bytes, options: TranscriptsOptions | None = None, **kwargs: Any
) -> tuple[list[FeedbackEvent], list[Any]]:
    return parse_transcript(data, options or opts(), received_at=NOW, **kwargs)


def one(data: bytes, options: TranscriptsOptions | None = None, **kwargs: Any) -> FeedbackEvent:
    events, bad = parse(data, options, **kwargs)
    assert not bad, [b.reason for b in bad]
    (event,) = events
    return event


def refused(data: bytes, options: TranscriptsOptions | None = None, **kwargs: Any) -> Any:
    events, bad = parse(data, options, **kwargs)
    assert events == [], "accepted although it should be refused"
    (item,) = bad
    assert item.raw == data[:DEAD_LETTER_BYTES], "a dead letter keeps the original bytes"
    return item


def dumps(value: Any) -> bytes:
    """Stdlib JSON: it writes what orjson refuses to (integers beyond 64 bits)."""
    return json.dumps(value, ensure_ascii=False).encode()


# --- every format ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "options", "fmt", "native_id", "turns", "customer_turns", "says"),
    [
        (ALIBABA, {}, "alibaba", "b505e78c4c6d11e9a213e11db149a3c1", 13, 6, "投诉到银保监会"),
        (
            ALIBABA_V2,
            {"alibaba_customer_speaker": "2"},
            "alibaba",
            "3f5d4c0c399511e98dc025f34473a1b2",
            6,
            3,
            "银保监会投诉",
        ),
        (CL_110, {}, "contact_lens", "6f1b3c2e-8d4a-4b9e-9c1f-2a7e5d0b3c41", 9, 4, "找律师起诉"),
        (CL_2022, {}, "contact_lens", "0e4c7a91-3f2b-4d8e-a6c5-9b1d2e3f4a5b", 6, 3, "12378"),
        (GENERIC, {}, "generic", "GZ-PBX-20240304-000731", 6, 3, "暴力催收"),
    ],
)
def test_every_format_becomes_one_call_event(
    name: str,
    options: dict[str, Any],
    fmt: str,
    native_id: str,
    turns: int,
    customer_turns: int,
    says: str,
) -> None:
    event = one(fixture(name), opts(**options), name=name)
    assert (event.channel, event.source, event.native_id) == ("phone", SOURCE, native_id)
    assert event.meta["format"] == fmt and event.meta["call_id"] == native_id
    assert len(event.turns) == turns
    assert sum(t.role == "customer" for t in event.turns) == customer_turns
    assert says in event.text
    customer_words = [t.text for t in event.turns if t.role == "customer"]
    assert event.text == "\n".join(customer_words), "text is the customer's words only"
    assert all(t.start_ms is not None and t.end_ms is not None for t in event.turns)
    assert event.meta["signals"]["customer_turns"] == customer_turns
    assert decode_event(orjson.dumps({"schema": 1, "event": event})) == event


def test_the_format_is_detected_and_a_configured_format_refuses_others() -> None:
    assert one(fixture(GENERIC), opts(format="generic")).meta["format"] == "generic"
    item = refused(fixture(GENERIC), opts(format="alibaba"))
    assert item.kind == "wrong_format" and "alibaba" in item.reason


def test_alibaba_sidecar_gives_the_call_id_agent_queue_caller_and_start_time() -> None:
    event = one(fixture(ALIBABA), sidecar=fixture(ALIBABA + ".meta.json"), name=ALIBABA)
    assert event.native_id == "CC20240301091522-0001"
    assert (event.meta["agent_id"], event.meta["queue"]) == ("1024", "信用卡中心-盗刷专线")
    assert event.author == "13812345678"
    assert event.received_at == datetime(2024, 3, 1, 1, 15, 22, tzinfo=UTC)  # 09:15:22 CST
    assert event.meta["vendor"]["task_id"] == "b505e78c4c6d11e9a213e11db149a3c1"
    assert event.meta["duration_ms"] == 91500


def test_alibaba_energy_and_rate_reach_the_turns_and_signals() -> None:
    event = one(fixture(ALIBABA))
    first_customer = next(t for t in event.turns if t.role == "customer")
    assert first_customer.energy == 6.2 and first_customer.start_ms == 4600
    signals = event.meta["signals"]
    assert signals["customer_energy_max"] == 8.6
    assert signals["customer_energy_rise"] == pytest.approx(2.2)
    assert (signals["customer_rate_median"], signals["customer_rate_spike"]) == (295.0, 1.19)
    assert (signals["silence_longest_ms"], signals["silence_source"]) == (12000, "gaps")
    assert signals["dead_air_after_customer_ms"] == 12000
    assert (signals["interruptions"], signals["customer_interruptions"]) == (1, 1)
    assert signals["customer_talk_ratio"] == pytest.approx(35000 / 77500, abs=0.001)


def test_alibaba_customer_channel_is_configurable() -> None:
    default = one(fixture(ALIBABA))
    flipped = one(fixture(ALIBABA), opts(alibaba_customer_channel=0))
    assert flipped.text.startswith("您好，信用卡中心")
    assert [t.role for t in flipped.turns] == [
        "agent" if t.role == "customer" else "customer" for t in default.turns
    ]


def test_alibaba_mono_track_without_the_customer_channel_says_what_to_configure() -> None:
    item = refused(fixture(ALIBABA_V2))  # every sentence on ChannelId 0
    assert item.kind == "no_customer" and "alibaba_customer_speaker" in item.reason


def test_alibaba_speaker_rule_needs_a_speaker_id_on_every_sentence() -> None:
    sentences = doc(ALIBABA)["Result"]["Sentences"]
    item = refused(dumps({"Sentences": sentences}), opts(alibaba_customer_speaker="2"))
    assert "SpeakerId" in item.reason


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        ("RUNNING", "not_finished"),
        ("QUEUEING", "not_finished"),
        ("FILE_DOWNLOAD_FAILED", "vendor_failed"),
        ("SUCCESS_WITH_NO_VALID_FRAGMENT", "empty"),
    ],
)
def test_alibaba_unfinished_or_failed_tasks_are_refused(status: str, kind: str) -> None:
    body = {"TaskId": "t1", "RequestId": "r", "StatusText": status, "StatusCode": 21050001}
    assert refused(dumps(body)).kind == kind


def test_contact_lens_maps_opaque_participant_ids_and_keeps_vendor_measurements() -> None:
    event = one(fixture(CL_110), name=CL_110)
    assert event.turns[2].role == "agent"  # ParticipantId "AGENT" literally, as in AWS's example
    assert event.lang == "zh"
    vendor = event.meta["vendor"]
    assert vendor["sentiment"]["overall_customer"] == -3.4
    assert vendor["sentiment"]["last_quarter_customer"] == -4.6
    assert vendor["sentiment"]["customer_turn_labels"] == {"NEGATIVE": 3, "NEUTRAL": 1}
    assert vendor["categories"] == ["投诉升级", "账户冻结"]
    assert vendor["issues"] == ["我的借记卡突然被冻结了", "我要找律师起诉你们"]
    signals = event.meta["signals"]
    assert (signals["silence_longest_ms"], signals["silence_source"]) == (8500, "vendor")
    assert (signals["customer_interruptions"], signals["agent_interruptions"]) == (1, 1)
    assert signals["interruptions_source"] == "vendor"
    assert event.turns[1].sentiment == -1.0 and event.turns[1].energy is not None


def test_contact_lens_call_id_from_metadata_file_name_or_recording_uri() -> None:
    cl = doc(CL_2022)
    assert one(dumps(cl)).native_id == "0e4c7a91-3f2b-4d8e-a6c5-9b1d2e3f4a5b"  # ContactId
    del cl["CustomerMetadata"]["ContactId"]
    assert one(dumps(cl)).native_id == "0e4c7a91-3f2b-4d8e-a6c5-9b1d2e3f4a5b"  # InputS3Uri
    del cl["CustomerMetadata"]
    assert refused(dumps(cl)).kind == "no_call_id"
    key = "Analysis/Voice/2024/03/03/abcd1234-ef56_analysis_2024-03-03T01:30:44Z.json"
    wrapped = {"meta": {"file_name": key}, "transcript": cl}
    assert one(dumps(wrapped)).native_id == "abcd1234-ef56"


def test_contact_lens_customer_role_is_configurable_and_unknown_speakers_refused() -> None:
    cl = doc(CL_2022)
    flipped = one(dumps(cl), opts(contact_lens_customer_role="AGENT"))
    assert flipped.text.startswith("您好，理财专线")
    cl["Transcript"][1]["ParticipantId"] = "SUPERVISOR-7"
    assert "SUPERVISOR-7" in refused(dumps(cl)).reason


def test_contact_lens_failed_jobs_and_chat_analyses_are_refused() -> None:
    cl = doc(CL_2022)
    assert refused(dumps({**cl, "JobStatus": "FAILED"})).kind == "vendor_failed"
    assert "not a phone call" in refused(dumps({**cl, "Channel": "CHAT"})).reason


def test_generic_roles_include_the_chinese_labels_and_sentiment_is_bounded() -> None:
    g = doc(GENERIC)
    g["turns"][1]["role"] = "客户"
    g["turns"][0]["role"] = "客服"
    assert one(dumps(g)).turns[1].role == "customer"
    g["turns"][1]["sentiment"] = -3
    assert "within -1..1" in refused(dumps(g)).reason
    g["turns"][1]["role"] = "caller?"
    assert refused(dumps(g)).kind == "bad_shape"


# --- ids -----------------------------------------------------------------------------


def test_parsing_is_deterministic_and_the_id_depends_on_source_and_call_id() -> None:
    first, again = one(fixture(GENERIC)), one(fixture(GENERIC))
    strip = {"ingested_at"}
    assert {k: v for k, v in event_to_dict(first).items() if k not in strip} == {
        k: v for k, v in event_to_dict(again).items() if k not in strip
    }
    assert one(fixture(GENERIC), opts(source="另一条热线")).id != first.id
    g = doc(GENERIC)
    g["turns"][1]["text"] += "（补充）"  # a corrected re-export of the same call
    assert one(dumps(g)).id == first.id


@pytest.mark.parametrize(
    ("name", "received_at"),
    [
        (GENERIC, datetime(2024, 3, 4, 6, 2, 11, tzinfo=UTC)),  # started_at, +08:00
        (ALIBABA, datetime(2024, 3, 1, 1, 16, 51, 873000, tzinfo=UTC)),  # SolveTime (ms)
        (ALIBABA_V2, datetime(2024, 3, 2, 1, 10, 2, 830000, tzinfo=UTC)),  # request_time
        (CL_110, datetime(2024, 3, 2, 3, 41, 9, tzinfo=UTC)),  # the S3 key's timestamp
    ],
)
def test_received_at_comes_from_the_call_so_a_redelivery_is_identical(
    name: str, received_at: datetime
) -> None:
    options = opts(alibaba_customer_speaker="2") if name == ALIBABA_V2 else opts()
    first = one(fixture(name), options, name=name)
    later = parse_transcript(fixture(name), options, received_at=datetime.now(UTC), name=name)[0][0]
    assert first.received_at == later.received_at == received_at
    assert first.meta == later.meta and first.turns == later.turns


# --- hostile input -------------------------------------------------------------------


def generic(turn: dict[str, Any] | None = None, **top: Any) -> bytes:
    """A one-turn generic transcript with the given fields changed."""
    said = {"role": "customer", "start_ms": 0, "end_ms": 5, "text": "x", **(turn or {})}
    return dumps({"call_id": "c1", "turns": [said], **top})


@pytest.mark.parametrize(
    ("data", "kind", "says"),
    [
        (b'{"call_id": "x", "turns": [', "bad_json", "not JSON"),
        (b"[1, 2, 3]", "bad_shape", "must be an object"),
        (b'{"hello": "world"}', "unknown_format", "hello"),
        (b'{"call_id": "c1", "turns": []}', "empty", "no spoken turns"),
        (generic({"role": "agent", "text": " "}), "empty", "no spoken turns"),
        (generic({"start_ms": 9}), "bad_shape", "before it begins"),
        (generic({"start_ms": -1}), "bad_shape", "offset"),
        (generic({"start_ms": "0"}), "bad_shape", "must be a number"),
        (generic(call_id=""), "no_call_id", "call_id"),
        (generic(started_at="yesterday"), "bad_meta", "started_at"),
        (dumps({"Result": {"Sentences": "-"}, "TaskId": "t"}), "bad_shape", "Sentences"),
        (b"\xff\xfe\xfd\x00garbage", "bad_encoding", "neither UTF-8 nor GB18030"),
    ],
)
def test_bad_input_is_refused_with_a_reason_and_its_original_bytes(
    data: bytes, kind: str, says: str
) -> None:
    item = refused(data)
    assert (item.kind, says in item.reason) == (kind, True), item.reason


def test_a_refused_start_time_is_described_not_quoted() -> None:
    """The reason is logged: it said up to 40 characters of the value, which may be
    personal data; it now says the value's shape."""
    item = refused(generic(started_at="张三 13800138000"))
    assert item.kind == "bad_meta" and "14 characters" in item.reason
    assert "13800138000" not in item.reason and "张三" not in item.reason


@pytest.mark.parametrize(
    "body",
    [
        {"TaskId": "t", "Result": {"Sentences": [{"ChannelId": 10**18, "BeginTime": 0,
                                                  "EndTime": 5, "Text": "x"}]}},
        {"TaskId": "t", "BizDuration": 1e300, "Result": {"Sentences": []}},
        {"call_id": "c", "duration_ms": 10**18, "turns": []},
        {"call_id": "c", "turns": [{"role": "customer", "start_ms": 0, "end_ms": 1,
                                    "text": "x", "energy": 1e300}]},
        {"Version": "1.1.0", "Transcript": [], "ConversationCharacteristics": {
            "Interruptions": {"TotalCount": 1e300}}},
    ],
)  # fmt: skip
def test_absurd_numbers_are_refused_not_overflowed(body: dict[str, Any]) -> None:
    """Numbers beyond what a call can hold would overflow sums or the 64-bit JSON ints
    of the bus message: refused by name instead."""
    assert refused(dumps(body)).kind == "bad_shape"


def test_gbk_bytes_labelled_utf8_are_detected_and_read() -> None:
    gbk = fixture(GENERIC).decode("utf-8").encode("gbk")
    event = one(gbk)
    assert "暴力催收" in event.text and event.meta["encoding"] == "gb18030"


def test_utf16_with_a_bom_and_a_utf8_bom_are_read() -> None:
    text = fixture(GENERIC).decode("utf-8")
    assert one(text.encode("utf-16")).meta["encoding"] == "utf-16"
    assert "encoding" not in one(b"\xef\xbb\xbf" + fixture(GENERIC)).meta


def test_an_oversized_transcript_is_dead_lettered_in_bounded_size() -> None:
    data = fixture(ALIBABA)
    item = refused(data, opts(max_file_bytes=1000))
    assert item.kind == "oversized" and f"{len(data)} bytes" in item.reason
    huge = b'{"call_id": "c", "turns": [], "pad": "' + b"x" * (2 * DEAD_LETTER_BYTES) + b'"}'
    item = refused(huge, opts(max_file_bytes=4 * DEAD_LETTER_BYTES))
    assert len(item.raw) == DEAD_LETTER_BYTES


def test_a_bad_sidecar_refuses_the_call() -> None:
    item = refused(fixture(ALIBABA), sidecar=b"{broken")
    assert item.kind == "bad_sidecar" and "sidecar" in item.reason


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_never_crash_the_parser(data: bytes) -> None:
    events, bad = parse(data)
    assert len(events) + len(bad) == 1
    assert all(b.reason and b.kind for b in bad)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=30,
)
KEYS = st.sampled_from(
    ["ChannelId", "BeginTime", "EndTime", "Text", "EmotionValue", "SpeechRate", "SpeakerId",
     "ParticipantId", "BeginOffsetMillis", "EndOffsetMillis", "Content", "LoudnessScore",
     "Sentiment", "role", "start_ms", "end_ms", "text", "energy", "IssuesDetected"]
)  # fmt: skip
TURNISH = st.dictionaries(KEYS, JSON | st.integers(0, 10**6), max_size=8)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shape=st.sampled_from(["alibaba", "bare", "legacy", "contact_lens", "generic", "envelope"]),
    turns=st.lists(TURNISH, max_size=5) | JSON,
    extra=st.dictionaries(st.text(max_size=12), JSON, max_size=3),
)
def test_arbitrary_json_in_every_vendor_shape_never_crashes(
    shape: str, turns: Any, extra: dict[str, Any]
) -> None:
    """Real top-level shapes with arbitrary contents: a reason, never an exception."""
    bodies = {
        "alibaba": {"TaskId": "t", "StatusText": "SUCCESS", "Result": {"Sentences": turns}},
        "bare": {"Sentences": turns},
        "legacy": {"task_id": "t", "result": turns},
        "contact_lens": {"Version": "1.1.0", "Transcript": turns, "Participants": turns,
                         "ConversationCharacteristics": extra, "CustomerMetadata": extra},
        "generic": {"call_id": "c", "turns": turns, "started_at": extra or None},
        "envelope": {"meta": extra, "transcript": {"call_id": "c", "turns": turns}},
    }  # fmt: skip
    body = {**extra, **bodies[shape]}
    events, bad = parse(dumps(body))
    assert len(events) + len(bad) == 1
    for event in events:
        assert event.text.strip() and event.id.startswith("phone-")


# --- options -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "says"),
    [
        ({"source": SOURCE}, "path (drop folder), secret (webhook)"),
        ({"source": SOURCE, "secret": "short"}, "at least 16"),
        ({"source": " ", "path": "/x"}, "source must name"),
        ({"source": SOURCE, "path": "/x", "timestamp_header": "X-Signature"}, "must differ"),
        ({"source": SOURCE, "path": "/x", "format": "wav"}, "must be one of"),
        ({"source": SOURCE, "path": "/x", "max_file_bytes": 0}, "max_file_bytes"),
    ],
)
def test_invalid_options_fail_at_start_naming_the_problem(table: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(says)):
        parse_options(TranscriptsOptions, table, "connectors.calls")


def test_registered_under_its_type() -> None:
    assert connector_class("transcripts") is TranscriptsConnector


# --- drop folder ---------------------------------------------------------------------


def drop(folder: Path, name: str, data: bytes, age_secs: float = 60) -> Path:
    path = folder / name
    path.write_bytes(data)
    old = time.time() - age_secs
    os.utime(path, (old, old))
    return path


def folder_connector(folder: Path, **options: Any) -> TranscriptsConnector:
    table = {"source": SOURCE, "path": str(folder), "settle_secs": 0.0, **options}
    return TranscriptsConnector("calls", parse_options(TranscriptsOptions, table, "c"))


async def read_all(conn: TranscriptsConnector) -> list[Batch]:
    return [batch async for batch in conn.read(None)]


async def commit(batches: list[Batch]) -> None:
    for batch in batches:
        if batch.after_commit is not None:
            await batch.after_commit()


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


async def test_a_dropped_file_and_its_sidecar_move_to_done_after_the_commit(
    tmp_path: Path,
) -> None:
    drop(tmp_path, ALIBABA + ".meta.json", fixture(ALIBABA + ".meta.json"))
    drop(tmp_path, ALIBABA, fixture(ALIBABA))
    conn = folder_connector(tmp_path)
    await conn.check()
    batches = await read_all(conn)
    assert [e.native_id for b in batches for e in b.events] == ["CC20240301091522-0001"]
    assert batches[0].events[0].raw_ref == f"transcripts:calls/{ALIBABA}"
    assert (tmp_path / ALIBABA).exists(), "nothing moves before the commit"
    await commit(batches)
    assert names(tmp_path / "done") == [ALIBABA, ALIBABA + ".meta.json"]
    assert await read_all(conn) == []


async def test_bad_and_oversized_files_are_dead_lettered_and_go_to_failed(tmp_path: Path) -> None:
    drop(tmp_path, "broken.json", b'{"call_id": "x", "turns": [', age_secs=90)
    drop(tmp_path, "big.json", b"[" + b"0," * 5000 + b"0]", age_secs=60)
    batches = await read_all(folder_connector(tmp_path, max_file_bytes=2000))
    assert [[b.kind for b in batch.bad] for batch in batches] == [["bad_json"], ["oversized"]]
    assert len(batches[1].bad[0].raw) <= DEAD_LETTER_BYTES
    await commit(batches)
    assert names(tmp_path / "failed") == ["big.json", "broken.json"]


async def test_unsettled_files_and_lone_sidecars_are_left_alone(tmp_path: Path) -> None:
    (tmp_path / GENERIC).write_bytes(fixture(GENERIC))  # just written
    drop(tmp_path, "orphan.json.meta.json", b'{"call_id": "c"}')
    assert await read_all(folder_connector(tmp_path, settle_secs=30.0)) == []
    batches = await read_all(folder_connector(tmp_path))
    assert [e.native_id for b in batches for e in b.events] == ["GZ-PBX-20240304-000731"]


async def test_a_folder_and_a_webhook_delivery_of_one_call_share_the_id(tmp_path: Path) -> None:
    drop(tmp_path, GENERIC, fixture(GENERIC))
    (from_file,) = [e for b in await read_all(folder_connector(tmp_path)) for e in b.events]
    assert from_file.id == one(fixture(GENERIC)).id


# --- webhook -------------------------------------------------------------------------


def signed(body: bytes, *, at: float | None = None, secret: str = SECRET) -> PushRequest:
    stamp = str(int(time.time() if at is None else at))
    headers = {"X-Signature": sign(secret, stamp, body), "X-Signature-Timestamp": stamp}
    return PushRequest("POST", headers=headers, body=body)


async def webhook(request: PushRequest, **options: Any) -> tuple[int, bytes, ConfirmControlBus]:
    table = {"source": SOURCE, "secret": SECRET, **options}
    conn = TranscriptsConnector("calls", parse_options(TranscriptsOptions, table, "c"))
    bus = ConfirmControlBus()
    await bus.start()
    client = await push_client(conn, bus)
    try:
        status, body = await send(client, conn, request)
    finally:
        await client.close()
    return status, body, bus


async def test_a_signed_webhook_is_published_then_answered_with_the_id() -> None:
    status, body, bus = await webhook(signed(fixture(CL_2022)))
    answer = orjson.loads(body)
    assert status == 200 and answer["call_id"] == "0e4c7a91-3f2b-4d8e-a6c5-9b1d2e3f4a5b"
    delivery = await bus.get(Q_PROCESS)
    assert delivery is not None and decode_event(delivery.body).id == answer["id"]
    await bus.close()


@pytest.mark.parametrize(
    ("request_", "kind"),
    [
        (signed(b'{"call_id": "x"}', secret="an-attacker-guessing-1"), "forged"),
        (PushRequest("POST", body=b'{"call_id": "x"}'), "forged"),
        (signed(b'{"call_id": "x"}', at=time.time() - 3600), "stale"),
    ],
)
async def test_forged_and_stale_webhooks_get_403_and_reach_nothing(
    request_: PushRequest, kind: str
) -> None:
    status, body, bus = await webhook(request_)
    assert (status, body.decode() != "") == (403, True)
    assert await bus.queue_depths() == {k: 0 for k in await bus.queue_depths()}
    await bus.close()


async def test_a_tampered_body_is_forged() -> None:
    genuine = signed(fixture(GENERIC))
    tampered = PushRequest("POST", headers=genuine.headers, body=genuine.body + b" ")
    status, _, bus = await webhook(tampered)
    assert status == 403
    await bus.close()


async def test_a_signed_but_unusable_transcript_is_dead_lettered_and_answered_400() -> None:
    status, body, bus = await webhook(signed(b'{"call_id": "c1", "turns": []}'))
    assert status == 400 and orjson.loads(body)["kind"] == "empty"
    dead = await bus.get(Q_DEAD)
    assert dead is not None and dead.body == b'{"call_id": "c1", "turns": []}'
    await bus.close()


async def test_without_a_secret_the_webhook_is_off(tmp_path: Path) -> None:
    status, _, bus = await webhook(signed(fixture(GENERIC)), secret="", path=str(tmp_path))
    assert status == 404
    await bus.close()


# --- the contract --------------------------------------------------------------------


class TestTranscriptsContract(ConnectorContract):
    """transcripts keeps the connector contract, on both its inputs."""

    connector = TranscriptsConnector
    options = {"source": SOURCE, "path": "/srv/transcripts", "secret": SECRET}
    bad_check_options = {"source": SOURCE, "path": "/nonexistent/transcripts"}
    good_payloads = (
        fixture(ALIBABA),
        fixture(CL_2022),
        dumps({"meta": {"file_name": CL_110, "queue": "借记卡"}, "transcript": doc(CL_110)}),
        fixture(GENERIC),
        fixture(GENERIC).decode().encode("gbk"),
    )
    bad_payloads = (
        b"{",
        b"[]",
        b'{"call_id": "c", "turns": []}',
        fixture(ALIBABA_V2),  # mono track: no customer channel configured
        b"\xff\xfe\xfd\x00",
    )

    async def pull_connector(self, tmp_path: Path) -> TranscriptsConnector:
        drop(tmp_path, GENERIC, fixture(GENERIC))
        return folder_connector(tmp_path, secret=SECRET)

    def push_request(self, connector: Any) -> PushRequest:
        return signed(fixture(ALIBABA))
