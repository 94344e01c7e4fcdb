"""`feedback-ingest demo`: the whole pipeline embedded (in-memory bus, SQLite) over the
bundled sample feedback, then the prioritised feed as a table. What a newcomer sees first."""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

import orjson

from ingest.abc import FeedQuery
from ingest.codec import record_to_dict
from ingest.log import configure_logging
from ingest.render import feed_table
from ingest.settings import Settings, settings_from_dict

SAMPLES = Path(__file__).parent / "data" / "samples.jsonl"


def demo_settings(state_dir: Path, *, port: int = 8080) -> Settings:
    inbox = state_dir / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    return settings_from_dict(
        {
            "runtime": {"state_dir": str(state_dir)},
            "http": {"port": port},
            "log": {"level": "warning"},
            # A fixed key so the demo is reproducible; a real site sets its own secret.
            "classify": {"customer_ref_key": "demo-only-customer-ref-key"},
            "connectors": {
                "samples": {
                    "type": "file_drop",
                    "path": str(inbox),
                    "settle_secs": 0.0,
                    "poll_interval_secs": 2.0,
                }
            },
        }
    )


async def _demo(state_dir: Path, serve: bool, as_json: bool) -> int:
    from ingest.runtime.components import make_feed
    from ingest.runtime.supervisor import Worker

    settings = demo_settings(state_dir)
    shutil.copy(SAMPLES, state_dir / "inbox" / SAMPLES.name)
    configure_logging(settings.log.level, "console")
    print(
        f"feedback-ingest demo: {sum(1 for _ in SAMPLES.open(encoding='utf-8'))} sample items "
        "→ file_drop → in-memory bus → processors → SQLite feed + store",
        file=sys.stderr,
    )
    await Worker(settings, once=True).run()
    feed = make_feed(settings)
    await feed.start()
    try:
        records = await feed.top(FeedQuery(limit=1000))
        sizes = await feed.size()
    finally:
        await feed.close()
    if as_json:
        for r in records:
            sys.stdout.buffer.write(orjson.dumps(record_to_dict(r)) + b"\n")
    else:
        print(feed_table(records, settings.classify.timezone))
        print(
            f"\n{len(records)} open items: {sizes.get('urgent', 0)} urgent (24 h), "
            f"{sizes.get('important', 0)} important (48 h), "
            f"{sizes.get('general', 0)} general (72 h).  State: {state_dir}"
        )
    if serve:
        print(
            f"serving on http://{settings.http.host}:{settings.http.port} "
            "(/metrics, /healthz, /readyz); drop more files into "
            f"{state_dir / 'inbox'}; Ctrl-C to stop",
            file=sys.stderr,
        )
        await Worker(settings).run()
    return 0


def run_demo(*, serve: bool = False, state_dir: str | None = None, as_json: bool = False) -> int:
    if state_dir:
        path = Path(state_dir)
        path.mkdir(parents=True, exist_ok=True)
        return asyncio.run(_demo(path, serve, as_json))
    with tempfile.TemporaryDirectory(prefix="feedback-demo-") as tmp:
        return asyncio.run(_demo(Path(tmp), serve, as_json))
