"""Train the urgency step's n-gram models (level, category and kind) on the dev split.

    python bench/train_urgency_model.py            # train all three (processors/rules/*_model.json)
    python bench/train_urgency_model.py --check    # retrain and compare with the shipped files
    python bench/train_urgency_model.py --holdout round1|round3|round5|round6|round7|round8 \
        [--rules FILE]
        # the urgency step on dev items its models never saw, models off and on
        # (round8: trained on rounds 1–7; round7: on rounds 1–6; round6: on rounds 1–5;
        #  round5: on rounds 1–3; round3: on rounds 1–2; round1: 5 folds of the mixed
        #  first round)

Only dev is read (`eval_classify.SPLIT_FILES["dev"]`): the test split stays unseen.
Texts go through the chain's `normalize` and `pii` steps first, so the model learns
from the same text the urgency step sees. Training is deterministic: full-batch
Adam from zeros, fixed epochs, L2 penalty; hyper-parameters were chosen on the
hold-outs above (see processors/ngram_model.py for the figures). `--rules` lets a
hold-out use an older rules file, e.g. the rules of before round 3, which had never
seen round 3 either: `--rules <(git show 6e5be4c:processors/rules/urgency.toml)`.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from eval_classify import (  # noqa: E402
    CATEGORIES,
    DATA,
    KINDS,
    SPLIT_FILES,
    URGENCY,
    accuracy,
    classify,
    confusion,
    per_class,
    read_jsonl,
)

from processors.ngram_model import (  # noqa: E402
    BUILTIN_MODELS,
    model_document,
    ngrams,
)

TARGETS = {
    "urgency": ("expected_urgency", URGENCY),
    "category": ("expected_category", CATEGORIES),
    "kind": ("expected_kind", KINDS),
}
"""model name → (label field of the dev items, classes in model order)"""

MIN_DOCUMENTS = 2  # an n-gram must occur in at least this many training texts
L2 = 1e-4
EPOCHS = 300
STEP = 0.05
LATER_ROUNDS = {
    "round3": "eval_dev_round3.jsonl",
    "round5": "eval_dev_round5.jsonl",
    "round6": "eval_dev_round6.jsonl",
    "round7": "eval_dev_round7.jsonl",
    "round8": "eval_dev_round8.jsonl",
}
"""hold-out name → the dev file labelled after the rounds its models train on"""


def prepared(items: Sequence[dict[str, Any]]) -> list[str]:
    """Each item's text as the urgency step sees it (normalised, personal data masked)."""
    from ingest.codec import event_from_dict
    from ingest.model import FeedbackRecord
    from processors.chain import build, run

    steps = build(("normalize", "pii"), {"pii": {"customer_ref_key": "train-key"}})
    return [run(steps, FeedbackRecord.from_event(event_from_dict(i))).text for i in items]


class Design(NamedTuple):
    """The feature matrix in coordinate form: a text has a few dozen of the ~15 000
    known n-grams, so a dense matrix would be 99.7 % zeros (and most of a gigabyte)."""

    rows: np.ndarray
    columns: np.ndarray
    values: np.ndarray
    shape: tuple[int, int]

    def times(self, weights: np.ndarray) -> np.ndarray:
        """x @ weights"""
        out = np.zeros((self.shape[0], weights.shape[1]))
        np.add.at(out, self.rows, self.values[:, None] * weights[self.columns])
        return out

    def transposed_times(self, error: np.ndarray) -> np.ndarray:
        """x.T @ error"""
        out = np.zeros((self.shape[1], error.shape[1]))
        np.add.at(out, self.columns, self.values[:, None] * error[self.rows])
        return out


def design(texts: Sequence[set[str]], vocabulary: dict[str, int]) -> Design:
    """Binary presence of each known n-gram, each row scaled to unit length
    (the same features `NgramModel.predict` computes)."""
    rows: list[int] = []
    columns: list[int] = []
    values: list[float] = []
    for row, grams in enumerate(texts):
        found = sorted(vocabulary[g] for g in grams if g in vocabulary)
        rows += [row] * len(found)
        columns += found
        values += [1.0 / np.sqrt(len(found))] * len(found)
    return Design(
        np.array(rows, dtype=np.intp),
        np.array(columns, dtype=np.intp),
        np.array(values),
        (len(texts), len(vocabulary)),
    )


