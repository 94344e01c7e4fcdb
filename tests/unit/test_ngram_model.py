"""The learned n-gram models of the urgency step: loading, prediction, and how the step
may use them (raise only, complaints and questions only, when sure; the category only
without words)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from ingest.errors import ConfigError
from ingest.model import FeedbackEvent, FeedbackRecord
from ingest.model import Sentiment as SentimentValue
from processors.ngram_model import FORMAT, NgramModel, load_model, ngrams
from processors.urgency import Urgency

ROOT = Path(__file__).resolve().parents[2]
URGENCY = ["urgent", "important", "general"]


def document(weights: dict[str, list[float]], classes: list[str] = URGENCY) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "trained_on": "a test",
        "ngram_max": 2,
        "classes": classes,
        "bias": [0.0] * (len(classes) - 1) + [3.0],  # the last class wins without evidence
        "weights": weights,
    }


def write(tmp_path: Path, name: str, doc: dict[str, Any]) -> str:
    path = tmp_path / name
    path.write_bytes(orjson.dumps(doc))
    return str(path)


def step(**options: Any) -> Urgency:
    return Urgency({"category_model": "off", "kind_model": "off"} | options)


def record(text: str, label: str = "negative") -> FeedbackRecord:
    score = {"negative": 0.1, "neutral": 0.5, "positive": 0.9}[label]
    event = FeedbackEvent(id="e1", channel="app_review", text=text)
    sentiment = SentimentValue(snownlp=score, score=score, label=label)  # type: ignore[arg-type]
    return replace(FeedbackRecord.from_event(event), sentiment=sentiment)


def test_ngrams_are_lower_cased_unigrams_and_bigrams_without_blank_ones() -> None:
    assert ngrams("App  闪退") == {"a", "p", "ap", "pp", "p ", " 闪", "闪", "退", "闪退"}
    assert ngrams("") == set()


def test_prediction_names_the_sequences_behind_it() -> None:
    model = NgramModel.from_document(document({"嘟嘟": [12.0, 0.0, 0.0], "好": [0, 0, 1]}), "t")
    prediction = model.predict("嘟嘟嘟，好")
    assert prediction.label == "urgent"
    assert prediction.probabilities["urgent"] > 0.9
    assert model.explain("嘟嘟嘟，好", "urgent")[0][0] == "嘟嘟"
    assert model.explain("嘟嘟嘟，好", "general") == (
        ("好", pytest.approx(2 / 3 / 2**0.5, abs=1e-3)),
    )
    assert (
        model.predict("别的").label == "general"
    )  # no known n-gram: the bias alone; 2 known n-grams above


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "other/1"}, "format"),
        ({"weights": {}}, "non-empty"),
        ({"weights": {"a": [1.0, 2.0]}}, "3 numbers"),
        ({"bias": [0.0]}, "3 numbers"),
        ({"weights": {"a": [1.0, float("nan"), 0.0]}}, "non-finite"),
        ({"classes": None}, "classes"),
        ({"classes": ["a", "a", "b"]}, "distinct"),
    ],
)
def test_a_bad_model_document_is_a_config_error(change: dict[str, Any], message: str) -> None:
    doc = document({"a": [1.0, 0.0, 0.0]}) | change
    with pytest.raises(ConfigError, match=message):
        NgramModel.from_document(doc, "bad.json", "classify.options.urgency.model")


def test_an_unreadable_model_file_names_the_option(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"classify\.options\.urgency\.model"):
        Urgency({"model": str(tmp_path / "missing.json")})
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"broken\.json"):
        Urgency({"model": str(tmp_path / "broken.json")})


def test_the_model_raises_a_complaint_and_says_why(tmp_path: Path) -> None:
    path = write(tmp_path, "m.json", document({"嘟嘟": [12.0, 0.0, 0.0]}))
    out = step(model=path)(record("投诉：嘟嘟嘟嘟"))
    assert out.urgency == "urgent"
    why = [r.detail for r in out.reasons if r.signal == "model"]
    assert why and "嘟嘟" in why[0] and "general → urgent" in why[0]
    assert "by the learned model" in next(r.detail for r in out.reasons if r.signal == "urgency")
    assert step(model="off")(record("投诉：嘟嘟嘟嘟")).urgency == "general"


def test_the_model_never_lowers_raises_questions_but_not_praise_nor_unsure_cases(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "m.json", document({"嘟嘟": [12.0, 0.0, 0.0], "盗刷": [0, 0, 20.0]}))
    assert step(model=path)(record("信用卡被盗刷了")).urgency == "urgent"  # rules: funds at risk
    question = step(model=path)(record("请问嘟嘟嘟嘟怎么还不到？", "neutral"))
    assert question.kind == "consultation"
    assert question.urgency == "urgent"  # a question can put money at stake
    praise = step(model=path)(record("嘟嘟嘟嘟很好用，感谢", "positive"))
    assert praise.kind == "praise"
    assert praise.urgency == "general"
    unsure = write(tmp_path, "u.json", document({"嘟嘟": [3.0, 0.0, 0.0]}))  # p ≈ 0.49 < 0.5
    assert step(model=unsure)(record("投诉：嘟嘟嘟嘟")).urgency == "general"
    lower_bar = step(model=unsure, model_urgent_probability=0.4)
    assert lower_bar(record("投诉：嘟嘟")).urgency == "urgent"
    for option in ("model_urgent_probability", "model_over_defect_probability"):
        with pytest.raises(ConfigError, match=option):
            step(**{option: 1.5})


def test_over_a_defect_word_only_a_sure_model_raises_and_only_to_urgent(tmp_path: Path) -> None:
    """无法绑卡 is one broken feature (important): the model may call it urgent only
    when at least `model_over_defect_probability` sure, and never lowers it."""
    text = "无法绑卡，嘟嘟嘟嘟"
    assert step(model="off")(record(text)).urgency == "important"
    sure = write(tmp_path, "s.json", document({"嘟嘟": [12.0, 0.0, 0.0]}))
    raised = step(model=sure)(record(text))
    assert raised.urgency == "urgent"
    why = next(r.detail for r in raised.reasons if r.signal == "model")
    assert "important → urgent, over the important rule words (p ≥ 0.8)" in why
    fairly = write(tmp_path, "f.json", document({"嘟嘟": [3.5, 0.0, 0.0]}))  # p ≈ 0.61
    assert step(model=fairly)(record("投诉：嘟嘟嘟嘟")).urgency == "urgent"  # no rule word
    assert step(model=fairly)(record(text)).urgency == "important"  # below 0.8
    general = write(tmp_path, "g.json", document({"嘟嘟": [0.0, 0.0, 12.0]}))
    assert step(model=general)(record(text)).urgency == "important"  # never lowered


def test_the_category_model_decides_only_without_category_words(tmp_path: Path) -> None:
    classes = ["product", "service", "process", "policy"]
    doc = document({"嘟嘟": [0.0, 0.0, 9.0, 0.0], "柜员": [0.0, 0.0, 9.0, 0.0]}, classes)
    doc["bias"] = [3.0, 0.0, 0.0, 0.0]
    path = write(tmp_path, "c.json", doc)
    urgency = Urgency({"model": "off", "category_model": path})
    learned = urgency(record("嘟嘟嘟嘟太慢"))
    assert learned.category == "process"
    assert any(
        "learned n-gram model" in r.detail for r in learned.reasons if r.signal == "category"
    )
    assert urgency(record("柜员态度很差")).category == "service"  # the words decide


def test_the_kind_model_decides_only_without_cue_or_failure_words(tmp_path: Path) -> None:
    """Sentiment alone calls this complaint praise (snownlp is fooled by 悲剧了); the kind
    model decides where no cue word speaks and the rules found no failure or defect
    word, when sure, and never calls a low-rated review praise."""
    kinds = ["complaint", "consultation", "suggestion", "praise"]
    path = write(tmp_path, "k.json", document({"嘟嘟": [9.0, 0.0, 0.0, 0.0]}, kinds))
    text = "嘟嘟嘟嘟，悲剧了"
    assert step()(record(text, "positive")).kind == "praise"  # by the sentiment
    learned = step(kind_model=path)(record(text, "positive"))
    assert learned.kind == "complaint"
    why = next(r.detail for r in learned.reasons if r.signal == "kind")
    assert "learned n-gram model" in why and "嘟嘟" in why
    assert step(kind_model=path)(record("嘟嘟嘟嘟，好用", "positive")).kind == "praise"  # a cue
    unsure = step(kind_model=path, kind_model_probability=1.0)
    assert unsure(record(text, "positive")).kind == "praise"
    praising = write(tmp_path, "p.json", document({"嘟嘟": [0.0, 0.0, 0.0, 9.0]}, kinds))
    low = replace(record(text, "neutral"), rating=1)
    assert step(kind_model=praising)(low).kind == "complaint"
    assert step(kind_model=praising)(record("无法绑卡，嘟嘟嘟嘟", "positive")).kind == "complaint"
    with pytest.raises(ConfigError, match="kind_model_probability"):
        step(kind_model_probability=-0.1)
    with pytest.raises(ConfigError, match="kind_model"):
        step(kind_model=write(tmp_path, "u.json", document({"嘟嘟": [1.0, 0.0, 0.0]})))


def test_builtin_models_fit_the_builtin_rules_and_step_aside_for_replaced_ones(
    tmp_path: Path,
) -> None:
    builtin = Urgency()
    assert builtin.model is not None and builtin.category_model is not None
    assert builtin.kind_model is not None
    rules = tmp_path / "rules.toml"
    rules.write_text(
        'version = 1\n[defaults]\nlevel = "general"\ncategory = "cards"\n'
        '[categories.cards]\nlabel = "卡"\nwords = ["卡"]\n',
        "utf-8",
    )
    replaced = Urgency({"rules_file": str(rules), "rules_mode": "replace"})
    assert replaced.category_model is None  # its classes are not the operator's categories
    assert replaced(record("没有类别词")).category == "cards"
    model = load_model("category", "builtin", "k")
    assert model is not None
    named = write(tmp_path, "c.json", document({"a": [1, 0, 0, 0]}, list(model.classes)))
    with pytest.raises(ConfigError, match="category_model"):
        Urgency({"rules_file": str(rules), "rules_mode": "replace", "category_model": named})


@pytest.mark.slow
@pytest.mark.timeout(300)  # three models of ~20 000 n-grams, about 70 s on two cores
def test_shipped_models_are_reproduced_from_the_dev_split_alone() -> None:
    """The shipped weights come from bench/data dev files (never the test split)."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "train_urgency_model.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("vocabulary identical") == 3
