"""The labelled evaluation data (bench/data) parses, every label is valid, every item
cites its source, dev and test do not overlap and are the documented split."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from ingest.codec import event_from_dict
from ingest.model import KINDS, URGENCY_LEVELS

DATA = Path(__file__).resolve().parents[2] / "bench" / "data"
CATEGORIES = ("product", "service", "process", "policy")
SENTIMENTS = ("negative", "neutral", "positive")


def _read(name: str) -> list[dict[str, Any]]:
    lines = (DATA / name).read_text("utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


TEST_SPLIT_SHA256 = "5dff652586f16412494ffd2f7e3c8a9a4ef27184c246d688d4f8b49ec11af855"
"""eval_test.jsonl as reported: growing dev or re-labelling must never touch it."""


def _bench_module(name: str, path: Path) -> Any:
    """A bench script loaded as a module (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EVAL_CLASSIFY = _bench_module("eval_classify", DATA.parent / "eval_classify.py")
EXTRA_DEV = tuple(n for n in EVAL_CLASSIFY.SPLIT_FILES["dev"] if n != "eval_dev.jsonl")
"""Dev-only files added after the split (rounds 2, 3, 5, 6, 7 and 8), in the order labelled:
the dev files the evaluation reads, one list (`eval_classify.SPLIT_FILES`)."""


def _bigrams(text: str) -> set[str]:
    chars = "".join(ch for ch in text.lower() if ch.isalnum())
    return {chars[i : i + 2] for i in range(len(chars) - 1)} or {chars}


@pytest.mark.parametrize("name", ["eval_dev.jsonl", "eval_test.jsonl", *EXTRA_DEV])
def test_financial_split_parses_with_valid_labels_and_sources(name: str) -> None:
    items = _read(name)
    assert len(items) >= 200
    for item in items:
        event_from_dict(item)  # the chain's own parser accepts it
        assert item["text"].strip()
        assert item["expected_urgency"] in URGENCY_LEVELS
        assert item["expected_kind"] in KINDS
        assert item["expected_category"] in CATEGORIES
        assert item["expected_sentiment"] in SENTIMENTS
        assert item["origin"] in ("real", "synthetic")
        assert item["cite"].startswith("https://") and item["source"]


def test_dev_and_test_are_disjoint_and_the_documented_split() -> None:
    dev, test = _read("eval_dev.jsonl"), _read("eval_test.jsonl")
    ids = [i["id"] for i in dev + test]
    texts = [i["text"] for i in dev + test]
    assert len(set(ids)) == len(ids) and len(set(texts)) == len(texts)
    module = _bench_module("split_eval", DATA / "split_eval.py")
    again_dev, again_test = module.split(dev + test)
    assert [i["id"] for i in again_dev] == [i["id"] for i in dev]
    assert [i["id"] for i in again_test] == [i["id"] for i in test]
    for level in URGENCY_LEVELS:  # stratified: every level on both sides
        assert any(i["expected_urgency"] == level for i in dev)
        assert any(i["expected_urgency"] == level for i in test)


def test_public_sentiment_sample_parses() -> None:
    rows = _read("sentiment_public.jsonl")
    assert len(rows) >= 300
    assert {r["label"] for r in rows} == {"positive", "negative"}
    assert len({r["id"] for r in rows}) == len(rows)


def test_test_split_is_byte_identical_to_the_reported_one() -> None:
    digest = hashlib.sha256((DATA / "eval_test.jsonl").read_bytes()).hexdigest()
    assert digest == TEST_SPLIT_SHA256


class _NearIndex:
    """Texts by character bigram, to find a near-duplicate (bigram Jaccard >= 0.6)
    without comparing every pair: only texts sharing a bigram can reach it."""

    def __init__(self, texts: list[str]) -> None:
        self.sizes = [len(_bigrams(text)) for text in texts]
        self.holders: dict[str, list[int]] = defaultdict(list)
        for row, text in enumerate(texts):
            for gram in _bigrams(text):
                self.holders[gram].append(row)

    def near(self, text: str) -> bool:
        grams = _bigrams(text)
        shared = Counter(row for gram in grams for row in self.holders.get(gram, ()))
        return any(
            both / (len(grams) + self.sizes[row] - both) >= 0.6 for row, both in shared.items()
        )


@pytest.mark.parametrize(
    ("name", "minimum"),
    [
        ("eval_dev_more.jsonl", 400),
        ("eval_dev_round3.jsonl", 300),
        ("eval_dev_round5.jsonl", 3000),
        ("eval_dev_round6.jsonl", 1500),
        ("eval_dev_round7.jsonl", 1500),
        ("eval_dev_round8.jsonl", 1100),
    ],
)
def test_extra_dev_items_are_new_and_never_near_a_test_item(name: str, minimum: int) -> None:
    """The extra dev files are dev only: no id, text or near-duplicate (character-bigram
    Jaccard >= 0.6) shared with the test split; no id or text shared with the first dev
    half or an earlier extra file. Rounds 3, 5, 6, 7 and 8 (labelled after the near-duplicate
    rule was written down) are also never near an earlier dev item."""
    more = _read(name)
    assert len(more) >= minimum
    earlier = EXTRA_DEV[: EXTRA_DEV.index(name)]
    old = _read("eval_dev.jsonl") + _read("eval_test.jsonl")
    old += [item for other in earlier for item in _read(other)]
    assert not {i["id"] for i in more} & {i["id"] for i in old}
    assert not {i["text"] for i in more} & {i["text"] for i in old}
    assert len({i["id"] for i in more}) == len(more)
    assert len({i["text"] for i in more}) == len(more)
    test = _NearIndex([i["text"] for i in _read("eval_test.jsonl")])
    for item in more:
        assert not test.near(item["text"]), item["id"]
    if name != "eval_dev_more.jsonl":
        dev = _read("eval_dev.jsonl") + [item for other in earlier for item in _read(other)]
        dev_index = _NearIndex([i["text"] for i in dev])
        for item in more:
            assert not dev_index.near(item["text"]), item["id"]


def test_evaluation_dev_split_includes_the_extra_items() -> None:
    module = EVAL_CLASSIFY
    labelled = sorted(path.name for path in DATA.glob("eval_dev*.jsonl"))
    assert sorted(module.SPLIT_FILES["dev"]) == labelled  # no labelled round left out
    dev = module.load_split("dev")
    assert len(dev) == len(_read("eval_dev.jsonl")) + sum(len(_read(n)) for n in EXTRA_DEV)
    assert [i["id"] for i in module.load_split("test")] == [
        i["id"] for i in _read("eval_test.jsonl")
    ]


@pytest.mark.parametrize("name", ["eval_dev.jsonl", "eval_test.jsonl", *EXTRA_DEV])
def test_no_item_carries_a_valid_id_card_or_mobile_number(name: str) -> None:
    from processors.pii import Masker, PiiOptions

    masker = Masker(PiiOptions().reference_cues, cue_kinds=())
    for item in _read(name):
        _, found = masker.mask(item["text"])
        kinds = set(found.masked) & {"id", "card", "mobile"}
        assert not kinds, (item["id"], kinds)
