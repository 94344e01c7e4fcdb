"""Every benchmark in turn, then one table: figure, baseline, ratio, goal, met.

    python bench/run_all.py [--quick] [--only NAME ...] [--skip NAME ...] [--timeout S]

Each benchmark runs as its own subprocess with its own flags (so its process and
memory figures stay its own), prints as it goes and writes its result JSON; this
script then reads those files and prints the summary, with the machine it ran on,
and writes it to summary.json beside them. `--quick` runs small sizes (a few
minutes in all) and writes to bench/results/quick/ (env BENCH_RESULTS_DIR), so the
full-size figures in bench/results/ are not overwritten by smaller runs.

A benchmark that fails (service missing, crash, timeout, no result file) is shown
as FAILED with its last output line; the others still run and the exit status is 1.
A goal that is not met is reported, not an error.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"

Row = tuple[str, str, str, str, str, bool | None]
"""(figure, value, baseline, ratio, goal, met); met None = no goal."""
FIELDS = ("figure", "value", "baseline", "ratio", "goal", "met")


@dataclass(frozen=True)
class Bench:
    name: str
    result: str  # the JSON file the script writes
    full: tuple[str, ...]  # one "script --flags" per run, in bench/
    quick: tuple[str, ...]
    rows: Callable[[dict[str, Any]], list[Row]]


# --- figures of each result file ----------------------------------------------------


def sentiment_rows(r: dict[str, Any]) -> list[Row]:
    ref, fast = r["snownlp"], r["fast"]
    speed, rss, delta = r["speed_ratio_per_message"], r["peak_rss_ratio"], r["max_abs_delta"]
    per_char = r["speed_ratio_per_char"].values()
    return [
        (
            "ms per message",
            f"{fast['per_message_ms']:.3f}",
            f"snownlp {ref['per_message_ms']:.3f}",
            f"{speed:.1f}x faster",
            "≥ 5x",
            speed >= 5,
        ),
        (
            "speed per char (by length)",
            "",
            "snownlp",
            f"{min(per_char):.1f}-{max(per_char):.1f}x",
            "≥ 5x",
            min(per_char) >= 5,
        ),
        (
            "peak RSS MB",
            f"{fast['peak_rss_mb']:.0f}",
            f"snownlp {ref['peak_rss_mb']:.0f}",
            f"1/{rss:.1f}",
            "≤ 1/3",
            rss >= 3,
        ),
        ("max |Δ score|", f"{delta:.2g}", "snownlp", "", "identical", delta == 0),
    ]


def classify_rows(r: dict[str, Any]) -> list[Row]:
    lengths = r["per_length"]
    longest = max(lengths, key=int)
    per_char = " / ".join(f"{v['us_per_char']:.1f}" for v in lengths.values())
    return [
        (
            "events per core (CPU s)",
            f"{r['events_per_cpu_s']}/s",
            f"wall {r['events_per_wall_s']}/s",
            "",
            "≥ 400/s",
            r["events_per_cpu_s"] >= 400,
        ),
        (
            f"µs/char at {'/'.join(lengths)} chars",
            per_char,
            "at 200 chars",
            f"{longest}÷200: {r['linearity']:.2f}",
            "≤ 1.5 (linear)",
            r["linearity"] <= 1.5,
        ),
    ]


def eval_rows(r: dict[str, Any]) -> list[Row]:
    t = r["test"]
    u, s = t["urgency"], t["sentiment"]["financial"]
    return [
        (
            f"urgency macro-F1 (test, n={t['n']})",
            f"{u['macro_f1']:.3f}",
            "",
            "",
            "≥ 0.85",
            u["macro_f1"] >= 0.85,
        ),
        (
            "urgent recall (test)",
            f"{u['urgent_recall']:.3f}",
            "",
            "",
            "≥ 0.95",
            u["urgent_recall"] >= 0.95,
        ),
        ("kind accuracy (test)", f"{t['kind']['accuracy']:.3f}", "", "", "", None),
        (
            "sentiment balanced acc. (test)",
            f"{s['ours_band']:.3f}",
            f"snownlp {s['snownlp_band']:.3f}",
            f"{s['ours_band'] / s['snownlp_band']:.2f}x",
            "> snownlp",
            s["ours_band"] > s["snownlp_band"],
        ),
    ]


def pipeline_rows(r: dict[str, Any]) -> list[Row]:
    return [
        (
            f"end to end events/s (n={r['events']})",
            f"{r['pipeline_events_per_s']}",
            f"raw aio-pika {r['raw_amqp_events_per_s']}",
            f"{r['ratio']:.3f}",
            "≥ 0.5",
            r["ratio"] >= 0.5,
        )
    ]


def urgent_rows(r: dict[str, Any]) -> list[Row]:
    return [
        (
            "urgent ingress → feed",
            f"p99 {r['latency_p99_s']} s (p50 {r['latency_p50_s']})",
            f"{r['backlog_general']} general queued",
            "",
            "p99 < 2 s",
            r["latency_p99_s"] < 2,
        )
    ]


def webhook_rows(r: dict[str, Any]) -> list[Row]:
    return [
        (
            f"answer time, {r['concurrency']} concurrent",
            f"p99 {r['p99_ms']} ms, {r['requests_per_s']} req/s",
            f"{r['failures']} failures",
            "",
            "p99 < 2 s, 0 failed",
            r["p99_ms"] < 2000 and r["failures"] == 0,
        )
    ]


def desk_rows(r: dict[str, Any]) -> list[Row]:
    return [
        (
            f"all API calls, {feed} feed",
            f"p99 {d['api_all']['p99_ms']} ms",
            f"{d['writer']['rate_per_sec']} records/s written",
            "",
            "0 errors",
            d["errors"] == 0,
        )
        for feed in ("redis", "sqlite")
        if (d := r.get(feed))
    ]


def imap_rows(r: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    if "to_rabbitmq" in r:
        x = r["to_rabbitmq"]
        rows.append(
            ("mails/s → RabbitMQ", f"{x['mails_per_sec']}", f"{r['mails']} mails", "", "", None)
        )
    if "embedded" in r:
        x = r["embedded"]
        rows.append(
            (
                "mails/s → embedded, stored",
                f"{x['mails_per_sec']}",
                f"{x['stored']} stored",
                "",
                "",
                None,
            )
        )
    return rows


def reviews_rows(r: dict[str, Any]) -> list[Row]:
    rows: list[Row] = [
        (
            f"reviews/s → RabbitMQ, {x['store'].split()[0]}",
            f"{x['reviews_per_sec']}",
            f"{r['reviews']} reviews",
            "",
            "",
            None,
        )
        for x in r.get("to_rabbitmq", [])
    ]
    if e := r.get("embedded_google_play"):
        rows.append(
            (
                "reviews/s → embedded (google_play)",
                f"{e['reviews_per_sec']}",
                f"{e['stored']} stored",
                "",
                "",
                None,
            )
        )
    return rows


def memory_rows(r: dict[str, Any]) -> list[Row]:
    base = r["baseline_import_mb"]
    return [
        (
            f"RSS {role}",
            f"idle {idle}, load {r['under_load_peak_mb'][role]} MB",
            f"bare import {base} MB",
            f"{idle / base:.1f}x idle",
            "",
            None,
        )
        for role, idle in r["idle_mb"].items()
    ]


BENCHES = (
    Bench(
        "sentiment",
        "sentiment.json",
        ("sentiment.py",),
        ("sentiment.py --repeat 1",),
        sentiment_rows,
    ),
    Bench(
        "classify",
        "classify.json",
        ("classify.py",),
        ("classify.py --events 500 --repeat 3",),
        classify_rows,
    ),
    Bench(
        "eval",
        "eval.json",
        ("eval_classify.py --split test",),
        ("eval_classify.py --split test --no-public",),
        eval_rows,
    ),
    Bench(
        "pipeline",
        "pipeline.json",
        ("pipeline.py --events 3000",),
        ("pipeline.py --events 300",),
        pipeline_rows,
    ),
    Bench(
        "urgent_lane",
        "urgent_lane.json",
        ("urgent_lane.py",),
        ("urgent_lane.py --backlog 2000 --urgent 20",),
        urgent_rows,
    ),
    Bench(
        "webhook_load",
        "webhook_load.json",
        ("webhook_load.py",),
        ("webhook_load.py --requests 300",),
        webhook_rows,
    ),
    Bench(
        "desk_load",
        "desk_load.json",
        ("desk_load.py --feed redis", "desk_load.py --feed sqlite"),
        ("desk_load.py --feed redis --seconds 12", "desk_load.py --feed sqlite --seconds 12"),
        desk_rows,
    ),
    Bench(
        "imap_backfill",
        "imap_backfill.json",
        ("imap_backfill.py --mails 10000",),
        ("imap_backfill.py --mails 500",),
        imap_rows,
    ),
    Bench(
        "reviews_backfill",
        "reviews_backfill.json",
        ("reviews_backfill.py",),
        ("reviews_backfill.py --reviews 1000",),
        reviews_rows,
    ),
    Bench("memory", "memory.json", ("memory.py",), ("memory.py --events 500",), memory_rows),
)


# --- running ----------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model or platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def run(argv: Sequence[str], env: dict[str, str], timeout: float) -> str:
    """Run `python bench/<argv>`, echoing its output; "" or what went wrong."""
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / argv[0]), *argv[1:]],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,  # its own process group: a timeout ends its children too
    )
    tail: collections.deque[str] = collections.deque(maxlen=1)

    def echo() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip():
                tail.append(line.strip())
                print(f"  | {line.rstrip()}", flush=True)

    reader = threading.Thread(target=echo, daemon=True)
    reader.start()
    try:
        status = proc.wait(timeout)
    except (subprocess.TimeoutExpired, KeyboardInterrupt) as exc:
        # SIGINT first: the benchmarks clean up (vhost, database, keys) in `finally`
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if isinstance(exc, KeyboardInterrupt):
            raise
        reader.join(5)
        return f"timed out after {timeout:.0f} s"
    reader.join(5)
    return f"exit {status}: {tail[-1] if tail else '(no output)'}" if status else ""


def run_bench(bench: Bench, quick: bool, out: Path, timeout: float) -> dict[str, Any]:
    started = time.time()
    commands = bench.quick if quick else bench.full
    env = {**os.environ, "BENCH_RESULTS_DIR": str(out), "PYTHONUNBUFFERED": "1"}
    entry: dict[str, Any] = {
        "name": bench.name,
        "commands": [f"python bench/{c}" for c in commands],
        "result_file": str(out / bench.result),
    }
    error = ""
    for command in commands:
        print(f"\n== {bench.name}: python bench/{command}", flush=True)
        error = run(command.split(), env, timeout)
        if error:
            break
    path = out / bench.result
    if not error and (not path.exists() or path.stat().st_mtime < started):
        error = f"no fresh {path.name} written"
    rows: list[Row] = []
    if not error:
        try:
            rows = bench.rows(json.loads(path.read_text("utf-8")))
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
            error = f"unreadable {path.name}: {type(exc).__name__}: {exc}"
    entry.update(
        status="failed" if error else "ok",
        error=error,
        duration_s=round(time.time() - started, 1),
        rows=[dict(zip(FIELDS, r, strict=True)) for r in rows],
    )
    return entry


def table(entries: list[dict[str, Any]]) -> str:
    head = ("benchmark", "figure", "value", "baseline", "ratio", "goal", "met")
    lines: list[tuple[str, ...]] = []
    for e in entries:
        if e["status"] == "failed":
            lines.append((e["name"], "FAILED", e["error"][:60], "", "", "", "FAILED"))
            continue
        for i, r in enumerate(e["rows"]):
            met = {True: "met", False: "NOT MET", None: "-"}[r["met"]]
            name = e["name"] if i == 0 else ""
            cells = (r["figure"], r["value"], r["baseline"], r["ratio"], r["goal"], met)
            lines.append((name, *cells))
    widths = [max(len(row[i]) for row in (head, *lines)) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    rule = "  ".join("-" * w for w in widths)
    body = [fmt.format(*row).rstrip() for row in lines]
    return "\n".join([fmt.format(*head).rstrip(), rule, *body])


def main() -> int:
    names = [b.name for b in BENCHES]
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, bench/results/quick/")
    for flag, what in (("--only", "only these, of: " + " ".join(names)), ("--skip", "not these")):
        parser.add_argument(flag, nargs="+", choices=names, metavar="NAME", default=[], help=what)
    parser.add_argument("--timeout", type=float, help="seconds per run (600 quick, 3600 full)")
    args = parser.parse_args()
    out = RESULTS / "quick" if args.quick else RESULTS
    out.mkdir(parents=True, exist_ok=True)
    timeout = args.timeout or (600.0 if args.quick else 3600.0)
    chosen = [
        b for b in BENCHES if (not args.only or b.name in args.only) and b.name not in args.skip
    ]
    host = machine()
    started = time.time()
    entries = [run_bench(b, args.quick, out, timeout) for b in chosen]
    duration = time.time() - started
    failed = [e["name"] for e in entries if e["status"] == "failed"]
    summary = {
        "started": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "duration_s": round(duration, 1),
        "machine": host,
        "failed": failed,
        "benchmarks": entries,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    print(
        f"\n{'quick' if args.quick else 'full'} run, {duration:.0f} s: {host['cpu']}, "
        f"{host['cores']} cores, Python {host['python']}, {host['platform']}, "
        f"load average at start {' '.join(map(str, host['load_avg_at_start']))}\n"
    )
    print(table(entries))
    for e in entries:
        if e["status"] == "failed":
            print(f"\nFAILED {e['name']}: {e['error']}")
    print(f"\nwrote {os.path.relpath(out / 'summary.json', ROOT)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
