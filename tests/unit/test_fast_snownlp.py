"""FastSentiment must reproduce snownlp's sentiment scores exactly (|Δ| ≤ 1e-9)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.fast_snownlp import FastSentiment

SAMPLES = Path(__file__).resolve().parents[2] / "ingest" / "data" / "samples.jsonl"
TOL = 1e-9


def _sample_texts() -> list[str]:
    texts: list[str] = []
    for line in SAMPLES.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        if rec.get("text"):
            texts.append(rec["text"])
        for turn in rec.get("turns") or []:
            if turn.get("text"):
                texts.append(turn["text"])
    return texts


def _corpus(samples: list[str], n: int = 2000, seed: int = 20261124) -> list[str]:
    """Variations of the samples: substrings, concatenations, mixed scripts, edge cases."""
    rng = random.Random(seed)
    extras = ["abc", "123", "ATM", "  ", "\n", "\t", "😀", "👍🏻", "！", "？？", "..."]
    extras += ["1,000元", "é", "\u3000", "Ｖｉｐ", "\u200b"]
    out = ["", " ", "   \n\t ", "好", "a", "😀", "。", "\u3000", "不", "的"]
    big = "".join(samples)
    out.append((big * (5000 // max(len(big), 1) + 1))[:5000])
    han = "".join(ch for ch in big if "\u4e00" <= ch <= "\u9fa5")
    out.append(han[:3000])  # one long CJK run: longer than a scoring batch
    while len(out) < n:
        kind = rng.randrange(5)
        s = rng.choice(samples)
        if kind == 0:
            i = rng.randrange(len(s))
            out.append(s[i : i + rng.randint(1, 120)])
        elif kind == 1:
            a, b = rng.choice(samples), rng.choice(samples)
            out.append((a[rng.randrange(len(a)) :] + b)[: rng.randint(2, 200)])
        elif kind == 2:
            chars = list(s[: rng.randint(1, 100)])
            for _ in range(rng.randint(1, 6)):
                chars.insert(rng.randrange(len(chars) + 1), rng.choice(extras))
            out.append("".join(chars))
        elif kind == 3:
            out.append("".join(rng.choice(big) for _ in range(rng.randint(1, 40))))
        else:
            i = rng.randrange(len(big))
            out.append(big[i : i + rng.choice([1, 2, 3, 5, 8, 13])])
    return out


_FAST = FastSentiment()  # loads lazily, on the first score()


def _reference(text: str) -> float:
    from snownlp import SnowNLP, sentiment

    # SnowNLP("") raises ZeroDivisionError in its BM25 constructor before
    # `.sentiments` runs; compare with the classifier `.sentiments` calls.
    if not text:
        return float(sentiment.classify(text))
    return float(SnowNLP(text).sentiments)


@pytest.fixture(scope="module")
def fast() -> FastSentiment:
    return _FAST


@pytest.fixture(scope="module")
def reference() -> Callable[[str], float]:
    return _reference


def test_samples_identical(fast: FastSentiment, reference: Callable[[str], float]) -> None:
    texts = _sample_texts()
    assert len(texts) >= 50
    for text in texts:
        assert abs(fast.score(text) - reference(text)) <= TOL, text


def test_generated_corpus_identical(fast: FastSentiment, reference: Callable[[str], float]) -> None:
    corpus = _corpus(_sample_texts())
    assert len(corpus) >= 2000
    worst = 0.0
    for text in corpus:
        delta = abs(fast.score(text) - reference(text))
        assert delta <= TOL, text
        worst = max(worst, delta)
    assert worst <= TOL


def test_words_identical_to_snownlp_seg(fast: FastSentiment) -> None:
    from snownlp import seg

    samples = _sample_texts()
    for text in samples + _corpus(samples)[:300]:
        assert fast.words(text) == seg.seg(text), text


def test_cache_dir_round_trip(tmp_path: Path) -> None:
    texts = _sample_texts()[:20]
    expected = [_FAST.score(t) for t in texts]
    FastSentiment(cache_dir=str(tmp_path)).score("预热")  # builds and stores
    assert len(list(tmp_path.glob("*.npz"))) == 1
    warm = FastSentiment(cache_dir=str(tmp_path))  # loads the stored arrays
    assert [warm.score(t) for t in texts] == expected


_TEXT = st.text(
    alphabet=st.one_of(
        st.characters(),
        st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5),
        st.sampled_from("的了是不我你好差银行卡钱冻结扣款，。！？ \n"),
    ),
    max_size=80,
)


@settings(max_examples=200, deadline=None)
@given(text=_TEXT)
def test_arbitrary_unicode_identical(text: str) -> None:
    assert abs(_FAST.score(text) - _reference(text)) <= TOL
