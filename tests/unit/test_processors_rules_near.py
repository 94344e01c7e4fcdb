"""`near` patterns of the rule tables (processors/rules): "one of `first`, then one of
`then` with at most `within` characters between", compiled beside the keyword trie."""

from __future__ import annotations

from typing import Any

import pytest

from ingest.errors import ConfigError
from processors.rules import Group, Matcher, Near, build_rules, load_rules

LOGIN = Near(("登录", "登陆"), ("不上", "不进"), 4)


def _matcher(*near: Near, negations: tuple[str, ...] = ()) -> Matcher:
    return Matcher([Group("login", "登录失败", ("闪退",), "urgent", near=near)], negations, 4)


@pytest.mark.parametrize(
    ("text", "hit"),
    [
        ("登陆不上", "登陆不上"),  # no gap
        ("登录了三次还是都不上", None),  # 6 characters between: beyond `within`
        ("登录半天也不上去", "登录半天也不上"),  # 3 between
        ("每次登陆都登不进去", "登陆都登不进"),
        ("不上登录", None),  # order matters
    ],
)
def test_near_matches_first_then_within_the_gap(text: str, hit: str | None) -> None:
    scan = _matcher(LOGIN).scan(text)
    assert scan.words("login") == ((hit,) if hit else ())


def test_near_hits_sit_beside_word_hits_and_show_the_span() -> None:
    scan = _matcher(LOGIN).scan("闪退，登录老是登不上")
    assert scan.words("login") == ("闪退", "登录老是登不上")


def test_near_is_cancelled_by_a_negation_cue_like_a_word() -> None:
    matcher = _matcher(LOGIN, negations=("没有",))
    scan = matcher.scan("从来没有登录不上过")
    assert not scan.hits and scan.negated[0].cue == "没有"
    assert matcher.first("从来没有登录不上过") is None
    assert matcher.first("今天登录不上") == "登录不上"


def test_shipped_rules_catch_phrasings_not_listed_word_by_word() -> None:
    rules = load_rules()
    for text in (
        "登陆过程惊为天人，半天没登陆进去",
        "一直提示网络不给力",
        "叫我更新，又更新不了，怎么用",
        "已经升级到最新版本了，点击还是提示版本过低",
        "转账都不能转，死去吧",
    ):
        assert rules.urgent.first(text), text
    # everyday tone and ordinary use are not failures
    for text in ("网络好好的，就是慢", "登录挺快的", "有点不开心", "以前的版本更好看"):
        assert not rules.urgent.first(text), text


@pytest.mark.parametrize(
    ("near", "message"),
    [
        ([{"first": ["登录"], "then": ["不上"], "within": 99}], "between 0 and 30"),
        ([{"first": ["登录"], "then": ["不上"]}], "must be an integer"),
        ([{"first": ["登录"], "then": [], "within": 2}], "non-empty strings"),
        ([{"first": ["登录"], "then": ["不上"], "within": 2, "widthin": 1}], "not a known key"),
        (["登录…不上"], "must be a table"),
    ],
)
def test_bad_near_pattern_is_a_config_error(near: list[Any], message: str) -> None:
    doc = {"triggers": {"login": {"level": "urgent", "words": ["闪退"], "near": near}}}
    with pytest.raises(ConfigError, match=message):
        build_rules(doc, "test.toml")


def test_overlapping_near_matches_of_two_families_both_count() -> None:
    """One alternation for all families would give "u盾 … 签名" to the first family and
    hide the second family's "支付 … 失败" over the same characters."""
    matcher = Matcher(
        [
            Group("ukey", "U盾", (), near=(Near(("u盾",), ("签名",), 10),)),
            Group("payment", "支付失败", (), near=(Near(("支付",), ("失败",), 10),)),
        ]
    )
    hits = matcher.scan("u盾支付一直签名认证失败").hits
    assert set(hits) == {"ukey", "payment"}
