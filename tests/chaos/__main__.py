"""`python -m tests.chaos --events 100000`: the full local chaos run.

Prints the seed (pass `--seed` to replay the same fault schedule), each fault as it
happens, the accounting table, and exits 1 on any loss, duplicate, stuck message,
unexpectedly parked input or worker crash. `--json FILE` writes the measured numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import orjson

from tests.chaos.harness import Options, Result, run_chaos


def print_result(result: Result) -> None:
    print()
    print(
        f"mode {result.mode}, seed {result.seed}, {result.duration_secs:.0f}s "
        f"(feeding {result.feed_secs:.0f}s, settling {result.drain_secs:.0f}s)"
    )
    print("faults injected: " + ", ".join(f"{k} x{v}" for k, v in sorted(result.faults.items())))
    print(result.report.table())
    if result.sent is not None and result.sent.retries:
        print(
            f"webhook retries: {dict(result.sent.retries)}; longest until answered: "
            f"{ {k: round(v, 1) for k, v in result.sent.max_retry_secs.items()} }s"
        )
    for kind, examples in result.report.examples.items():
        for example in examples:
            print(f"  {kind}: {example}")
    for note in result.notes:
        print(f"note: {note}")
    for crash in result.crashes:
        print(f"CRASH: {crash}")
    print("PASS" if result.ok else f"FAIL: {', '.join(result.report.failures) or 'crashes'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--rate", type=float, default=400.0, help="events/s the generator offers")
    parser.add_argument("--embedded", action="store_true", help="embedded mode (SQLite, disk full)")
    parser.add_argument(
        "--gap",
        type=float,
        nargs=2,
        default=(4.0, 12.0),
        metavar=("MIN", "MAX"),
        help="seconds between faults",
    )
    parser.add_argument(
        "--faults", nargs="+", default=(), help="only these fault kinds (to chase a failure)"
    )
    parser.add_argument("--settle-timeout", type=float, default=600.0)
    parser.add_argument(
        "--json", type=Path, help="write the result here (bench/results/chaos.json)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the run's directory and logs")
    args = parser.parse_args(argv)
    options = Options(
        events=args.events,
        seed=args.seed,
        embedded=args.embedded,
        rate_per_sec=args.rate,
        fault_gap_secs=tuple(args.gap),
        settle_timeout_secs=args.settle_timeout,
        keep=args.keep,
        faults=tuple(args.faults),
        log=lambda line: print(line, flush=True),
    )
    result = asyncio.run(run_chaos(options))
    print_result(result)
    if args.json is not None:
        doc = {"run_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **result.as_dict()}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