def fit(x: Design, y: np.ndarray, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Softmax regression by full-batch Adam (deterministic: no sampling)."""
    weights = np.zeros((x.shape[1], classes))
    bias = np.zeros(classes)
    target = np.eye(classes)[y]
    moments = (
        (np.zeros_like(weights), np.zeros_like(weights)),
        (np.zeros(classes), np.zeros(classes)),
    )
    for t in range(1, EPOCHS + 1):
        scores = x.times(weights) + bias
        scores -= scores.max(axis=1, keepdims=True)
        probabilities = np.exp(scores)
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        error = (probabilities - target) / len(y)
        grads = (x.transposed_times(error) + L2 * weights, error.sum(axis=0))
        for param, grad, (m, v) in zip((weights, bias), grads, moments, strict=True):
            m *= 0.9
            m += 0.1 * grad
            v *= 0.999
            v += 0.001 * grad * grad
            param -= STEP * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
    return weights, bias


def train(target: str, items: Sequence[dict[str, Any]], trained_on: str) -> dict[str, Any]:
    field, classes = TARGETS[target]
    grams = [ngrams(text) for text in prepared(items)]
    counts = Counter(g for text in grams for g in text)
    vocabulary = {
        g: i for i, g in enumerate(sorted(g for g, n in counts.items() if n >= MIN_DOCUMENTS))
    }
    y = np.array([classes.index(i[field]) for i in items])
    weights, bias = fit(design(grams, vocabulary), y, len(classes))
    return model_document(classes, vocabulary, weights, bias, trained_on)


def dev_items(files: Sequence[str]) -> list[dict[str, Any]]:
    return [item for name in files for item in read_jsonl(DATA / name)]


def describe(files: Sequence[str], items: Sequence[dict[str, Any]]) -> str:
    return f"{len(items)} hand-labelled dev items: " + ", ".join(f"bench/data/{f}" for f in files)


def scores(gold: Sequence[str], pred: Sequence[str]) -> str:
    classes = per_class(confusion(gold, pred, URGENCY), URGENCY)
    macro_f1 = sum(c["f1"] for c in classes.values()) / len(classes)
    return f"macro-F1 {macro_f1:.3f}  urgent recall {classes['urgent']['recall']:.3f}"


def holdout_splits(name: str) -> list[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """(train, evaluate) pairs of dev items for a hold-out protocol:
    round8   train on rounds 1–7, evaluate on round 8 (App Store reviews, fresh ranges);
    round7   train on rounds 1–6, evaluate on round 7 (App Store reviews, fresh ranges);
    round6   train on rounds 1–5, evaluate on round 6 (customer-service questions);
    round5   train on rounds 1–3, evaluate on round 5 (labelled after them);
    round3   train on rounds 1–2, evaluate on round 3;
    round1   5 folds of eval_dev.jsonl (mixed sources, like the test split), each
             evaluated by models trained on the other folds and all later rounds."""
    if name in LATER_ROUNDS:
        files = SPLIT_FILES["dev"]
        held = LATER_ROUNDS[name]
        before = files[: files.index(held)]
        return [(dev_items(before), dev_items([held]))]
    first, rest = dev_items([SPLIT_FILES["dev"][0]]), dev_items(SPLIT_FILES["dev"][1:])
    folds = [first[k::5] for k in range(5)]
    return [
        ([i for j, fold in enumerate(folds) if j != k for i in fold] + rest, folds[k])
        for k in range(5)
    ]


def holdout(name: str, rules_file: str) -> None:
    """Evaluate the urgency step on items its models never saw, with the models off
    and on (`rules_file` replacing the built-in rules when given)."""
    import tempfile

    rules = {"rules_file": rules_file, "rules_mode": "replace"} if rules_file else {}
    gold: list[dict[str, Any]] = []
    predicted: dict[str, list[Any]] = {"rules alone": [], "rules and models": []}
    with tempfile.TemporaryDirectory() as folder:
        for fold, (learn, evaluate) in enumerate(holdout_splits(name)):
            models = {}
            for target in TARGETS:
                models[target] = Path(folder) / f"{target}-{fold}.json"
                models[target].write_bytes(orjson.dumps(train(target, learn, "holdout")))
            for setup, urgency in (
                ("rules alone", {"model": "off", "category_model": "off", "kind_model": "off"}),
                (
                    "rules and models",
                    {
                        "model": str(models["urgency"]),
                        "category_model": str(models["category"]),
                        "kind_model": str(models["kind"]),
                    },
                ),
            ):
                predicted[setup] += classify(evaluate, urgency | rules)
            gold += evaluate
    print(f"hold-out {name}: {len(gold)} dev items the models never saw")
    for setup, records in predicted.items():
        urgency = scores([i["expected_urgency"] for i in gold], [r.urgency for r in records])
        category = accuracy([i["expected_category"] for i in gold], [r.category for r in records])
        kind = accuracy([i["expected_kind"] for i in gold], [r.kind for r in records])
        print(f"  {setup:<17} {urgency}  category {category:.3f}  kind {kind:.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the shipped model")
    parser.add_argument(
        "--holdout",
        choices=("round8", "round7", "round6", "round5", "round3", "round1"),
        help="evaluate on dev items the models never saw",
    )
    parser.add_argument("--rules", default="", help="rules file for --holdout (replaces)")
    args = parser.parse_args()
    if args.holdout:
        holdout(args.holdout, args.rules)
        return 0
    files = SPLIT_FILES["dev"]
    items = dev_items(files)
    failed = 0
    for target, path in BUILTIN_MODELS.items():
        doc = train(target, items, describe(files, items))
        where = path.relative_to(ROOT)
        if args.check:
            failed += not same_model(orjson.loads(path.read_bytes()), doc, str(where))
            continue
        path.write_bytes(orjson.dumps(doc) + b"\n")
        print(f"wrote {where}: {len(doc['weights'])} n-grams, {doc['trained_on']}")
    return 1 if failed else 0


def same_model(shipped: dict[str, Any], trained: dict[str, Any], name: str) -> bool:
    """Whether a retrained model matches the shipped file (to rounding: BLAS sums may
    differ in the last bits from one machine to another)."""
    same = shipped["weights"].keys() == trained["weights"].keys() and (
        shipped["classes"] == trained["classes"]
    )
    gap = max(
        (
            abs(a - b)
            for gram, row in trained["weights"].items()
            for a, b in zip(row, shipped["weights"].get(gram, row), strict=True)
        ),
        default=0.0,
    )
    print(
        f"{name}: vocabulary {'identical' if same else 'DIFFERENT'}, largest weight gap {gap:.2g}"
    )
    return same and gap < 1e-3


if __name__ == "__main__":
    sys.exit(main())
