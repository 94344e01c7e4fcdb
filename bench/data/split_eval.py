"""Re-split the labelled financial set into dev and test, deterministically.

    python bench/data/split_eval.py          # check the files match the split
    python bench/data/split_eval.py --write  # rewrite eval_dev.jsonl / eval_test.jsonl

The union of both files is the labelled set. Items are grouped by stratum
(expected urgency x expected kind), each stratum is sorted by id, shuffled with a
fixed seed and cut in half (the odd item goes to test), so every urgency/kind
combination is represented in both splits. Rules are tuned on dev only.

The other dev files (`eval_classify.SPLIT_FILES["dev"]` after `eval_dev.jsonl`: more
real feedback, labelled later, rounds 2, 3, 5, 6, 7 and 8) are dev only and never
re-split: moving their items into test would change the reported
test split. The check below also fails if one of their ids or texts appears in dev or
test, or in an earlier extra file.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEV, TEST = HERE / "eval_dev.jsonl", HERE / "eval_test.jsonl"
sys.path.insert(0, str(HERE.parent))
from eval_classify import SPLIT_FILES  # noqa: E402 - one list of the dev files

DEV_ONLY = tuple(HERE / name for name in SPLIT_FILES["dev"] if HERE / name != DEV)
"""Dev-only extras, in the order they were labelled; never re-split."""
SEED = 20261124


def read(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def split(items: list[dict]) -> tuple[list[dict], list[dict]]:
    strata: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for item in items:
        strata[(item["expected_urgency"], item["expected_kind"])].append(item)
    rng = random.Random(SEED)
    dev: list[dict] = []
    test: list[dict] = []
    for key in sorted(strata):
        group = sorted(strata[key], key=lambda item: item["id"])
        rng.shuffle(group)
        half = len(group) // 2
        dev += group[:half]
        test += group[half:]
    return sorted(dev, key=lambda i: i["id"]), sorted(test, key=lambda i: i["id"])


def write(path: Path, items: list[dict]) -> None:
    lines = [json.dumps(item, ensure_ascii=False) for item in items]
    path.write_text("\n".join(lines) + "\n", "utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite the split files")
    args = parser.parse_args()
    items = read(DEV) + read(TEST)
    dev, test = split(items)
    if args.write:
        write(DEV, dev)
        write(TEST, test)
        print(f"dev {len(dev)}, test {len(test)}")
        return 0
    same = [i["id"] for i in dev] == [i["id"] for i in read(DEV)]
    print(f"dev {len(dev)}, test {len(test)}: {'matches' if same else 'DIFFERS from'} the files")
    ok = same
    seen = list(items)
    for path in DEV_ONLY:
        more = read(path)
        ids, texts = {i["id"] for i in seen}, {i["text"] for i in seen}
        shared = {i["id"] for i in more} & ids or {i["text"] for i in more} & texts
        verdict = "OVERLAPS" if shared else "disjoint from"
        print(f"dev-only {path.name} {len(more)}: {verdict} the split and earlier extras")
        ok = ok and not shared
        seen += more
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
