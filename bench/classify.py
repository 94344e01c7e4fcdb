"""Classification chain on one core: events per CPU second, and cost per character.

    python bench/classify.py [--events 3000] [--repeat 5]

The default chain (`[classify] steps`, built as the processor role builds it) runs in
this one process over the sample events of ingest/data/samples.jsonl (cycled, call
turns included) after a warm-up. Events per CPU second of this process is the
per-core figure (issue goal: ≥ 400), steady on a shared machine; wall-clock events/s
is printed beside it. Then the chain on single texts of 50 / 200 / 800 / 3200
characters cut from the joined samples, best of `--repeat`: µs per character at each
length should stay roughly flat (linear in length); `linearity` is µs/char at the
longest length ÷ µs/char at 200 (at 50 the fixed per-event cost dominates).
Writes bench/results/classify.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ingest.classify import Chain, ChainSpec  # noqa: E402
from ingest.codec import event_from_dict  # noqa: E402
from ingest.model import FeedbackEvent  # noqa: E402
from ingest.options import Secret  # noqa: E402
from ingest.settings import ClassifySettings  # noqa: E402

SAMPLES = ROOT / "ingest" / "data" / "samples.jsonl"
RESULTS = Path(os.environ.get("BENCH_RESULTS_DIR") or ROOT / "bench" / "results")
LENGTHS = (50, 200, 800, 3200)


def sample_events() -> list[FeedbackEvent]:
    lines = SAMPLES.read_text(encoding="utf-8").splitlines()
    return [event_from_dict(json.loads(line)) for line in lines if line.strip()]


def per_length(chain: Chain, text: str, repeat: int) -> dict[str, dict[str, float]]:
    """Best-of-`repeat` chain time on `text` cut to each length, in ms and µs/char."""
    joined = text * (max(LENGTHS) // len(text) + 1)
    out: dict[str, dict[str, float]] = {}
    for n in LENGTHS:
        event = FeedbackEvent(id=f"len-{n}", channel="app_review", text=joined[:n])
        best = float("inf")
        for _ in range(repeat):
            started = time.perf_counter()
            chain(event)
            best = min(best, time.perf_counter() - started)
        out[str(n)] = {"ms": best * 1e3, "us_per_char": best * 1e6 / n}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    started = time.perf_counter()
    chain = Chain(ChainSpec.from_settings(ClassifySettings(customer_ref_key=Secret("bench-key"))))
    samples = sample_events()
    for event in samples:  # warm-up: models loaded, every code path taken once
        chain(event)
    load_s = time.perf_counter() - started
    events = [
        dataclasses.replace(samples[i % len(samples)], id=f"bench-{i}") for i in range(args.events)
    ]
    cpu, wall = time.process_time(), time.perf_counter()
    for event in events:
        chain(event)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    lengths = per_length(chain, "".join(e.text for e in samples), args.repeat)
    longest = str(max(LENGTHS))
    result: dict[str, Any] = {
        "benchmark": "classify",
        "events": args.events,
        "steps": list(ClassifySettings().steps),
        "warm_up_s": round(load_s, 2),
        "events_per_cpu_s": round(args.events / cpu),
        "events_per_wall_s": round(args.events / wall),
        "mean_ms_per_event": round(cpu / args.events * 1e3, 3),
        "per_length": lengths,
        "linearity": round(lengths[longest]["us_per_char"] / lengths["200"]["us_per_char"], 2),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
    }
    print(
        f"{args.events} events, one process: {result['events_per_cpu_s']} events per CPU s "
        f"({result['events_per_wall_s']} per wall s), {result['mean_ms_per_event']} ms/event"
    )
    print(f"{'chars':>6} {'ms':>9} {'us/char':>9}")
    for n, row in lengths.items():
        print(f"{n:>6} {row['ms']:9.3f} {row['us_per_char']:9.2f}")
    print(f"linearity (us/char at {longest} / at 200): {result['linearity']}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "classify.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
