"""snownlp's sentiment score vs processors.fast_snownlp.FastSentiment, same inputs.

    python bench/sentiment.py [--repeat 3]

Each implementation runs in its own subprocess so that peak RSS
(resource.getrusage ru_maxrss) is its own: model loading included, the same
per-message inputs (every text in ingest/data/samples.jsonl, incl. call turns) and
per-length inputs (50 / 500 / 5000 characters cut from the joined samples).
Scores are compared too (max |Δ|). Absolute times on shared machines are noisy:
read the ratios. Writes bench/results/sentiment.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SAMPLES = ROOT / "ingest" / "data" / "samples.jsonl"
RESULTS = Path(os.environ.get("BENCH_RESULTS_DIR") or ROOT / "bench" / "results") / "sentiment.json"
LENGTHS = (50, 500, 5000)


def sample_texts() -> list[str]:
    texts: list[str] = []
    for line in SAMPLES.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        if rec.get("text"):
            texts.append(rec["text"])
        texts.extend(t["text"] for t in rec.get("turns") or [] if t.get("text"))
    return texts


def worker(impl: str, repeat: int, cache_dir: str | None = None) -> dict[str, Any]:
    """Load `impl`, time it, report scores and this process's peak RSS."""
    texts = sample_texts()
    joined = "".join(texts)
    sized = {n: (joined * (n // len(joined) + 1))[:n] for n in LENGTHS}
    t0 = time.perf_counter()
    if impl == "snownlp":
        from snownlp import SnowNLP, sentiment

        def score(text: str) -> float:
            if not text:  # SnowNLP("") raises in its BM25 constructor
                return float(sentiment.classify(text))
            return float(SnowNLP(text).sentiments)

        score("加载")
    else:
        from processors.fast_snownlp import FastSentiment

        fs = FastSentiment(cache_dir=cache_dir)
        score = fs.score
        score("加载")
    load_s = time.perf_counter() - t0
    best = float("inf")
    scores: list[float] = []
    for _ in range(repeat):
        t = time.perf_counter()
        scores = [score(x) for x in texts]
        best = min(best, time.perf_counter() - t)
    per_len: dict[str, float] = {}
    for n, text in sized.items():
        reps = max(1, repeat if n <= 500 else 1)
        b = float("inf")
        for _ in range(reps):
            t = time.perf_counter()
            score(text)
            b = min(b, time.perf_counter() - t)
        per_len[str(n)] = b
    return {
        "impl": impl,
        "load_s": load_s,
        "messages": len(texts),
        "mean_chars": sum(map(len, texts)) / len(texts),
        "per_message_ms": best / len(texts) * 1e3,
        "per_length_ms": {k: v * 1e3 for k, v in per_len.items()},
        "per_char_us": {k: v * 1e6 / int(k) for k, v in per_len.items()},
        "scores": scores,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run(impl: str, repeat: int, cache_dir: str | None = None) -> dict[str, Any]:
    extra = ["--cache-dir", cache_dir] if cache_dir else []
    out = subprocess.run(
        [sys.executable, __file__, "--worker", impl, "--repeat", str(repeat), *extra],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--worker", choices=["snownlp", "fast"])
    ap.add_argument("--cache-dir")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.repeat, args.cache_dir)))
        return
    ref = run("snownlp", args.repeat)
    fast = run("fast", args.repeat)
    with tempfile.TemporaryDirectory() as tmp:
        run("fast", 1, tmp)  # fills the cache
        cached = run("fast", args.repeat, tmp)
    max_delta = max(abs(a - b) for a, b in zip(ref["scores"], fast["scores"], strict=True))
    speed = ref["per_message_ms"] / fast["per_message_ms"]
    rss = ref["peak_rss_mb"] / fast["peak_rss_mb"]
    print(f"{ref['messages']} messages, mean {ref['mean_chars']:.0f} chars")
    print(f"{'':>12} {'snownlp':>10} {'fast':>10} {'ratio':>8}")
    print(
        f"{'ms/message':>12} {ref['per_message_ms']:10.3f} {fast['per_message_ms']:10.3f}"
        f" {speed:7.1f}x"
    )
    for n in LENGTHS:
        r, f = ref["per_char_us"][str(n)], fast["per_char_us"][str(n)]
        print(f"{f'us/char@{n}':>12} {r:10.2f} {f:10.2f} {r / f:7.1f}x")
    print(f"{'load s':>12} {ref['load_s']:10.2f} {fast['load_s']:10.2f}")
    print(f"{'peak RSS MB':>12} {ref['peak_rss_mb']:10.1f} {fast['peak_rss_mb']:10.1f} {rss:7.1f}x")
    print(
        f"fast with cache_dir (warm): load {cached['load_s']:.2f} s, "
        f"peak RSS {cached['peak_rss_mb']:.1f} MB, {cached['per_message_ms']:.3f} ms/message"
    )
    print(
        "(fast without cache builds its arrays in a short-lived child process whose own"
        " ~400 MB peak is not in the figure above)"
    )
    print(f"max |Δ| score: {max_delta:.3g}")
    assert cached["scores"] == fast["scores"]
    for r in (ref, fast, cached):
        r.pop("scores")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "python": platform.python_version(),
                "machine": platform.machine(),
                "snownlp": ref,
                "fast": fast,
                "fast_cached": cached,
                "speed_ratio_per_message": speed,
                "speed_ratio_per_char": {
                    str(n): ref["per_char_us"][str(n)] / fast["per_char_us"][str(n)]
                    for n in LENGTHS
                },
                "peak_rss_ratio": rss,
                "max_abs_delta": max_delta,
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    print(f"wrote {os.path.relpath(RESULTS, ROOT)}")


if __name__ == "__main__":
    main()
