"""Names and addresses masked where a clear cue introduces them, and nowhere else: the
cases go through `normalize` first, as in the chain (full-width "：" arrives as ":",
traditional characters as simplified)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.errors import ConfigError
from ingest.model import FeedbackEvent, FeedbackRecord, Turn
from processors.normalize import Normalize
from processors.pii import Masker, MaskPii

MASK = MaskPii({"customer_ref_key": "test-key"})
NORMALIZE = Normalize()


def masked(text: str, **fields: object) -> FeedbackRecord:
    event = FeedbackEvent(id="p-1", channel="wechat", text=text, **fields)  # type: ignore[arg-type]
    return MASK(NORMALIZE(FeedbackRecord.from_event(event)))


@pytest.mark.parametrize(
    ("text", "expected", "kinds"),
    [
        ("我叫张三，卡被盗刷了", "我叫张*,卡被盗刷了", ("name",)),
        ("我叫王小明，今天转账失败", "我叫王**,今天转账失败", ("name",)),
        ("我叫张三今天去网点", "我叫张*今天去网点", ("name",)),  # the name stops at 今
        ("我叫張三", "我叫张*", ("name",)),  # traditional input
        ("姓名:李四", "姓名:李*", ("name",)),
        ("姓名：李四", "姓名:李*", ("name",)),  # full-width colon
        ("本人姓名是赵丽颖", "本人姓名是赵**", ("name",)),
        ("户名:陈建国", "户名:陈**", ("name",)),
        ("联系人:欧阳娜娜", "联系人:欧阳**", ("name",)),  # compound surname kept whole
        ("持卡人姓名:司马光", "持卡人姓名:司马*", ("name",)),
        ("收款人:赵六，转了5000", "收款人:赵*,转了5000", ("name",)),
        ("我的名字叫刘德华", "我的名字叫刘**", ("name",)),
        ("客户王先生反映卡被冻结", "客户*先生反映卡被冻结", ("name",)),
        ("客户王建国先生来电", "客户王**先生来电", ("name",)),
        ("我是李女士，上次投诉过", "我是*女士,上次投诉过", ("name",)),
        ("我叫王先生", "我叫*先生", ("name",)),
        ("我姓王，是你们的老客户", "我姓*,是你们的老客户", ("name",)),
        ("地址:上海市浦东新区张江路100号", "地址:上海市浦东新区***", ("address",)),
        (
            "地址：上海市浦东新区张江路100号3楼301室，请寄到这里",
            "地址:上海市浦东新区***,请寄到这里",
            ("address",),
        ),
        ("我住在北京市朝阳区建国路88号", "我住在北京市朝阳区***", ("address",)),
        ("家住幸福小区3栋2单元", "家住***", ("address",)),  # 小区 is no district
        (
            "收货地址是广东省深圳市南山区科技园南区18号",
            "收货地址是广东省深圳市南山区***",
            ("address",),
        ),
        ("家庭住址:江苏省南京市鼓楼区中山路1号", "家庭住址:江苏省南京市鼓楼区***", ("address",)),
        (
            "住在杭州市西湖区文三路478号，电话13912345678，我叫林峰",
            "住在杭州市西湖区***,电话139****5678,我叫林*",
            ("mobile", "name", "address"),
        ),
    ],
)
def test_cued_names_and_addresses_are_masked(
    text: str, expected: str, kinds: tuple[str, ...]
) -> None:
    out = masked(text)
    assert out.text == expected
    assert out.text_masked == expected
    assert out.pii_found == kinds


@pytest.mark.parametrize(
    "text",
    [
        "我叫客服帮我查一下",
        "我叫了客服三次都没人接",
        "我叫你们经理过来",
        "我叫王经理过来处理",  # a job title, not a name
        "帮我叫车去网点",
        "我叫出租车去机场",
        "地址栏里输入网址打不开",
        "网点地址查询在哪里",
        "请问网点地址在哪",
        "地址填错了怎么改",
        "姓名不对，转账失败",
        "姓名与身份证不一致",
        "户名不符，转账被退回",
        "账户名称有误",
        "客户经理态度很差",
        "我是高级客户",
        "我是老客户了",
        "我是帮我妈打的",
        "用户体验太差",
        "持卡人本人去网点办理",
        "收款人信息填错了",
        "联系人电话打不通",
        "住在医院附近",
        "住在3楼，电梯坏了",
        "住在浦东新区，网点太少",  # a district alone identifies no one
        "家住得远，来一趟不容易",
        "王先生您好，请问有什么可以帮您",  # no cue: an agent's greeting
        "我们小区门口的ATM坏了",
    ],
)
def test_no_cue_no_mask(text: str) -> None:
    out = masked(text)
    assert out.text == NORMALIZE(FeedbackRecord.from_event(FeedbackEvent("n", "x", text))).text
    assert "name" not in out.pii_found and "address" not in out.pii_found


def test_reasons_turns_and_author_cover_names_and_addresses() -> None:
    turns = (Turn(role="customer", text="我叫李四，地址是上海市徐汇区漕溪北路88号"),)
    out = masked("我叫李四", turns=turns, author="张三")
    assert out.turns[0].text == "我叫李*,地址是上海市徐汇区***"
    assert out.author == "张三"  # a bare channel nickname has no cue; the ref hashes it
    assert out.pii_found == ("name", "address")
    assert [r.detail for r in out.reasons if r.signal == "pii"] == ["masked name×2, address×1"]


def test_cue_kinds_option() -> None:
    only_names = MaskPii({"customer_ref_key": "k", "cue_kinds": ["name"]})
    rec = FeedbackRecord.from_event(
        FeedbackEvent("o", "x", "我叫张三,地址:上海市浦东新区张江路1号")
    )
    assert only_names(rec).text == "我叫张*,地址:上海市浦东新区张江路1号"
    assert MaskPii({"customer_ref_key": "k", "cue_kinds": []})(rec).text == rec.text
    with pytest.raises(ConfigError, match=r"cue_kinds: unknown kind\(s\) \['nickname'\]"):
        MaskPii({"customer_ref_key": "k", "cue_kinds": ["nickname"]})


_PIECES = st.sampled_from(
    [
        "我叫", "姓名:", "客户", "先生", "地址:", "住在", "上海市", "浦东新区", "张江路", "100号",
        "张", "欧阳", "三", "经理", "客服", ",", "。", " ", "1", "13912345678", "路", "区", "小区",
    ]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(_PIECES | st.text(max_size=3), max_size=12).map("".join))
def test_masking_never_crashes_and_is_idempotent(text: str) -> None:
    masker = Masker(("订单号",))
    once, _ = masker.mask(text)
    twice, found = masker.mask(once)
    assert twice == once
    assert not found.masked["name"] and not found.masked["address"]
