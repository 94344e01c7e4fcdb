"""`feedback-ingest backfill` end to end, as an operator runs it: the CLI in its own
process, embedded (in-memory bus, SQLite), against a throwaway Dovecot and against the
local fakes of the app stores. Every item read is stored exactly once, a second run
reads nothing (the cursor), and `--since` bounds what is read (IMAP SEARCH SINCE; the
review stores stop paging at older reviews). `--from-scratch` reads everything again
without a second record of anything, and once interrupted it is resumed by a plain run.
Also: an embedded pass stopped by Ctrl-C still stores everything whose cursor it
committed."""

from __future__ import annotations

import asyncio
import io
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ingest.abc import Batch, PullConnector
from ingest.backfill import EMBEDDED_ROLES, Counts, Progress, backfill_settings
from ingest.runtime.supervisor import Worker
from ingest.settings import Settings, settings_from_dict
from tests.app_reviews_fakes import PACKAGE, FakeStores, Keys, google_item, running
from tests.dovecot import Dovecot, fixture_mails
from tests.integration.test_imap import require_dovecot, table
from tests.pipeline_helpers import cli_command, sqlite_store_rows

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
SUMMARY = re.compile(r"(\d+) fetched, (\d+) published, (\d+) skipped, (\d+) dead-lettered")
DAY = 86_400.0


def write_config(path: Path, state: Path, connector: str, fields: dict[str, Any]) -> Path:
    """A settings file (TOML, mode 600) with one connector; strings and numbers only."""
    lines = [
        "[runtime]",
        f'state_dir = "{state}"',
        "[classify]",
        "workers = 1",
        f"[connectors.{connector}]",
    ]
    for key, value in fields.items():
        lines.append(f"{key} = {value}" if isinstance(value, int | float) else f'{key} = "{value}"')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def play_options(fake: FakeStores, folder: Path, **extra: Any) -> dict[str, Any]:
    """A `google_play` connector against the fake, 20 reviews a page, its service-account
    key in a file under `folder` as deployed."""
    key = folder / "service-account.json"
    key.write_text(fake.keys.service_account_json(f"{fake.base}/token"), encoding="utf-8")
    return {
        "type": "google_play",
        "package_name": PACKAGE,
        "service_account_file": str(key),
        "api_base": fake.base,
        "page_size": 20,
        **extra,
    }


