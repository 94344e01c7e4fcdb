"""How the transcripts connector decodes bytes (connectors/transcripts/parse.py
`decode_json`): UTF-8 with a stray byte stays UTF-8 with U+FFFD, counted in
`meta.replacement_chars` as the imap connector does; GBK/GB18030 and UTF-16 with a BOM
are read as before; bytes that are none of these are refused as `bad_encoding`.

Before, one stray byte in a UTF-8 transcript (a cp1252 byte pasted in, a character cut
by a chunked writer) sent the whole file to the GB18030 fallback: mojibake that lost
盗刷 and 冻结 (and the classification with them), or a refusal.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.test_transcripts import (
    ALIBABA,
    ALIBABA_V2,
    CL_110,
    CL_2022,
    GENERIC,
    NOW,
    fixture,
    one,
    opts,
    refused,
)

STOLEN = "你好，我的信用卡昨天晚上被人盗刷了三笔，一共两万多块，我人一直在上海，卡也在我手上。"
"""The customer's first sentence in the Alibaba fixture."""


def damaged(at: str, junk: bytes = b"\x92", cut: bool = False) -> bytes:
    """The Alibaba fixture with one stray byte inserted after `at` in the customer's
    first sentence, or (`cut`) the character after `at` cut to its first two bytes."""
    sentence = STOLEN.encode()
    where = len(STOLEN[: STOLEN.index(at) + len(at)].encode())
    if cut:
        broken = sentence[: where + 2] + sentence[where + 3 :]
    else:
        broken = sentence[:where] + junk + sentence[where:]
    data = fixture(ALIBABA)
    assert data.count(sentence) == 1
    return data.replace(sentence, broken)


def short_call(customer: bytes) -> bytes:
    """A short call in the generic format (README) whose other texts GB18030 happens to
    read without an error (every run of non-ASCII bytes pairs up): then the old fallback
    read the whole call as GB18030 and the customer's words were mojibake. Otherwise
    (most real files) GB18030 failed too and the call was refused."""
    head = json.dumps(
        {
            "call_id": "GZ-PBX-20240305-000118",
            "started_at": "2024-03-05T09:12:40+08:00",
            "agent_id": "A2087",
            "queue": "盗刷专线",
            "turns": [
                {"role": "agent", "start_ms": 0, "end_ms": 3100, "text": "您好，信用卡中心"},
                {
                    "role": "agent",
                    "start_ms": 9900,
                    "end_ms": 13000,
                    "text": "好的，马上为您冻结，请稍等！",
                },
            ],
        },
        ensure_ascii=False,
    ).encode()
    turn = b'{"role": "customer", "start_ms": 3400, "end_ms": 9600, "text": "' + customer + b'"}'
    return head[: -len(b"]}")] + b", " + turn + b"]}"


COMPLAINT = "我的信用卡昨晚被盗刷了两万元，请立即冻结我的卡"


def test_one_stray_byte_in_an_alibaba_result_keeps_the_words_and_counts_it() -> None:
    """Old code: refused as bad_encoding (GB18030 failed too): the call was lost."""
    clean = one(fixture(ALIBABA))
    event = one(damaged("盗刷"))
    assert event.meta["replacement_chars"] == 1 and "encoding" not in event.meta
    assert event.text == clean.text.replace("盗刷", "盗刷\ufffd", 1)
    assert event.turns[0] == clean.turns[0] and event.turns[2:] == clean.turns[2:]
    assert event.id == clean.id
    assert event.meta["signals"] == clean.meta["signals"]


def test_a_character_cut_in_an_alibaba_result_becomes_one_replacement() -> None:
    event = one(damaged("两万多", cut=True))  # 块 cut to two bytes
    assert "盗刷了三笔" in event.text and "两万多\ufffd，" in event.text
    assert event.meta["replacement_chars"] == 1


