"""`feedback-ingest`: one command line for operators, desk tools and connector authors."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from ingest import __version__
from ingest.errors import ConfigError, TransientError
from ingest.log import configure_logging
from ingest.settings import Settings, load_settings

Handler = Callable[[argparse.Namespace], int]


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(getattr(args, "config", None))


def _run(args: argparse.Namespace) -> int:
    from ingest.backfill import Progress
    from ingest.runtime.supervisor import Worker

    settings = _settings(args)
    configure_logging(settings.log.level, settings.log.format)
    roles = [r.strip() for r in args.roles.split(",") if r.strip()]
    progress = Progress(sys.stderr) if args.once and sys.stderr.isatty() else None
    stats = asyncio.run(Worker(settings, roles, once=args.once, observer=progress).run())
    if progress is not None:
        progress.finish()
    if args.once:
        print(f"published {stats.published} events", file=sys.stderr)
    return 0


def _backfill(args: argparse.Namespace) -> int:
    from ingest.backfill import Progress, run_backfill

    settings = _settings(args)
    configure_logging("warning", settings.log.format)  # the progress line replaces info logs
    report = asyncio.run(
        run_backfill(
            settings,
            args.connector,
            args.since or "",
            Progress(sys.stderr),
            from_scratch=args.from_scratch,
        )
    )
    print(report.summary())
    return 130 if report.interrupted else 0


def _demo(args: argparse.Namespace) -> int:
    from ingest.demo import run_demo

    return run_demo(serve=args.serve, state_dir=args.state_dir, as_json=args.json)


def _classify(args: argparse.Namespace) -> int:
    from ingest.classify_cli import classify_stream

    settings = _settings(args)
    configure_logging("warning", settings.log.format)
    return classify_stream(
        settings, sys.stdin.buffer, sys.stdout.buffer, workers=args.workers, chunk_size=args.chunk
    )


def _feed(args: argparse.Namespace) -> int:
    from ingest.abc import FeedQuery
    from ingest.codec import record_to_dict
    from ingest.render import feed_table
    from ingest.runtime.components import make_feed

    settings = _settings(args)
    configure_logging("warning", settings.log.format)

    async def read() -> list[Any]:
        feed = make_feed(settings)
        await feed.start()
        try:
            return await feed.top(
                FeedQuery(limit=args.limit, urgency=args.level, channel=args.channel)
            )
        finally:
            await feed.close()

    records = asyncio.run(read())
    if args.json:
        for r in records:
            sys.stdout.buffer.write(orjson.dumps(record_to_dict(r)) + b"\n")
    else:
        print(feed_table(records, settings.classify.timezone))
    return 0


def _check(args: argparse.Namespace) -> int:
    from ingest.check import run_checks

    settings = _settings(args)
    configure_logging("warning", settings.log.format)
    return asyncio.run(run_checks(settings))


def _dead(args: argparse.Namespace) -> int:
    from ingest.dead import dead_list, dead_replay

    settings = _settings(args)
    configure_logging("warning", settings.log.format)
    if args.dead_command == "list":
        return asyncio.run(dead_list(settings, limit=args.limit, as_json=args.json))
    return asyncio.run(dead_replay(settings, ids=args.id or None, replay_all=args.all))


def _store(args: argparse.Namespace) -> int:
    from ingest import store_cli

    settings = _settings(args)
    configure_logging("warning", settings.log.format)
    if args.store_command == "purge":
        return asyncio.run(store_cli.purge(settings, args.older_than, args.dry_run, sys.stdout))
    if args.unmasked and not args.i_know:
        print(
            "feedback-ingest: --unmasked exports channel extras and raw payload references; "
            "add --i-know to confirm (every export is audited)",
            file=sys.stderr,
        )
        return 2
    return asyncio.run(
        store_cli.export(settings, args.format, args.since, args.unmasked, sys.stdout.buffer)
    )


def _desk(args: argparse.Namespace) -> int:
    from ingest.desk.auth import config_lines, new_token

    token = new_token()
    print(f"token for {args.name} ({args.role}), shown once; give it to them privately:")
    print(f"  {token}")
    print("add to the settings file (only the hash is kept):")
    print(config_lines(args.name, args.role, token), end="")
    return 0


def _parse(args: argparse.Namespace) -> int:
    from ingest import registry
    from ingest.codec import event_to_dict
    from ingest.options import parse_options

    cls = registry.connector_class(args.channel, key="CHANNEL")
    options: dict[str, Any] = {}
    for item in args.option or ():
        key, _, value = item.partition("=")
        options[key] = value
    example = cls.Options.example() if not options else parse_options(cls.Options, options)
    try:
        data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as exc:
        raise ConfigError("FILE", f"cannot read {args.file}: {exc.strerror}") from None
    events, bad = cls.parse_payload(data, example)
    for event in events:
        sys.stdout.buffer.write(orjson.dumps(event_to_dict(event)) + b"\n")
    for item in bad:
        print(f"bad input {item.ref}: {item.reason}", file=sys.stderr)
    return 1 if bad and not events else 0


def _plugins(_: argparse.Namespace) -> int:
    from ingest import registry

    builtin = registry.CONNECTORS
    for name, target in sorted(registry.connector_types().items()):
        origin = "built-in" if name in builtin else "plugin"
        try:
            cls = registry.import_string(target)
            description = f"{cls.mode:4}  {cls.description}"
        except Exception as exc:
            description = f"cannot import: {exc}"
        print(f"{name:20} {origin:8} {description}")
    return 0


def _config(args: argparse.Namespace) -> int:
    from ingest.runtime.components import make_connectors

    if args.config_command == "example":
        print((Path(__file__).parent / "data" / "example.toml").read_text(encoding="utf-8"), end="")
        return 0
    settings = load_settings(args.file)
    make_connectors(settings)  # validates each connector's own options
    from ingest.classify import Chain, ChainSpec

    Chain(ChainSpec.from_settings(settings.classify))
    print(
        f"{args.file}: ok ({len(settings.connectors)} connectors, "
        f"{'embedded' if settings.embedded else 'broker'} mode)"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="feedback-ingest",
        description="Customer feedback from every channel, most pressing complaint first.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, handler: Handler, help_text: str, config: bool = True
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        if config:
            p.add_argument(
                "--config",
                help="TOML settings file (default: $FEEDBACK_CONFIG, else embedded defaults)",
            )
        p.set_defaults(handler=handler)
        return p

    p = command("run", _run, "run the worker: any combination of roles in one process")
    p.add_argument(
        "--roles",
        default="connectors,processors,sinks,desk",
        help="comma-separated: connectors, processors, sinks, desk (default: all)",
    )
    p.add_argument(
        "--once",
        action="store_true",
        help="one pass of every pull connector, drain the pipeline, exit 0",
    )

    p = command(
        "backfill",
        _backfill,
        "read one pull connector once from its cursor (publish with confirms, commit), "
        "with progress; embedded, until everything read is stored",
    )
    p.add_argument("connector", metavar="CONNECTOR", help="its name: [connectors.CONNECTOR]")
    p.add_argument(
        "--since",
        metavar="YYYY-MM-DD",
        help="only items on or after that day (imap: SEARCH SINCE; app reviews: stop paging "
        "at older reviews); never rewinds the cursor",
    )
    p.add_argument(
        "--from-scratch",
        action="store_true",
        help="ignore the stored cursor and read again as far back as a first run (after a "
        "rules change or a wiped store); same ids, so the sinks upsert: an unchanged record "
        "is not written again, a reclassified one is updated in place. Commits the cursor "
        "per batch as usual: if interrupted, the command without --from-scratch resumes "
        "from the last committed batch",
    )

    p = command(
        "demo",
        _demo,
        "run everything embedded on bundled sample feedback and print the prioritised feed",
        config=False,
    )
    p.add_argument("--serve", action="store_true", help="keep the worker and its HTTP server up")
    p.add_argument("--state-dir", help="keep the demo's state here (default: a temporary dir)")
    p.add_argument("--json", action="store_true", help="records as JSON lines")

    p = command(
        "classify",
        _classify,
        "classify events read as JSON lines on stdin; one record per line on stdout",
    )
    p.add_argument("--workers", type=int, default=0, help="processes (default: one per core)")
    p.add_argument("--chunk", type=int, default=64, help="lines per work unit")

    p = command("feed", _feed, "the open feed in priority order")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--level", choices=("urgent", "important", "general"))
    p.add_argument("--channel")
    p.add_argument("--json", action="store_true")

    command("check", _check, "test every configured connection and connector")

    p = command("dead", _dead, "inspect and replay the parking lot (feedback.dead)")
    dead_sub = p.add_subparsers(dest="dead_command", required=True, metavar="ACTION")
    dl = dead_sub.add_parser("list", help="show parked messages with their reasons")
    dr = dead_sub.add_parser("replay", help="send parked messages back where they failed")
    for action in (dl, dr):  # accepted after the action too; SUPPRESS keeps an earlier one
        action.add_argument("--config", default=argparse.SUPPRESS, help="TOML settings file")
    dl.add_argument("--limit", type=int, default=100)
    dl.add_argument("--json", action="store_true")
    dr.add_argument("--id", action="append", help="x-feedback-id or message number to replay")
    dr.add_argument("--all", action="store_true", help="replay every parked message")

    p = command("store", _store, "retention and export of the SQL store")
    store_sub = p.add_subparsers(dest="store_command", required=True, metavar="ACTION")
    sp = store_sub.add_parser("purge", help="delete records older than AGE (at least 3 years)")
    se = store_sub.add_parser("export", help="stream records as CSV or JSON Lines, masked")
    for action in (sp, se):
        action.add_argument("--config", default=argparse.SUPPRESS, help="TOML settings file")
    sp.add_argument("--older-than", required=True, metavar="AGE", help="e.g. 3y or 1200d")
    sp.add_argument("--dry-run", action="store_true", help="count what would go, delete nothing")
    se.add_argument("--format", choices=("csv", "jsonl"), default="jsonl")
    se.add_argument("--since", help="records received from this date or ISO 8601 time on")
    se.add_argument("--unmasked", action="store_true", help="add meta and raw_ref (needs --i-know)")
    se.add_argument("--i-know", action="store_true", help="confirm an unmasked export")

    p = command("desk", _desk, "complaint desk administration", config=False)
    desk_sub = p.add_subparsers(dest="desk_command", required=True, metavar="ACTION")
    dt = desk_sub.add_parser("token", help="make a bearer token and print its config lines")
    dt.add_argument("--role", required=True, choices=("viewer", "agent", "supervisor"))
    dt.add_argument("--name", required=True, help="who it is for (the owner name on claims)")

    p = command("parse", _parse, "run a connector's pure parser on a saved payload", config=False)
    p.add_argument("channel", metavar="CHANNEL", help="connector type, e.g. file_drop")
    p.add_argument("file", metavar="FILE", help="the saved payload; - reads stdin")
    p.add_argument("-o", "--option", action="append", help="connector option key=value")

    command(
        "plugins", _plugins, "list connector types (built-in and installed plugins)", config=False
    )

    p = command("config", _config, "validate a settings file or print an example", config=False)
    cfg_sub = p.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    cv = cfg_sub.add_parser("validate", help="check a settings file")
    cv.add_argument("file")
    cfg_sub.add_parser("example", help="print an example settings file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
        return code
    except ConfigError as exc:
        print(f"feedback-ingest: configuration error: {exc}", file=sys.stderr)
        return 2
    except TransientError as exc:
        print(f"feedback-ingest: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
