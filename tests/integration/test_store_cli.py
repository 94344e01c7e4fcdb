"""`feedback-ingest store purge|export` as an operator runs them, on PostgreSQL and
SQLite: retention refused inside 3 years, dry run, masked and unmasked exports in
both formats, each export audited."""

# ruff: noqa: F811 - the store fixtures are imported from test_sinks and used as parameters

from __future__ import annotations

import csv
import io
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from tests.integration.test_sinks import (  # noqa: F401
    StoreHarness,
    make_record,
    pg_schema_url,
    store_env,
    store_url,
)
from tests.pipeline_helpers import cli_command

pytestmark = pytest.mark.integration

OLD = datetime(2019, 5, 1, tzinfo=UTC)


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        cli_command("store", *args, "--config", str(config)),
        capture_output=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
async def seeded(store_env: StoreHarness, tmp_path: Path) -> tuple[StoreHarness, Path]:
    """3 records from 2019, 2 recent ones; a config file pointing at the store."""
    store = await store_env.open()
    recent = datetime.now(UTC) - timedelta(days=10)
    await store.write(
        [make_record(n, received_at=OLD + timedelta(hours=n)) for n in range(3)]
        + [make_record(n, received_at=recent + timedelta(hours=n)) for n in (3, 4)]
    )
    await store.close()
    config = tmp_path / "feedback.toml"
    config.write_text(
        f'[runtime]\nstate_dir = "{tmp_path / "state"}"\n[store]\nurl = "{store_env.url}"\n',
        encoding="utf-8",
    )
    config.chmod(0o600)
    return store_env, config


async def test_purge_refuses_inside_retention_then_purges_old_records(
    seeded: tuple[StoreHarness, Path],
) -> None:
    env, config = seeded

    refused = cli(config, "purge", "--older-than", "2y")
    assert refused.returncode == 2, refused.stderr.decode()
    assert b"3 years" in refused.stderr
    dry = cli(config, "purge", "--older-than", "3y", "--dry-run")
    assert dry.returncode == 0 and dry.stdout.startswith(b"would purge 3 records")
    assert await env.sql("SELECT count(*) FROM feedback_records") == [(5,)]
    bad = cli(config, "purge", "--older-than", "3 years")
    assert bad.returncode == 2 and b"--older-than" in bad.stderr

    done = cli(config, "purge", "--older-than", "3y")

    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.startswith(b"purged 3 records")
    assert await env.sql("SELECT count(*) FROM feedback_records") == [(2,)]
    assert len(await env.sql("SELECT id FROM feedback_audit WHERE action = ?", "purged")) == 1


async def test_export_jsonl_is_masked_by_default_and_audited(
    seeded: tuple[StoreHarness, Path],
) -> None:
    env, config = seeded

    result = cli(config, "export", "--format", "jsonl")

    assert result.returncode == 0, result.stderr.decode()
    rows = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [r["id"] for r in rows] == [make_record(n).id for n in range(5)]
    assert all("meta" not in r and "raw_ref" not in r for r in rows)
    assert rows[0]["author"] == "nick***" and rows[0]["pii_found"] == ["card", "mobile"]
    assert b"exported 5 records" in result.stderr
    [(actor, detail)] = await env.sql(
        "SELECT actor, detail FROM feedback_audit WHERE action = ?", "exported"
    )
    assert actor.startswith("cli")
    assert '"jsonl"' in str(detail)

    since = cli(
        config, "export", "--since", (datetime.now(UTC) - timedelta(days=30)).date().isoformat()
    )
    assert [orjson.loads(line)["id"] for line in since.stdout.splitlines()] == [
        make_record(3).id,
        make_record(4).id,
    ]


async def test_export_csv_opens_in_excel_and_unmasked_needs_i_know(
    seeded: tuple[StoreHarness, Path],
) -> None:
    env, config = seeded

    masked = cli(config, "export", "--format", "csv")
    assert masked.returncode == 0, masked.stderr.decode()
    assert masked.stdout.startswith("\ufeff".encode())
    table = list(csv.DictReader(io.StringIO(masked.stdout.decode("utf-8-sig"))))
    assert len(table) == 5 and "meta" not in table[0]
    assert table[0]["text"] == make_record(0).text
    assert orjson.loads(table[0]["reasons"])[0]["signal"] == "keyword"
    assert table[0]["satisfaction"] == "" and table[0]["received_at"] == OLD.isoformat()

    refused = cli(config, "export", "--format", "csv", "--unmasked")
    assert refused.returncode == 2 and refused.stdout == b""
    assert b"--i-know" in refused.stderr

    full = cli(config, "export", "--format", "csv", "--unmasked", "--i-know")
    assert full.returncode == 0, full.stderr.decode()
    table = list(csv.DictReader(io.StringIO(full.stdout.decode("utf-8-sig"))))
    assert orjson.loads(table[0]["meta"]) == make_record(0).meta
    assert table[0]["raw_ref"] == make_record(0).raw_ref
    actions = [a for (a,) in await env.sql("SELECT action FROM feedback_audit ORDER BY id")]
    assert actions.count("exported") == 1 and actions.count("exported_unmasked") == 1
