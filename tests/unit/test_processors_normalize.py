"""`normalize` beyond NFKC and whitespace (tests/unit/test_processors.py): traditional →
simplified in mainland forms, emoji kept intact, and the truncation policy (head and
tail kept, never cutting through a number the pii step must recognise)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ingest.errors import ConfigError
from ingest.model import FeedbackEvent, FeedbackRecord, Turn
from processors.normalize import Normalize, truncate
from processors.pii import MaskPii
from processors.urgency import Urgency


def record(text: str, **fields: object) -> FeedbackRecord:
    event = FeedbackEvent(id="n-1", channel="email", text=text)
    return replace(FeedbackRecord.from_event(event), **fields)  # type: ignore[arg-type]


def normalize_reasons(rec: FeedbackRecord) -> list[str]:
    return [r.detail for r in rec.reasons if r.signal == "normalize"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("帳戶被凍結了", "账户被冻结了"),
        ("轉帳失敗，錢沒到賬", "转账失败,钱没到账"),  # mainland 转账, not OpenCC's 转帐
        ("信用卡被盜刷，請儘快處理", "信用卡被盗刷,请尽快处理"),
        ("網路銀行一直當機", "网络银行一直当机"),
        ("ＡＰＰ閃退", "APP闪退"),  # full-width and traditional at once
        ("身份证号和基金份额", "身份证号和基金份额"),  # simplified text is left alone
        ("怎么女儿不喜欢,大部份人", "怎么女儿不喜欢,大部份人"),  # no zhconv rewrites
        ("卡号6222 0212", "卡号6222 0212"),
    ],
)
def test_traditional_becomes_mainland_simplified(raw: str, expected: str) -> None:
    assert Normalize()(record(raw)).text == expected


def test_simplification_leaves_a_reason_and_can_be_turned_off() -> None:
    out = Normalize()(record("帳戶被凍結", turns=(Turn(role="customer", text="轉帳"),)))
    assert out.turns[0].text == "转账"
    assert normalize_reasons(out) == ["traditional → simplified: 6 character(s)"]
    assert Normalize({"to_simplified": False})(record("帳戶被凍結")).text == "帳戶被凍結"
    assert normalize_reasons(Normalize()(record("账户被冻结"))) == []


def test_traditional_complaint_reaches_the_urgent_rules() -> None:
    out = Urgency()(Normalize()(record("我的帳戶被凍結了，轉帳失敗")))
    assert out.urgency == "urgent"


@pytest.mark.parametrize(
    "text",
    [
        "闪退了😡😡",
        "全家👨\u200d👩\u200d👧都用你们的卡",  # ZWJ sequence stays one emoji
        "服务很好❤\ufe0f",  # variation selector kept
        "点赞👍🏽",  # skin-tone modifier kept
    ],
)
def test_emoji_are_kept_as_sent(text: str) -> None:
    assert Normalize()(record(text)).text == text


def test_short_text_is_not_truncated() -> None:
    text = "转账失败" * 5000  # exactly 20 000 characters
    assert Normalize()(record(text)).text == text


def test_long_text_keeps_head_and_tail_and_says_so() -> None:
    head = "我的信用卡被盗刷了。" + "引用的历史邮件内容。" * 3000
    text = head + "如果再不处理我就投诉到银保监会。"
    out = Normalize({"max_chars": 1000, "tail_chars": 100})(record(text))
    assert out.text.startswith("我的信用卡被盗刷了。")
    assert out.text.endswith("如果再不处理我就投诉到银保监会。")
    dropped = len(text) - 1000
    assert f"…[省略 {dropped} 字]…" in out.text
    assert normalize_reasons(out) == [
        f"truncated 1 text(s) over 1000 characters: {dropped} character(s) left out between "
        "head and tail"
    ]


def test_a_cut_never_splits_a_card_number() -> None:
    """The head would end inside the card number: the cut moves before it, so the
    number is either whole (and masked) or gone, never a recognisable-less fragment."""
    card = "6225 8812 3456 7898"
    text = "啊" * 895 + card + "。" + "后面的内容" * 400
    out, dropped = truncate(text, 1000, 100)
    assert dropped > 0
    assert out.startswith("啊" * 895 + "…[省略")
    text = "啊" * 880 + card + "。" + "后面的内容" * 400
    out = MaskPii({"customer_ref_key": "k"})(
        Normalize({"max_chars": 1000, "tail_chars": 100})(record(text))
    ).text
    assert "6225 **** **** 7898" in out and "3456" not in out


def test_truncation_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="max_chars must be at least 100"):
        Normalize({"max_chars": 10})
    with pytest.raises(ConfigError, match="tail_chars must be between"):
        Normalize({"max_chars": 1000, "tail_chars": 600})