def test_utf8_that_gb18030_would_have_read_stays_utf8_instead_of_mojibake() -> None:
    """Old code: read as GB18030 without an error; the customer's text was mojibake
    (盗刷 and 冻结 lost) and the event said meta.encoding = "gb18030"."""
    for customer in (b"\x92" + COMPLAINT.encode(), COMPLAINT.encode()[:-1]):
        data = short_call(customer)
        assert "盗刷" not in data.decode("gb18030")  # what the old fallback produced
        event = one(data)
        assert "盗刷" in event.text and "冻结" in event.text
        assert event.text.count("\ufffd") == 1 and event.meta["replacement_chars"] == 1
        assert "encoding" not in event.meta


def test_a_stray_byte_in_the_sidecar_is_counted_too() -> None:
    """Old code: the sidecar was read as GB18030 and the queue name was mojibake."""
    sidecar = fixture(ALIBABA + ".meta.json").replace("中心".encode(), "中心".encode() + b"\x92")
    assert "盗刷" not in sidecar.decode("gb18030")
    event = one(fixture(ALIBABA), sidecar=sidecar)
    assert event.meta["queue"] == "信用卡中心\ufffd-盗刷专线"
    assert event.meta["replacement_chars"] == 1 and event.native_id == "CC20240301091522-0001"


def test_replacement_characters_the_asr_wrote_itself_are_not_counted() -> None:
    written = fixture(ALIBABA).replace("盗刷".encode(), "盗刷\ufffd".encode(), 1)
    assert "replacement_chars" not in one(written).meta
    assert (
        one(written.replace("两万".encode(), "两万".encode() + b"\xff")).meta["replacement_chars"]
        == 1
    )


@settings(max_examples=150, deadline=None)
@given(st.integers(0, len(STOLEN)), st.integers(0x80, 0xFF))
def test_one_stray_byte_anywhere_in_the_sentence_keeps_every_character(
    where: int, byte: int
) -> None:
    at = STOLEN[:where]
    sentence = STOLEN.encode()
    cut = len(at.encode())
    data = fixture(ALIBABA).replace(sentence, sentence[:cut] + bytes([byte]) + sentence[cut:])
    event = one(data)
    assert event.turns[1].text == at + "\ufffd" + STOLEN[where:]
    assert event.meta["replacement_chars"] == 1


# --- what was read before is read the same way -----------------------------------------


def test_gbk_transcripts_of_every_format_are_still_read_as_gb18030() -> None:
    for name, options in [
        (ALIBABA, {}),
        (ALIBABA_V2, {"alibaba_customer_speaker": "2"}),
        (CL_110, {}),
        (CL_2022, {}),
        (GENERIC, {}),
    ]:
        utf8 = one(fixture(name), opts(**options), name=name)
        gbk = one(fixture(name).decode().encode("gbk"), opts(**options), name=name)
        assert gbk.meta.pop("encoding") == "gb18030", name
        assert replace(gbk, ingested_at=NOW) == replace(utf8, ingested_at=NOW), name
        assert "replacement_chars" not in gbk.meta


def test_a_short_gbk_call_is_not_taken_for_utf8() -> None:
    """A few dozen characters give the UTF-8 test little to go on: GBK still wins."""
    event = one(short_call(COMPLAINT.encode()).decode().encode("gbk"))
    assert event.meta["encoding"] == "gb18030" and COMPLAINT in event.text


def test_utf16_with_a_bom_is_still_read() -> None:
    text = fixture(GENERIC).decode()
    assert one(text.encode("utf-16")).meta["encoding"] == "utf-16"
    assert one(("\ufeff" + text).encode("utf-16-be")).meta["encoding"] == "utf-16"


def test_bytes_in_no_known_encoding_are_still_refused_as_bad_encoding() -> None:
    noise = random.Random(20240305).randbytes(4096)
    for data in (
        b"\xff\xfe\xfd\x00garbage",
        noise,
        b"#!AMR\n" + noise,  # the recording dropped instead of its transcript
        fixture(GENERIC).decode().encode("gbk") + b"\x80",  # GBK with a stray byte
        b'{"call_id": "c1", "text": "caf\xe9"}',  # cp1252 with no UTF-8 around it
    ):
        item = refused(data)
        assert item.kind == "bad_encoding", (data[:20], item.reason)
        assert "neither UTF-8 nor GB18030" in item.reason
