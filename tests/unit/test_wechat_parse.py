"""The pure parsers of the wechat package: every Official Account message type and
event, WeCom callbacks and sync_msg pages, hostile XML, and arbitrary bytes."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.wechat.parse import (
    parse_envelope,
    parse_oa_message,
    parse_sync_msg,
    parse_wecom_callback,
    parse_xml,
)
from ingest.errors import PermanentError
from tests.wechat_helpers import (
    CORP_ID,
    OA_ACCOUNT,
    OA_EVENTS,
    OA_SAMPLES,
    OPEN_KFID,
    OPENID,
    XXE_PAYLOADS,
    kf_callback,
    kf_page,
    kf_text,
    oa_text,
)

EXPECTED_TEXT = {
    "text": "信用卡被盗刷了三笔，客服电话一直打不通！",
    "text_from_article": "理财收益怎么算？",
    "voice_recognised": "我的转账到现在还没到账",
    "voice": "[语音]",
    "image": "[图片]",
    "video": "[视频]",
    "shortvideo": "[小视频]",
    "location": "[位置] 上海市黄浦区人民大道",
    "link": "[链接] 网点服务问题反馈",
    "file": "[文件] 流水.pdf",
}


@pytest.mark.parametrize("name", sorted(OA_SAMPLES))
def test_every_message_type_becomes_feedback(name: str) -> None:
    events, bad = parse_oa_message(OA_SAMPLES[name], connector="wx")
    assert not bad and len(events) == 1
    event = events[0]
    assert event.text == EXPECTED_TEXT[name]
    assert event.channel == "wechat" and event.author == OPENID and event.source == OA_ACCOUNT
    assert event.meta["kind"] == "message" and event.meta["feedback"] is True
    assert event.received_at == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert isinstance(event.native_id, str) and event.native_id.isdigit()


def test_msgid_above_2_53_stays_an_exact_string() -> None:
    big = "9223372036854775807"
    [event], _ = parse_oa_message(oa_text("hi", msg_id=big))
    assert event.native_id == big
    assert float(big) != int(big)  # what a JSON number would have lost


def test_same_message_same_id_other_message_other_id() -> None:
    first, _ = parse_oa_message(oa_text("a", msg_id="1"))
    again, _ = parse_oa_message(oa_text("a", msg_id="1"))
    other, _ = parse_oa_message(oa_text("a", msg_id="2"))
    assert first[0].id == again[0].id != other[0].id


def test_media_keep_ids_in_meta_but_no_location_coordinates() -> None:
    [image], _ = parse_oa_message(OA_SAMPLES["image"])
    assert image.meta["media_id"] == "media_image_1" and image.meta["pic_url"].startswith("http")
    [voice], _ = parse_oa_message(OA_SAMPLES["voice_recognised"])
    assert voice.meta["asr"] is True and voice.meta["format"] == "amr"
    [place], _ = parse_oa_message(OA_SAMPLES["location"])
    assert not {"location_x", "location_y", "label"} & set(place.meta)
    assert place.meta["scale"] == "15"
    [article], _ = parse_oa_message(OA_SAMPLES["text_from_article"])
    assert article.meta["msg_data_id"] == "2247483652" and article.meta["idx"] == "1"


@pytest.mark.parametrize("name", sorted(OA_EVENTS))
def test_events_are_recorded_but_never_feedback(name: str) -> None:
    [event], bad = parse_oa_message(OA_EVENTS[name])
    assert not bad
    assert event.meta["kind"] == "event" and event.meta["feedback"] is False
    assert event.meta["event"] == name
    assert event.text.startswith("[事件]")
    assert event.native_id.startswith(f"{OPENID}|1700000000|{name}|")
    assert "latitude" not in event.meta


def test_two_events_in_one_second_get_different_ids() -> None:
    [click], _ = parse_oa_message(OA_EVENTS["CLICK"])
    [view], _ = parse_oa_message(OA_EVENTS["VIEW"])
    assert click.id != view.id


@pytest.mark.parametrize("name", sorted(XXE_PAYLOADS))
def test_dtds_and_entities_are_refused_with_a_clear_error(name: str) -> None:
    with pytest.raises(PermanentError) as info:
        parse_xml(XXE_PAYLOADS[name])
    assert info.value.kind == "xml_forbidden"
    assert "refused" in str(info.value)
    events, bad = parse_oa_message(XXE_PAYLOADS[name])
    assert not events and bad[0].kind == "xml_forbidden" and bad[0].raw == XXE_PAYLOADS[name]


@pytest.mark.parametrize(
    ("data", "kind", "words"),
    [
        (b"not xml", "malformed", "well-formed"),
        (b"<xml><Content>unclosed</xml>", "malformed", "well-formed"),
        (b"<root><A>1</A></root>", "malformed", "<root>"),
        ("<xml><Content>转账</Content></xml>".encode("gbk"), "wrong_encoding", "UTF-8"),
        (b'<?xml version="1.0" encoding="GBK"?><xml/>', "wrong_encoding", "GBK"),
        (b"", "malformed", "well-formed"),
    ],
)
def test_bad_xml_says_what_is_wrong(data: bytes, kind: str, words: str) -> None:
    with pytest.raises(PermanentError) as info:
        parse_xml(data)
    assert info.value.kind == kind and words in str(info.value)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (oa_text("x").replace(b"<MsgId>24373915622311712</MsgId>", b""), "MsgId"),
        (oa_text("x").replace(b"1700000000", b"yesterday"), "CreateTime"),
        (oa_text("").replace(b"<![CDATA[]]>", b""), "Content"),
        (b"<xml><MsgType>text</MsgType></xml>", "ToUserName"),
    ],
)
def test_messages_missing_fields_are_bad_input(data: bytes, words: str) -> None:
    events, bad = parse_oa_message(data, connector="wx")
    assert not events and words in bad[0].reason and bad[0].raw == data


def test_xml_envelope_and_both_json_spellings() -> None:
    xml = parse_envelope(b"<xml><ToUserName>gh_1</ToUserName><Encrypt>QUJD</Encrypt></xml>")
    assert (xml.encrypt, xml.to_user) == ("QUJD", "gh_1")
    low = parse_envelope(b'{"tousername": "ww1", "encrypt": "QUJD", "agentid": 218}')
    caps = parse_envelope(b'{"ToUserName": "ww1", "Encrypt": "QUJD", "AgentID": 218}')
    assert low.encrypt == caps.encrypt == "QUJD" and low.to_user == caps.to_user == "ww1"
    with pytest.raises(PermanentError, match="without Encrypt"):
        parse_envelope(b"<xml><ToUserName>gh_1</ToUserName></xml>")
    with pytest.raises(PermanentError, match="not JSON"):
        parse_envelope(b"{nope")


# --- WeCom ------------------------------------------------------------------------------


def test_kf_callback_gives_a_pull_notice_and_an_event_record() -> None:
    notice, record = parse_wecom_callback(kf_callback(token="TOKEN123"), connector="kf")
    assert notice is not None and (notice.open_kfid, notice.token) == (OPEN_KFID, "TOKEN123")
    assert record.meta["kind"] == "event" and record.meta["feedback"] is False
    assert record.channel == "wecom" and "TOKEN123" not in orjson.dumps(record).decode()


def test_other_wecom_events_give_no_pull() -> None:
    xml = (
        f"<xml><ToUserName>{CORP_ID}</ToUserName><FromUserName>sys</FromUserName>"
        "<CreateTime>1700000000</CreateTime><MsgType>event</MsgType>"
        "<Event>change_external_contact</Event></xml>"
    ).encode()
    notice, record = parse_wecom_callback(xml)
    assert notice is None and record.meta["event"] == "change_external_contact"


def test_sync_msg_only_customer_rows_are_feedback() -> None:
    page = kf_page(
        [
            kf_text("MSG1", "我要投诉你们的理财经理", origin=3),
            kf_text("MSG2", "您好，请问有什么可以帮您", origin=5),
            {
                "msgid": "MSG3",
                "send_time": 1700000200,
                "origin": 4,
                "msgtype": "event",
                "event": {
                    "event_type": "user_recall_msg",
                    "open_kfid": OPEN_KFID,
                    "external_userid": "wm1",
                    "recall_msgid": "MSG1",
                },
            },
            {
                "msgid": "MSG4",
                "open_kfid": OPEN_KFID,
                "external_userid": "wm1",
                "send_time": 1700000300,
                "origin": 3,
                "msgtype": "location",
                "location": {"latitude": 23.1, "longitude": 113.3, "name": "网点", "address": "路"},
            },
        ],
        "CURSOR_1",
    )
    events, bad = parse_sync_msg(page, CORP_ID, connector="kf")
    assert not bad
    by_id = {e.native_id: e for e in events}
    assert by_id["MSG1"].meta["feedback"] is True and by_id["MSG1"].text == "我要投诉你们的理财经理"
    assert by_id["MSG2"].meta == {**by_id["MSG2"].meta, "kind": "servicer", "feedback": False}
    assert by_id["MSG3"].meta["kind"] == "event" and by_id["MSG3"].meta["recall_msgid"] == "MSG1"
    assert by_id["MSG4"].text == "[位置] 网点" and "latitude" not in by_id["MSG4"].meta
    assert by_id["MSG1"].source == OPEN_KFID and by_id["MSG1"].author.startswith("wm")


def test_sync_msg_bad_rows_are_dead_lettered_next_to_good_ones() -> None:
    page = kf_page([kf_text("OK1", "好"), {"msgid": "B1", "msgtype": "text"}, "junk"], "C")
    events, bad = parse_sync_msg(page, CORP_ID)
    assert [e.native_id for e in events] == ["OK1"]
    assert len(bad) == 2 and all(b.raw and b.reason for b in bad)


def test_sync_msg_error_page_is_an_error() -> None:
    with pytest.raises(PermanentError, match="95000"):
        parse_sync_msg({"errcode": 95000, "errmsg": "invalid param"}, CORP_ID)


# --- hostile bytes ------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=2048))
def test_arbitrary_bytes_never_crash_the_oa_parser(data: bytes) -> None:
    events, bad = parse_oa_message(data)
    assert len(events) + len(bad) == 1
    for item in bad:
        assert item.reason and item.kind


XML_ISH = st.lists(
    st.sampled_from(
        [
            "<xml>",
            "</xml>",
            "<MsgType>",
            "</MsgType>",
            "text",
            "event",
            "<Content>",
            "</Content>",
            "<![CDATA[",
            "]]>",
            "<MsgId>",
            "</MsgId>",
            "<!DOCTYPE x>",
            "&amp;",
            "<A/>",
            "1700000000",
            "<CreateTime>",
            "</CreateTime>",
            "<ToUserName>",
            "</ToUserName>",
            "<FromUserName>",
            "</FromUserName>",
            "<Event>",
            "</Event>",
            "\x00",
            "é",
        ]
    ),
    max_size=40,
).map(lambda parts: "".join(parts).encode())


@settings(max_examples=300, deadline=None)
@given(data=XML_ISH)
def test_xml_like_garbage_never_crashes_any_parser(data: bytes) -> None:
    parse_oa_message(data)
    for parse in (parse_envelope, parse_wecom_callback):
        with contextlib.suppress(PermanentError):
            parse(data)


@settings(max_examples=200, deadline=None)
@given(
    doc=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=20,
    )
)
def test_arbitrary_json_never_crashes_the_sync_msg_parser(doc: object) -> None:
    with contextlib.suppress(PermanentError):
        parse_sync_msg(doc, CORP_ID)
    with contextlib.suppress(PermanentError):
        parse_sync_msg({"errcode": 0, "msg_list": [doc]}, CORP_ID)
