"""The `churn` step: intent to leave flagged for retention follow-up, never a change of
level, negations and fraud ("钱被转走") left out, words extendable from a data file."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from ingest.errors import ConfigError, Drop
from ingest.model import FeedbackEvent, FeedbackRecord
from processors.churn import Churn, load_churn
from processors.non_feedback import NonFeedback
from processors.normalize import Normalize


def record(text: str, **fields: object) -> FeedbackRecord:
    event = FeedbackEvent(id="c-1", channel="wechat", text=text, meta={"openid": "o-1"})
    return replace(FeedbackRecord.from_event(event), **fields)  # type: ignore[arg-type]


def churn_reasons(rec: FeedbackRecord) -> list[str]:
    return [r.detail for r in rec.reasons if r.signal == "churn"]


@pytest.mark.parametrize(
    ("text", "group", "word"),
    [
        ("再这样我就把工资卡销户", "close_account", "销户"),
        ("我要注销账户", "close_account", "注销账户"),
        ("下周就把钱全部转走", "move_money", "转走"),
        ("存款我会转到别的银行", "move_money", "转到别的银行"),
        ("服务这么差，换一家算了", "switch", "换一家"),
        ("以后再也不用你们的APP", "never_again", "再也不用"),
        ("已经卸载了", "never_again", "卸载"),
        ("理赔这么慢，我要退保", "insurance", "退保"),
        ("明年不续保了", "insurance", "不续保"),
        ("没解决就销户", "close_account", "销户"),  # 没 too far back to negate 销户
    ],
)
def test_churn_words_flag_the_record(text: str, group: str, word: str) -> None:
    out = Churn()(record(text, urgency="general"))
    assert out.meta == {"openid": "o-1", "churn": True}
    assert out.urgency == "general"  # flagged, never raised by this step
    (reason,) = churn_reasons(out)
    assert f"[{group}]: {word}" in reason and "retention follow-up" in reason


@pytest.mark.parametrize(
    ("text", "negated"),
    [
        ("卡里的钱被转走了一万五", "转走 after 被"),  # fraud, not churn
        ("钱被他们转走了", "转走 after 被"),
        ("我的卡被注销了，为什么", "注销 after 被"),
        ("我没有销户，为什么还收年费", "销户 after 没有"),
        ("我不想销户，只想降额度", "销户 after 不想"),
        ("我并不是要销户，只是问问", "销户 after 不是要"),
        ("放心，我不会销户的", "销户 after 不会"),
    ],
)
def test_negated_churn_words_are_noted_not_flagged(text: str, negated: str) -> None:
    out = Churn()(record(text))
    assert "churn" not in out.meta
    assert churn_reasons(out) == [f"not counted: {negated}"]


@pytest.mark.parametrize("text", ["请问信用卡年费怎么收取?", "转账失败", "你们的客服很耐心", ""])
def test_no_churn_word_leaves_the_record_as_it_was(text: str) -> None:
    rec = record(text)
    assert Churn()(rec) is rec


def test_full_width_and_traditional_input_is_normalised_first() -> None:
    out = Churn()(Normalize()(record("我要銷戶，換一家銀行")))
    assert out.meta.get("churn") is True
    assert "[close_account]: 销户; 换一家 [switch]: 换一家" in churn_reasons(out)[0]


def test_operator_file_extends_or_replaces(tmp_path: Path) -> None:
    extra = tmp_path / "churn.toml"
    extra.write_text('[churn.switch]\nwords = ["投奔别家"]\n', "utf-8")
    extended = Churn({"rules_file": str(extra)})
    assert extended(record("准备投奔别家")).meta.get("churn") is True
    assert extended(record("我要销户")).meta.get("churn") is True
    replaced = Churn({"rules_file": str(extra), "rules_mode": "replace"})
    assert "churn" not in replaced(record("我要销户")).meta
    assert load_churn() is load_churn()  # compiled once per process


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[churn.x]\nwords = []\n[churn.y]\nwords = 3\n", r"churn\.y\.words must be a list"),
        ('[churn.x]\nwords = ["a"]\nlevel = "urgent"\n', r"unknown key\(s\) \['level'\]"),
        ('[churns.x]\nwords = ["a"]\n', "churns is not a known table"),
        ("[negation]\nwindow = -1\n", r"negation\.window must be an integer"),
        ("[churn", "not valid TOML"),
    ],
)
def test_bad_churn_file_is_a_config_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "churn.toml"
    path.write_text(content, "utf-8")
    with pytest.raises(ConfigError, match=message) as error:
        Churn({"rules_file": str(path), "rules_mode": "extend"})
    assert error.value.key == "classify.options.churn.rules_file"


def test_non_feedback_drops_channel_events_and_passes_everything_else() -> None:
    """WeChat follow/menu events and WeCom servicer rows are marked feedback=False by
    their connector; the first step drops them with a reason, nothing else."""
    step = NonFeedback({})
    event = FeedbackEvent(
        id="e", channel="wechat", text="[关注]", meta={"feedback": False, "kind": "event"}
    )
    with pytest.raises(Drop, match="not customer feedback"):
        step(FeedbackRecord.from_event(event))
    for meta in ({}, {"feedback": True}, {"feedback": "false"}):
        kept = FeedbackRecord.from_event(FeedbackEvent(id="k", channel="x", text="t", meta=meta))
        assert step(kept) is kept