async def backfill(config: Path, *args: str) -> tuple[tuple[int, ...], str]:
    """Runs the CLI; (fetched, published, skipped, dead-lettered) and its stderr."""
    process = await asyncio.create_subprocess_exec(
        *cli_command("backfill", *args, "--config", str(config)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 90)
    assert process.returncode == 0, err.decode()[-2000:]
    found = SUMMARY.search(out.decode())
    assert found, out.decode()
    return tuple(int(n) for n in found.groups()), err.decode()


def embedded_settings(
    state: Path, connector: str, options: dict[str, Any], **runtime: Any
) -> Settings:
    """Embedded settings with one connector (for a Worker run in this process)."""
    return settings_from_dict(
        {
            "runtime": {"state_dir": str(state), **runtime},
            "classify": {"workers": 1},
            "log": {"level": "warning"},
            "connectors": {connector: options},
        }
    )


async def stopped_after_first_batch(
    settings: Settings, name: str, *, from_scratch: bool = False
) -> Counts:
    """An embedded `backfill NAME` stopped by a Ctrl-C right after its first batch was
    committed; what that batch held."""
    progress = Progress(io.StringIO(), tty=False)
    worker: Worker | None = None

    def stop_after_commit(connector: PullConnector, batch: Batch) -> None:
        progress(connector, batch)
        assert worker is not None
        worker.request_stop()  # what the SIGINT handler does

    worker = Worker(
        backfill_settings(settings, name, from_scratch=from_scratch),
        EMBEDDED_ROLES,
        once=True,
        http=False,
        observer=stop_after_commit,
        from_scratch=from_scratch,
    )
    await worker.run()
    assert worker.stop_requested
    return progress.counts[name]


@pytest.fixture
def dovecot() -> Any:
    require_dovecot()
    with Dovecot.start() as server:
        yield server


async def test_backfill_cli_stores_every_mail_once_and_since_bounds_it(
    dovecot: Dovecot, tmp_path: Path
) -> None:
    """300 real-shaped mails (GB charsets, HTML, attachments, replies; an auto-reply and a
    bounce among every 15), the first 120 received two years ago. `backfill kefu`: every
    customer mail stored once, the machine mail counted as skipped, a progress line on
    stderr; run again: nothing read. With a fresh state, `--since` a year ago stores only
    the 180 recent ones."""
    mails = fixture_mails(300, prefix="cli")
    now = time.time()
    received = [now - 730 * DAY + i if i < 120 else now - 3600 + i for i in range(len(mails))]
    dovecot.deliver([(raw, at) for (raw, _), at in zip(mails, received, strict=True)])
    customer = [f"cli-{i:06d}@bench.example" for i, (_, c) in enumerate(mails) if c]
    recent = [mid for mid in customer if int(mid[4:10]) >= 120]
    options = {**table(dovecot, batch_size=40), "type": "imap"}
    options.pop("poll_interval_secs")

    config = write_config(tmp_path / "a.toml", tmp_path / "a", "kefu", options)
    counts, stderr = await backfill(config, "kefu")
    assert counts == (300, len(customer), 300 - len(customer), 0)
    assert re.search(r"kefu \[#+\] 300/300 in, \d+ published", stderr), stderr[-1000:]
    natives, ingested, changed = sqlite_store_rows(tmp_path / "a")
    assert sorted(natives) == customer and ingested == len(customer) and changed == 0

    counts, _ = await backfill(config, "kefu")  # from the committed cursor: nothing new
    assert counts == (0, 0, 0, 0)
    assert sorted(sqlite_store_rows(tmp_path / "a")[0]) == customer

    since = datetime.fromtimestamp(now - 365 * DAY, UTC).date().isoformat()
    config = write_config(tmp_path / "b.toml", tmp_path / "b", "kefu", options)
    counts, _ = await backfill(config, "kefu", "--since", since)
    assert counts[1] == len(recent) and counts[0] == 180
    natives, ingested, _ = sqlite_store_rows(tmp_path / "b")
    assert sorted(natives) == recent and ingested == len(recent)


async def test_backfill_cli_reads_google_play_down_to_since_and_stops_paging(
    tmp_path: Path,
) -> None:
    """240 reviews six hours apart (60 days) in the Google Play fake, 20 per page.
    `backfill play --since <20 days ago>` with `backfill_days = 7`: since replaces the
    first poll's horizon, every review from that day on is stored once, paging stops at
    the first page reaching older reviews (not all 12 pages are asked for); run again
    without --since: the cursor covers everything, nothing is read."""
    fake = FakeStores(Keys.make())
    newest = datetime.now(UTC) - timedelta(hours=1)
    times = [newest - timedelta(hours=6 * i) for i in range(240)]
    fake.google = [google_item(f"gp:cli-{i:04d}", at, i) for i, at in enumerate(times)]
    since = (newest - timedelta(days=20)).date()
    floor = datetime(since.year, since.month, since.day, tzinfo=UTC)
    wanted = sorted(f"gp:cli-{i:04d}" for i, at in enumerate(times) if at >= floor)
    async with running(fake):
        options = play_options(fake, tmp_path, backfill_days=7)
        config = write_config(tmp_path / "c.toml", tmp_path / "s", "play", options)
        counts, _ = await backfill(config, "play", "--since", since.isoformat())
        pages = [p for _, p in fake.requests if "/reviews" in p]
        assert counts == (len(wanted), len(wanted), 0, 0)
        assert len(pages) == len(wanted) // 20 + 1 < 12, pages

        counts, _ = await backfill(config, "play")
        assert counts == (0, 0, 0, 0)
    natives, ingested, changed = sqlite_store_rows(tmp_path / "s")
    assert sorted(natives) == wanted and ingested == len(wanted) and changed == 0


async def test_backfill_from_scratch_rereads_every_mail_and_is_resumed_by_a_plain_run(
    dovecot: Dovecot, tmp_path: Path
) -> None:
    """120 mails, 40 per batch. A second plain run reads nothing; `--from-scratch` reads
    all 120 again and the store still holds one record per customer mail, none of them
    written twice (no new `ingested` audit row, no version 2). Then a from-scratch pass
    stopped after its first batch: its cursor replaced the stored one, so a plain run
    reads exactly the 80 mails it had not reached, and the next one nothing."""
    mails = fixture_mails(120, prefix="again")
    now = time.time()
    dovecot.deliver([(raw, now - 3600 + i) for i, (raw, _) in enumerate(mails)])
    customer = sorted(f"again-{i:06d}@bench.example" for i, (_, c) in enumerate(mails) if c)
    options = {**table(dovecot, batch_size=40), "type": "imap"}
    options.pop("poll_interval_secs")
    config = write_config(tmp_path / "a.toml", tmp_path / "a", "kefu", options)
    everything = (120, len(customer), 120 - len(customer), 0)

    assert (await backfill(config, "kefu"))[0] == everything
    assert (await backfill(config, "kefu"))[0] == (0, 0, 0, 0)
    assert (await backfill(config, "kefu", "--from-scratch"))[0] == everything
    natives, ingested, changed = sqlite_store_rows(tmp_path / "a")
    assert sorted(natives) == customer and ingested == len(customer) and changed == 0

    settings = embedded_settings(tmp_path / "a", "kefu", options)
    assert (await stopped_after_first_batch(settings, "kefu", from_scratch=True)).fetched == 40
    counts, _ = await backfill(config, "kefu")
    assert counts[0] == 80
    assert (await backfill(config, "kefu"))[0] == (0, 0, 0, 0)
    natives, ingested, changed = sqlite_store_rows(tmp_path / "a")
    assert sorted(natives) == customer and ingested == len(customer) and changed == 0


async def test_backfill_from_scratch_rereads_google_play_and_resumes_from_an_older_watermark(
    tmp_path: Path,
) -> None:
    """60 reviews six hours apart, 20 per page and per batch. The watermark makes a second
    plain run read nothing; `--from-scratch` reads all 60 again (back to `backfill_days`)
    and nothing is stored twice. A from-scratch pass stopped after its first batch leaves
    the watermark at the 20th oldest review, so a plain run reads the 40 newer ones."""
    fake = FakeStores(Keys.make())
    newest = datetime.now(UTC) - timedelta(hours=1)
    fake.google = [
        google_item(f"gp:again-{i:04d}", newest - timedelta(hours=6 * i), i) for i in range(60)
    ]
    wanted = sorted(f"gp:again-{i:04d}" for i in range(60))
    async with running(fake):
        options = play_options(fake, tmp_path, batch_size=20, backfill_days=30)
        config = write_config(tmp_path / "c.toml", tmp_path / "s", "play", options)
        assert (await backfill(config, "play"))[0] == (60, 60, 0, 0)
        assert (await backfill(config, "play"))[0] == (0, 0, 0, 0)
        assert (await backfill(config, "play", "--from-scratch"))[0] == (60, 60, 0, 0)
        natives, ingested, changed = sqlite_store_rows(tmp_path / "s")
        assert sorted(natives) == wanted and ingested == 60 and changed == 0

        settings = embedded_settings(tmp_path / "s", "play", options)
        first = await stopped_after_first_batch(settings, "play", from_scratch=True)
        assert first.fetched == 20
        assert (await backfill(config, "play"))[0] == (40, 40, 0, 0)
        assert (await backfill(config, "play"))[0] == (0, 0, 0, 0)
    natives, ingested, changed = sqlite_store_rows(tmp_path / "s")
    assert sorted(natives) == wanted and ingested == 60 and changed == 0


async def test_an_embedded_backfill_stopped_by_ctrl_c_still_stores_what_it_committed(
    dovecot: Dovecot, tmp_path: Path
) -> None:
    """SIGINT arrives right after the cursor of a 200-mail batch was committed, while the
    in-memory queues still hold most of it. The in-memory bus dies with the process, so
    the pass drains before it exits (within drain_timeout_secs): nothing committed is
    lost."""
    mails = fixture_mails(200, prefix="stop")
    now = time.time()
    dovecot.deliver([(raw, now - 600 + i) for i, (raw, _) in enumerate(mails)])
    options = {"type": "imap", **table(dovecot, batch_size=200)}
    settings = embedded_settings(tmp_path / "state", "kefu", options, drain_timeout_secs=60)
    published = (await stopped_after_first_batch(settings, "kefu")).published
    assert published == sum(c for _, c in mails)
    natives, ingested, _ = sqlite_store_rows(tmp_path / "state")
    assert len(natives) == ingested == published
