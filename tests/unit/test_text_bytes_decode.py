"""ingest/text_bytes.py: telling UTF-8 with a few bad bytes from GBK/GB18030, the rule
the imap, transcripts and file_drop connectors share."""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import pytest

from ingest.text_bytes import UTF8_GOOD_PER_BAD, mostly_utf8, mostly_utf8_text

COMPLAINT = "您好，我的信用卡昨晚被盗刷了两万元，我没有授权任何交易，请立即冻结我的卡并回电。"
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "transcripts"
SENTENCES = [
    s["Text"]
    for s in orjson.loads((FIXTURE / "alibaba_getresult_dual.json").read_bytes())["Result"][
        "Sentences"
    ]
]


@pytest.mark.parametrize(
    "data",
    [
        COMPLAINT.encode() + b" \x92",  # a stray cp1252 byte pasted in
        COMPLAINT.encode() + "谢".encode()[:2],  # the last character cut
        COMPLAINT.encode()[:30] + b"\xff" + COMPLAINT.encode()[30:],
        b"\x85" + "盗刷冻结销户".encode(),  # one bad byte, just enough characters
    ],
)
def test_utf8_with_one_bad_byte_is_mostly_utf8_and_gets_one_replacement(data: bytes) -> None:
    assert mostly_utf8(data)
    text, put_in = mostly_utf8_text(data) or ("", -1)
    assert put_in == 1 and text.count("\ufffd") == 1
    assert "盗刷" in text and "冻结" in text


@pytest.mark.parametrize("sentence", [COMPLAINT, *SENTENCES])
@pytest.mark.parametrize("junk", [b"", b"\x80", b" \xff", b"\x92"])
def test_gbk_sentences_are_never_mostly_utf8(sentence: str, junk: bytes) -> None:
    """Real call sentences (the Alibaba fixture's), one at a time as a CSV row would be."""
    data = sentence.encode("gbk") + junk
    assert not mostly_utf8(data) and mostly_utf8_text(data) is None


def test_too_few_characters_are_no_evidence_of_utf8() -> None:
    assert not mostly_utf8(b'{"text": "caf\xe9"}')  # no multi-byte character at all
    few = "盗刷冻结".encode()  # 4 characters for one bad byte: one short of the rule
    assert UTF8_GOOD_PER_BAD == 5 and not mostly_utf8(few + b"\x92")
    assert not mostly_utf8(random.Random(7).randbytes(4096))


def test_replacement_characters_already_in_the_text_are_not_counted_as_put_in() -> None:
    written = "盗刷\ufffd冻结销户".encode() + COMPLAINT.encode()
    assert mostly_utf8_text(written + b"\x92") == (
        "盗刷\ufffd冻结销户" + COMPLAINT + "\ufffd",
        1,
    )


def test_replacement_characters_already_in_the_text_still_count_against_utf8() -> None:
    """As the imap connector always judged: earlier damage is no evidence of UTF-8."""
    five = "盗刷冻结销".encode()
    assert mostly_utf8(five + b"\x92")
    assert not mostly_utf8(five + "\ufffd".encode() + b"\x92")
