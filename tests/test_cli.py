"""The command line as a newcomer and an operator use it (embedded: no services)."""

from __future__ import annotations

from pathlib import Path

import orjson

from tests.pipeline_helpers import SAMPLES, run_cli

LEVEL_ORDER = {"urgent": 0, "important": 1, "general": 2}


def test_demo_prints_urgent_then_important_then_general(tmp_path: Path) -> None:
    """The README's demo: every sample in the feed, ordered by level then due time,
    each with a due time and reasons, and no unmasked mobile number on screen."""
    table = run_cli("demo", "--state-dir", str(tmp_path / "t"))
    assert table.returncode == 0, table.stderr.decode()
    text = table.stdout.decode()
    assert "紧急 urgent" in text and "重要 important" in text and "一般 general" in text
    assert text.index("紧急 urgent") < text.index("重要 important") < text.index("一般 general")

    result = run_cli("demo", "--json", "--state-dir", str(tmp_path / "j"))
    assert result.returncode == 0, result.stderr.decode()
    records = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == sum(1 for line in SAMPLES.read_bytes().splitlines() if line.strip())
    keys = [(LEVEL_ORDER[r["urgency"]], r["due_at"]) for r in records]
    assert keys == sorted(keys)
    assert all(r["due_at"] and r["reasons"] for r in records)
    assert any(r["pii_found"] for r in records)
    for r in records:
        assert "13800138000" not in r["text"]


def test_classify_streams_records_in_order_and_reports_bad_lines() -> None:
    lines = [
        orjson.dumps({"text": "我的信用卡被盗刷了，赶紧冻结！", "rating": 1}),
        b"{broken",
        orjson.dumps({"text": "请问信用卡年费怎么收取？", "channel": "wechat", "id": "q1"}),
        orjson.dumps({"text": 42}),
    ]
    result = run_cli("classify", "--workers", "1", stdin=b"\n".join(lines) + b"\n")
    assert result.returncode == 0, result.stderr.decode()
    out = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert len(out) == 4
    assert out[0]["urgency"] == "urgent" and 0 <= out[0]["sentiment"]["snownlp"] <= 1
    assert set(out[0]["sentiment"]) == {"snownlp", "score", "label"}
    assert out[1]["kind"] == "bad_json" and out[1]["line"] == 2
    assert out[2]["id"] == "q1" and out[2]["channel"] == "wechat"
    assert out[3]["kind"] == "bad_schema"


def test_config_validate_names_the_bad_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[connectors.forms]\ntype = "file_drop"\npath = "/x"\nsettle_sec = 1\n', encoding="utf-8"
    )
    result = run_cli("config", "validate", str(bad))
    assert result.returncode == 2
    assert "connectors.forms.settle_sec" in result.stderr.decode()
    assert 'did you mean "settle_secs"' in result.stderr.decode()


def test_config_example_is_valid(tmp_path: Path) -> None:
    example = run_cli("config", "example").stdout
    path = tmp_path / "example.toml"
    path.write_bytes(example)
    result = run_cli("config", "validate", str(path))
    assert result.returncode == 0, result.stderr.decode()


def test_plugins_lists_built_in_connectors() -> None:
    result = run_cli("plugins")
    assert result.returncode == 0 and "file_drop" in result.stdout.decode()


def test_parse_runs_a_connectors_pure_parser(tmp_path: Path) -> None:
    export = tmp_path / "export.jsonl"
    export.write_bytes(orjson.dumps({"text": "转账失败但是钱被扣了"}) + b"\n{bad\n")
    result = run_cli("parse", "file_drop", str(export))
    assert result.returncode == 0
    events = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [e["text"] for e in events] == ["转账失败但是钱被扣了"]
    assert "bad input" in result.stderr.decode()


def test_check_fails_cleanly_on_a_missing_folder(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        f'[runtime]\nstate_dir = "{tmp_path / "s"}"\n[connectors.forms]\n'
        f'type = "file_drop"\npath = "{tmp_path / "nope" / "deeper"}"\n',
        encoding="utf-8",
    )
    config.chmod(0o600)
    result = run_cli("check", "--config", str(config))
    assert result.returncode != 0
    assert "FAIL  connector forms" in result.stdout.decode()
    assert "ok    bus (embedded)" in result.stdout.decode()
