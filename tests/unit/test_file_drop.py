"""file_drop: the pure parsers on real-shaped exports, and the connector on a real folder."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import os
import time
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import connectors.file_drop
from connectors.file_drop.config import FileDropOptions
from connectors.file_drop.connector import FileDropConnector, read_lines
from connectors.file_drop.parse import (
    Oversized,
    detect_csv_encoding,
    parse_csv,
    parse_jsonl,
)
from ingest import dropfolder
from ingest.abc import BadInput, Batch
from ingest.codec import MAX_TEXT_CHARS, decode_event, encode_event
from ingest.errors import ConfigError
from ingest.model import FeedbackEvent
from ingest.options import options_to_table, parse_options
from ingest.registry import connector_class
from ingest.testing import ConnectorContract

MTIME = datetime(2024, 3, 2, 8, 0, tzinfo=UTC)

# A web-form export of complaints, as the form system writes it (ids, local times).
JSONL_WITH_IDS = (
    '{"feedback_id": "FB20240301000123",'
    ' "text": "信用卡在境外被盗刷三笔，已经挂失，要求尽快退款！",'
    ' "rating": 1, "author": "13800138000", "received_at": "2024-03-01 09:15:22",'
    ' "form": "信用卡投诉", "branch": "上海分行"}\n'
    '{"feedback_id": 20240301000124, "text": "手机银行转账一直提示系统繁忙，工资发不出去",'
    ' "rating": "2", "author": 13900139000, "received_at": "2024-03-01T10:02:00+08:00"}\n'
    "\n"
    '{"feedback_id": "FB20240301000125", "text": "理财经理推荐的产品风险等级与我的评估不符",'
    ' "channel": "questionnaire", "source": "2024Q1满意度调查", "meta": {"survey_q": 7}}\n'
).encode()

# The same feedback from an older system that exported no ids.
JSONL_WITHOUT_IDS = (
    '{"text": "网点排队两个小时，只开了一个窗口", "received_at": "2023-11-20 14:30:00"}\r\n'
    '{"text": "贷款审批进度查不到，打客服电话没人接", "rating": 2}\r\n'
).encode()


Parsed = tuple[list[FeedbackEvent], list[BadInput]]


def jsonl(
    data: bytes, options: FileDropOptions | None = None, name: str = "export.jsonl"
) -> Parsed:
    return parse_jsonl(
        data,
        file_id=hashlib.sha256(data).hexdigest(),
        options=options or FileDropOptions(path="/drop"),
        file_name=name,
        file_mtime=MTIME,
        connector="forms",
    )


def csv_(data: bytes, options: FileDropOptions, name: str = "export.csv") -> Parsed:
    return parse_csv(
        data,
        file_id=hashlib.sha256(data).hexdigest(),
        options=options,
        file_name=name,
        file_mtime=MTIME,
        connector="forms",
    )


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, sec: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, sec, tzinfo=UTC)


# --- options ---------------------------------------------------------------------


def test_options_round_trip_through_parse_options() -> None:
    example = FileDropOptions.example()
    assert parse_options(FileDropOptions, options_to_table(example)) == example
    table = {
        "path": "/drop",
        "id_column": "工单编号",
        "column_map": {"提交时间": "received_at", "评分": "rating"},
        "patterns": ["*.csv"],
    }
    parsed = parse_options(FileDropOptions, table, "connectors.forms")
    assert parsed.column_map == {"提交时间": "received_at", "评分": "rating"}
    assert parsed.patterns == ("*.csv",)
    assert parse_options(FileDropOptions, options_to_table(parsed)) == parsed


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"path": "/d", "batch_size": 0}, "batch_size must be > 0"),
        ({"path": "/d", "max_line_bytes": 2 << 20}, "max_line_bytes must be at most"),
        ({"path": "/d", "channel": "web.form"}, "routing key"),
        ({"path": "/d", "patterns": []}, "patterns"),
        ({"path": "/d", "column_map": {"x": "text"}}, "the target must be one of"),
        ({"path": "/d", "id_column": "text"}, "different columns"),
        ({"path": "/d", "settle_secs": -1}, "settle_secs"),
        ({"path": ""}, "path must name"),
    ],
)
def test_invalid_options_are_config_errors_naming_the_problem(
    table: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_options(FileDropOptions, table, "connectors.forms")
    assert info.value.key == "connectors.forms"


def test_the_readme_example_is_a_valid_configuration() -> None:
    readme = (Path(connectors.file_drop.__file__).parent / "README.md").read_text()
    example = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    table = tomllib.loads(example)["connectors"]["forms"]
    assert connector_class(table.pop("type")) is FileDropConnector
    options = parse_options(FileDropOptions, table, "connectors.forms")
    assert options.column_map["提交时间"] == "received_at"


def test_unknown_option_is_named_with_a_suggestion() -> None:
    with pytest.raises(ConfigError, match="did you mean") as info:
        parse_options(FileDropOptions, {"path": "/d", "pattern": ["*.csv"]}, "connectors.forms")
    assert info.value.key == "connectors.forms.pattern"


# --- JSON Lines ------------------------------------------------------------------


def test_jsonl_with_declared_ids_maps_columns_and_keeps_the_rest_in_meta() -> None:
    options = FileDropOptions(path="/drop", id_column="feedback_id", source="官网")
    events, bad = jsonl(JSONL_WITH_IDS, options)
    assert bad == []
    first, second, third = events
    assert first.text == "信用卡在境外被盗刷三笔，已经挂失，要求尽快退款！"
    assert first.native_id == "FB20240301000123"
    assert first.channel == "web_form" and first.source == "官网"
    assert first.rating == 1 and first.author == "13800138000"
    assert first.received_at == utc(2024, 3, 1, 1, 15, 22)  # 09:15:22 in Shanghai
    assert first.meta == {"form": "信用卡投诉", "branch": "上海分行"}
    assert first.raw_ref == "file_drop:forms/export.jsonl:1"
    assert second.native_id == "20240301000124"  # a numeric id is kept as text
    assert second.rating == 2 and second.author == "13900139000"
    assert second.received_at == utc(2024, 3, 1, 2, 2)
    assert third.channel == "questionnaire" and third.source == "2024Q1满意度调查"
    assert third.meta == {"survey_q": 7}
    assert third.received_at == MTIME  # no time column: the file's mtime
    assert third.raw_ref.endswith(":4")  # line numbers count the blank line


def test_events_survive_the_bus_codec_unchanged() -> None:
    events, _ = jsonl(JSONL_WITH_IDS, FileDropOptions(path="/d", id_column="feedback_id"))
    for event in events:
        assert decode_event(encode_event(event)) == event


def test_jsonl_without_ids_gets_ids_from_content_hash_and_line() -> None:
    events, bad = jsonl(JSONL_WITHOUT_IDS)
    assert bad == []
    assert [e.text for e in events] == [
        "网点排队两个小时，只开了一个窗口",
        "贷款审批进度查不到，打客服电话没人接",
    ]
    assert events[0].native_id == ""
    assert events[0].received_at == utc(2023, 11, 20, 6, 30)
    assert events[1].rating == 2
    assert len({e.id for e in events}) == 2
    assert all(e.id.startswith("web_form-") for e in events)


def test_ids_are_deterministic_and_hash_ids_ignore_the_file_name() -> None:
    first, _ = jsonl(JSONL_WITHOUT_IDS, name="a.jsonl")
    again, _ = jsonl(JSONL_WITHOUT_IDS, name="a.jsonl")
    renamed, _ = jsonl(JSONL_WITHOUT_IDS, name="backfill-2023.jsonl")
    assert [e.id for e in first] == [e.id for e in again] == [e.id for e in renamed]
    edited, _ = jsonl(JSONL_WITHOUT_IDS + b'{"text": "one more"}\n')
    assert {e.id for e in edited}.isdisjoint(e.id for e in first)  # other content, other ids


def test_declared_ids_do_not_depend_on_line_position_or_file() -> None:
    options = FileDropOptions(path="/drop", id_column="feedback_id")
    events, _ = jsonl(JSONL_WITH_IDS, options)
    lines = JSONL_WITH_IDS.splitlines(keepends=True)
    reordered, _ = jsonl(b"".join(reversed(lines)), options, name="other.jsonl")
    assert {e.id for e in events} == {e.id for e in reordered}


MIXED_LINES = [
    b'{"text": "\xe5\xad\x98\xe6\xac\xbe\xe5\x88\xb0\xe6\x9c\x9f\xe6\x9c\xaa\xe8\x87\xaa\xe5'
    b'\x8a\xa8\xe8\xbd\xac\xe5\xad\x98"}',  # 存款到期未自动转存 (good)
    b'{"text": "missing brace"',  # bad JSON
    b'{"text": "\xd6\xd0\xce\xc4"}',  # GBK bytes in a UTF-8 file
    b'{"text": "' + b"a" * 300_000 + b'"}',  # 300 KB
    '{"text": "评分不是数字", "rating": "五星"}'.encode(),  # wrong type for rating
    b'{"rating": 5, "author": "x"}',  # no text
    b'{"text": "   "}',  # empty text
    b"",  # blank: skipped, not bad
    '{"text": "柜员态度很好，点赞"}'.encode(),  # good
    b'["not", "an", "object"]',
]


def test_bad_lines_become_bad_inputs_with_their_bytes_and_good_lines_still_arrive() -> None:
    data = b"\n".join(MIXED_LINES) + b"\n"
    events, bad = jsonl(data, name="mixed.jsonl")
    assert [e.text for e in events] == ["存款到期未自动转存", "柜员态度很好，点赞"]
    assert [e.raw_ref for e in events] == [
        "file_drop:forms/mixed.jsonl:1",
        "file_drop:forms/mixed.jsonl:9",
    ]
    by_line = {b.ref: b for b in bad}
    expected_kinds = {
        "mixed.jsonl:2": "bad_json",
        "mixed.jsonl:3": "bad_encoding",
        "mixed.jsonl:4": "oversized",
        "mixed.jsonl:5": "bad_schema",
        "mixed.jsonl:6": "missing_text",
        "mixed.jsonl:7": "missing_text",
        "mixed.jsonl:10": "bad_schema",
    }
    assert {ref: b.kind for ref, b in by_line.items()} == expected_kinds
    for ref, item in by_line.items():
        line = MIXED_LINES[int(ref.split(":")[1]) - 1]
        if item.kind == "oversized":
            assert item.raw == line[: 256 * 1024]
            assert "300012 bytes" in item.reason
        else:
            assert item.raw == line
    assert "rating" in by_line["mixed.jsonl:5"].reason


def test_long_text_is_truncated_on_purpose_and_noted_in_meta() -> None:
    text = "投诉" * MAX_TEXT_CHARS  # 100 000 characters, 300 KB: under a raised line limit
    options = FileDropOptions(path="/d", max_line_bytes=512 * 1024)
    events, bad = jsonl(orjson.dumps({"text": text}) + b"\n", options)
    assert bad == []
    assert len(events[0].text) == MAX_TEXT_CHARS
    assert events[0].meta["text_truncated_from_chars"] == 2 * MAX_TEXT_CHARS


def test_bad_times_channels_and_ids_are_bad_lines() -> None:
    options = FileDropOptions(path="/d", id_column="no")
    lines = [
        {"no": "1", "text": "a", "received_at": "yesterday"},
        {"no": "2", "text": "b", "received_at": "0001-01-01 00:00:00"},  # overflows UTC
        {"no": "3", "text": "c", "channel": "web.form"},  # would break the routing key
        {"no": "", "text": "d"},
        {"no": 4.5, "text": "e"},
        {"no": "5", "text": "f", "received_at": "2024/13/1 10:00"},
        {"no": "6", "text": "g", "received_at": "2024/3/1 9:05", "channel": "WeChat"},
        {"no": "7", "text": "h", "received_at": "2024/3/1"},
        {"no": "8", "text": "i", "received_at": 1709254800},  # Unix seconds
    ]
    events, bad = jsonl(b"\n".join(orjson.dumps(x) for x in lines), options)
    assert [(b.ref, b.kind) for b in bad] == [
        ("export.jsonl:1", "bad_schema"),
        ("export.jsonl:2", "bad_schema"),
        ("export.jsonl:3", "bad_schema"),
        ("export.jsonl:4", "missing_id"),
        ("export.jsonl:5", "bad_schema"),
        ("export.jsonl:6", "bad_schema"),
    ]
    assert [e.native_id for e in events] == ["6", "7", "8"]
    assert [e.received_at for e in events] == [
        utc(2024, 3, 1, 1, 5),
        utc(2024, 2, 29, 16, 0),  # midnight in Shanghai
        utc(2024, 3, 1, 1, 0),
    ]
    assert events[0].channel == "wechat"


def test_values_the_standard_library_refuses_are_bad_lines_not_a_stalled_file() -> None:
    """ "⑤" passed str.isdigit() and int() refused it: the ValueError failed the whole
    poll, and this file and every newer one waited forever."""
    lines = [
        {"text": "before", "rating": 4},
        {"text": "转账失败，钱被扣了", "rating": "⑤"},
        {"text": "full-width digits are digits", "rating": "５"},
        {"text": "after", "rating": 2},
    ]
    events, bad = jsonl(b"\n".join(orjson.dumps(x) for x in lines))
    assert [e.text for e in events] == ["before", "full-width digits are digits", "after"]
    assert [e.rating for e in events] == [4, 5, 2]
    assert [(b.ref, b.kind) for b in bad] == [("export.jsonl:2", "bad_schema")]


def test_a_refused_value_is_not_quoted_in_the_logged_reason() -> None:
    """Reasons are logged and travel in the dead letter's x-error header; the value may
    be personal data, and the dead letter's body keeps it for whoever may see it."""
    line = {"text": "x", "channel": "13800138000 110101199003074514", "received_at": "138001"}
    _, bad = jsonl(orjson.dumps(line))
    assert "13800138000" not in bad[0].reason and "characters" in bad[0].reason
    _, bad = jsonl(orjson.dumps({"text": "x", "received_at": "13800138000"}))
    assert "13800138000" not in bad[0].reason


def test_a_csv_cell_longer_than_the_csv_modules_own_limit_stays_one_record() -> None:
    """csv refuses fields over 131,072 characters by default; the rest of the record
    was then read as a record of its own (a phone number at its end became an event)."""
    data = (
        'id,text\n1,ok\n2,"a pasted log\n' + "x" * 140_000 + '\nend, 13800138000"\n3,next\n'
    ).encode()
    events, bad = csv_(data, FileDropOptions(path="/d", id_column="id"))
    assert [e.native_id for e in events] == ["1", "2", "3"] and bad == []
    assert events[1].text.startswith("a pasted log")


def test_a_binary_file_is_one_bad_input_for_the_whole_file() -> None:
    xlsx = b"PK\x03\x04\x14\x00\x06\x00" + bytes(range(256)) * 10
    events, bad = jsonl(xlsx, name="complaints.jsonl")
    assert events == []
    assert len(bad) == 1
    assert bad[0].ref == "complaints.jsonl" and "xlsx" in bad[0].reason
    assert bad[0].raw == xlsx[: 256 * 1024]


def test_utf16_without_bom_is_binary_but_a_stray_nul_is_one_bad_line() -> None:
    utf16 = "text,rating\r\nATM机吞卡,1\r\n".encode("utf-16-le")
    events, bad = csv_(utf16, FileDropOptions(path="/d"))
    assert events == [] and [b.kind for b in bad] == ["unreadable"]
    assert "UTF-16" in bad[0].reason
    events, bad = jsonl(b'{"text": "a"}\n{"text": "\x00"}\n{"text": "b"}\n')
    assert [e.text for e in events] == ["a", "b"] and [b.ref for b in bad] == ["export.jsonl:2"]


# --- CSV -------------------------------------------------------------------------

CSV_OPTIONS = FileDropOptions(
    path="/drop",
    id_column="工单编号",
    text_column="反馈内容",
    column_map={"提交时间": "received_at", "满意度": "rating", "手机号": "author"},
)
# Excel "CSV UTF-8 (逗号分隔)": BOM, CRLF, quoted multi-line cells, trailing empty row.
EXCEL_UTF8_CSV = (
    "\ufeff工单编号,反馈内容,提交时间,满意度,手机号,业务类型\r\n"
    'GD0001,"ATM吞卡，等了40分钟没人处理",2024-03-01 09:15:22,1,13800138000,借记卡\r\n'
    'GD0002,"App闪退：\r\n1. 登录后白屏\r\n2. 转账页面卡死",2024-03-01 10:00:00,2,,手机银行\r\n'
    'GD0003,"客户经理说""保本""，结果亏了20%",2024/3/2 8:05,1,13900139000,理财\r\n'
    ",,,,,\r\n"
).encode("utf-8")


def test_excel_csv_with_bom_crlf_and_multiline_cells() -> None:
    events, bad = csv_(EXCEL_UTF8_CSV, CSV_OPTIONS)
    assert bad == []
    assert [e.native_id for e in events] == ["GD0001", "GD0002", "GD0003"]
    assert events[0].text == "ATM吞卡，等了40分钟没人处理"
    assert events[0].author == "13800138000" and events[0].rating == 1
    assert events[0].received_at == utc(2024, 3, 1, 1, 15, 22)
    assert events[0].meta == {"业务类型": "借记卡"}
    assert events[1].text == "App闪退：\r\n1. 登录后白屏\r\n2. 转账页面卡死"
    assert events[1].author == ""
    assert events[2].text == '客户经理说"保本"，结果亏了20%'
    assert events[2].received_at == utc(2024, 3, 2, 0, 5)
    assert [e.raw_ref.rsplit(":", 1)[1] for e in events] == ["2", "3", "6"]  # physical lines


def test_gb18030_csv_from_excel_on_chinese_windows_is_detected_and_decoded() -> None:
    text = (
        "工单编号,反馈内容,提交时间,满意度\r\n"
        "GD0101,理财产品到期后资金迟迟未到账,2024/3/1 9:05,1\r\n"
        "GD0102,姓名里有生僻字𠮷，开户时系统录不进去,2024/3/1 9:30,2\r\n"
    )
    data = text.encode("gb18030")
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    assert detect_csv_encoding(data) == "gb18030"
    events, bad = csv_(data, CSV_OPTIONS)
    assert bad == []
    assert [e.text for e in events] == [
        "理财产品到期后资金迟迟未到账",
        "姓名里有生僻字𠮷，开户时系统录不进去",
    ]
    assert events[0].received_at == utc(2024, 3, 1, 1, 5)


def test_utf8_csv_with_one_corrupt_row_stays_utf8_and_only_that_row_is_bad() -> None:
    data = (
        ("工单编号,反馈内容\n1,信用卡年费被重复扣收\n2,网银登录验证码收不到\n").encode()
        + "3,柜台".encode("gbk")
        + b"\n"
        + "4,贷款利率与合同不符\n".encode()
    )
    assert detect_csv_encoding(data) == "utf-8"
    events, bad = csv_(data, CSV_OPTIONS)
    assert [e.native_id for e in events] == ["1", "2", "4"]
    assert len(bad) == 1 and bad[0].kind == "bad_encoding" and bad[0].ref == "export.csv:4"
    assert bad[0].raw == "3,柜台".encode("gbk")


def test_csv_bad_rows_do_not_stop_the_rows_around_them() -> None:
    options = FileDropOptions(path="/d", max_line_bytes=200)
    data = (
        "text,rating,comment\n"
        "第一条正常,5,\n"
        "评分错误,很好,\n"
        "多出来的列,3,x,y\n"
        ",4,没有正文\n"
        '"未闭合的引号,1,\n' + "后面一行被吞掉,2,\n" * 30 + "最后一条正常,1,\n"
    ).encode()
    events, bad = csv_(data, options)
    assert events[0].text == "第一条正常" and events[-1].text == "最后一条正常"
    assert {
        b.ref: b.kind
        for b in bad
        if b.ref in {"export.csv:3", "export.csv:4", "export.csv:5", "export.csv:6"}
    } == {
        "export.csv:3": "bad_schema",
        "export.csv:4": "bad_csv",
        "export.csv:5": "missing_text",
        "export.csv:6": "bad_csv",
    }
    runaway = next(b for b in bad if b.ref == "export.csv:6")
    assert runaway.raw.startswith('"未闭合的引号'.encode()) and len(runaway.raw) <= 200
    # the unclosed quote swallowed whole lines up to max_line_bytes (all kept in the dead
    # letter), and every line after them parses again
    swallowed = runaway.raw.count(b"\n")
    assert 0 < swallowed < 10
    assert sum(e.text == "后面一行被吞掉" for e in events) == 30 - swallowed


def test_csv_without_the_text_column_is_one_bad_input_naming_the_columns() -> None:
    data = "编号,内容\n1,你好\n2,再见\n".encode()
    events, bad = csv_(data, FileDropOptions(path="/d"), name="wrong.csv")
    assert events == []
    assert len(bad) == 1 and bad[0].kind == "bad_header" and bad[0].ref == "wrong.csv"
    assert "'text'" in bad[0].reason and "'内容'" in bad[0].reason


def test_tab_separated_export_named_csv_is_read() -> None:
    data = "text\trating\n转账失败\t1\n".encode()
    events, bad = csv_(data, FileDropOptions(path="/d"))
    assert bad == [] and [(e.text, e.rating) for e in events] == [("转账失败", 1)]


def test_csv_ids_are_deterministic_across_names() -> None:
    options = FileDropOptions(path="/d", text_column="反馈内容")
    first, _ = csv_(EXCEL_UTF8_CSV, options, name="a.csv")
    second, _ = csv_(EXCEL_UTF8_CSV, options, name="b.csv")
    assert [e.id for e in first] == [e.id for e in second]
    assert len({e.id for e in first}) == 3


# --- properties: arbitrary bytes never crash, good lines survive garbage ------------

SMALL = FileDropOptions(path="/d", max_line_bytes=64)


def _check_results(result: Parsed, limit: int) -> None:
    events, bad = result
    assert all(isinstance(e, FeedbackEvent) and e.text.strip() for e in events)
    assert all(isinstance(b, BadInput) and len(b.raw) <= limit for b in bad)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=600))
def test_arbitrary_bytes_give_results_never_exceptions(data: bytes) -> None:
    for options in (SMALL, FileDropOptions(path="/d")):
        _check_results(jsonl(data, options), options.max_line_bytes)
        _check_results(csv_(data, options), options.max_line_bytes)


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(
        st.one_of(
            st.binary(max_size=80),
            st.dictionaries(
                st.sampled_from(["text", "rating", "id", "channel", "received_at"]),
                st.one_of(st.text(max_size=20), st.integers(-(2**63), 2**63 - 1), st.none()),
            ),
        ),
        max_size=20,
    )
)
def test_near_miss_json_lines_give_results_never_exceptions(
    lines: list[bytes | dict[str, object]],
) -> None:
    data = b"\n".join(x if isinstance(x, bytes) else orjson.dumps(x) for x in lines)
    _check_results(jsonl(data, SMALL), SMALL.max_line_bytes)
    _check_results(jsonl(data), 256 * 1024)


TEXT = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), min_size=1, max_size=40
).filter(lambda t: t.strip() != "")


@settings(max_examples=200, deadline=None)
@given(texts=st.lists(TEXT, max_size=15), garbage=st.lists(st.binary(max_size=30), max_size=15))
def test_every_good_jsonl_line_arrives_between_garbage_lines(
    texts: list[str], garbage: list[bytes]
) -> None:
    lines: list[bytes] = []
    for i, text in enumerate(texts):
        lines.append(orjson.dumps({"text": text}))
        if i < len(garbage):  # \xff never starts valid UTF-8; NUL-heavy files are
            # binary, a whole-file verdict tested on its own
            lines.append(b"\xff" + garbage[i].replace(b"\n", b" ").replace(b"\x00", b"?"))
    events, bad = jsonl(b"\n".join(lines))
    assert [e.text for e in events] == [t.strip() for t in texts]
    assert len(bad) == min(len(texts), len(garbage))


@settings(max_examples=200, deadline=None)
@given(texts=st.lists(TEXT, max_size=15))
def test_every_csv_row_written_by_the_csv_module_reads_back(texts: list[str]) -> None:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["text", "note"])
    writer.writerows([text, f"n{i}"] for i, text in enumerate(texts))
    events, bad = csv_(out.getvalue().encode(), FileDropOptions(path="/d"))
    assert bad == []
    assert [e.text for e in events] == [t.strip() for t in texts]
    assert [e.meta["note"] for e in events] == [f"n{i}" for i in range(len(texts))]


def test_parse_payload_guesses_the_format_for_the_offline_cli() -> None:
    options = FileDropOptions(path="/d", text_column="反馈内容")
    events, bad = FileDropConnector.parse_payload(EXCEL_UTF8_CSV, options)
    assert len(events) == 3 and list(bad) == []
    events, bad = FileDropConnector.parse_payload(JSONL_WITHOUT_IDS, FileDropOptions(path="/d"))
    assert [e.raw_ref for e in events] == [
        "file_drop:file_drop/payload:1",
        "file_drop:file_drop/payload:2",
    ]


# --- streaming reader --------------------------------------------------------------


def test_read_lines_skips_past_a_huge_line_without_keeping_it() -> None:
    stream = io.BytesIO(b"first\n" + b"x" * 1_000_000 + b"\r\nlast")
    lines = list(read_lines(stream, 1000))
    assert lines[0] == b"first\n"
    assert lines[1] == Oversized(b"x" * 1000, 1_000_000)
    assert lines[2] == b"last"


# --- the connector on a real folder --------------------------------------------------


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def drop(folder: Path, name: str, data: bytes, age_secs: float = 60.0) -> Path:
    path = folder / name
    path.write_bytes(data)
    then = time.time() - age_secs
    os.utime(path, (then, then))
    return path


def connector(folder: Path, **options: object) -> FileDropConnector:
    return FileDropConnector("forms", FileDropOptions(path=str(folder), **options))  # type: ignore[arg-type]


async def read_all(conn: FileDropConnector) -> list[Batch]:
    return [batch async for batch in conn.read(None)]


async def commit(batches: list[Batch]) -> None:
    """What the runtime does after the broker confirmed each batch."""
    for batch in batches:
        if batch.after_commit is not None:
            await batch.after_commit()


async def test_check_creates_done_and_failed(tmp_path: Path) -> None:
    await connector(tmp_path).check()
    assert (tmp_path / "done").is_dir() and (tmp_path / "failed").is_dir()
    assert names(tmp_path) == ["done", "failed"]  # the write probe is removed


async def test_check_names_the_path_key_when_the_folder_is_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist") as info:
        await connector(tmp_path / "nope").check()
    assert info.value.key == "connectors.forms.path"
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="not a folder"):
        await connector(tmp_path / "file").check()


async def test_check_fails_when_done_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "done").write_text("a file where the folder should be")
    with pytest.raises(ConfigError, match="cannot create done/") as info:
        await connector(tmp_path).check()
    assert info.value.key == "connectors.forms.path"


@pytest.fixture
def read_only_folder(tmp_path: Path) -> Iterator[Path]:
    tmp_path.chmod(0o500)
    yield tmp_path
    tmp_path.chmod(0o700)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to a read-only folder")
async def test_check_fails_on_a_read_only_folder(read_only_folder: Path) -> None:
    with pytest.raises(ConfigError, match="Permission denied"):
        await connector(read_only_folder).check()


async def test_read_yields_batches_and_the_last_one_moves_the_file_to_done(
    tmp_path: Path,
) -> None:
    data = b"".join(orjson.dumps({"text": f"第{i}条反馈"}) + b"\n" for i in range(7))
    drop(tmp_path, "forms.jsonl", data)
    conn = connector(tmp_path, batch_size=3)
    await conn.check()
    batches = await read_all(conn)
    assert [len(b.events) for b in batches] == [3, 3, 1]
    assert [b.after_commit is not None for b in batches] == [False, False, True]
    assert all(b.cursor is None for b in batches)
    assert (tmp_path / "forms.jsonl").exists()  # nothing moves before the commit
    await commit(batches)
    assert not (tmp_path / "forms.jsonl").exists()
    assert (tmp_path / "done" / "forms.jsonl").read_bytes() == data
    assert await read_all(conn) == []


async def test_an_abandoned_read_leaves_the_file_and_the_next_poll_gives_the_same_ids(
    tmp_path: Path,
) -> None:
    """A crash (or a broker outage) between batches: nothing was committed, so the file
    stays, and re-reading it publishes the same ids again: the sinks deduplicate."""
    data = b"".join(orjson.dumps({"text": f"第{i}条"}) + b"\n" for i in range(5))
    drop(tmp_path, "forms.jsonl", data)
    conn = connector(tmp_path, batch_size=2)
    async with contextlib.aclosing(conn.read(None)) as reading:
        first = await anext(reading)
    assert (tmp_path / "forms.jsonl").exists()
    again = await read_all(conn)
    assert [e.id for e in again[0].events] == [e.id for e in first.events]
    await commit(again)
    assert names(tmp_path / "done") == ["forms.jsonl"]


async def test_connector_ids_match_the_pure_parser_and_ignore_the_name(tmp_path: Path) -> None:
    drop(tmp_path, "a.csv", EXCEL_UTF8_CSV, age_secs=120)
    drop(tmp_path, "b.csv", EXCEL_UTF8_CSV, age_secs=60)
    options = {"text_column": "反馈内容", "column_map": {"提交时间": "received_at"}}
    batches = await read_all(connector(tmp_path, **options))
    ids = [[e.id for e in b.events] for b in batches]
    expected, _ = csv_(EXCEL_UTF8_CSV, FileDropOptions(path="/d", **options))  # type: ignore[arg-type]
    assert ids == [[e.id for e in expected]] * 2
    assert [b.events[0].raw_ref for b in batches] == [
        "file_drop:forms/a.csv:2",
        "file_drop:forms/b.csv:2",
    ]


async def test_files_are_read_oldest_first_and_others_are_ignored(tmp_path: Path) -> None:
    drop(tmp_path, "new.jsonl", b'{"text": "new"}\n', age_secs=10)
    drop(tmp_path, "old.JSONL", b'{"text": "old"}\n', age_secs=100)
    drop(tmp_path, "notes.txt", b'{"text": "not a pattern"}\n')
    drop(tmp_path, ".partial.jsonl", b'{"text": "being written"}\n')
    batches = await read_all(connector(tmp_path))
    assert [b.events[0].text for b in batches] == ["old", "new"]


async def test_a_symbolic_link_is_never_read(tmp_path: Path) -> None:
    """Whoever may write to the drop folder must not make the worker publish and
    dead-letter any file it can read (a private key) through a link."""
    secret = tmp_path / "outside" / "key.pem"
    secret.parent.mkdir()
    secret.write_bytes(b'{"text": "-----BEGIN PRIVATE KEY-----"}\n')
    drop(tmp_path, "real.jsonl", b'{"text": "real"}\n', age_secs=100)
    (tmp_path / "link.jsonl").symlink_to(secret)
    batches = await read_all(connector(tmp_path))
    assert [e.text for b in batches for e in b.events] == ["real"]
    assert all(not b.bad for b in batches)
    with pytest.raises(OSError):
        dropfolder.open_regular(tmp_path / "link.jsonl")  # even if swapped in after listing


async def test_a_just_written_file_is_left_for_a_later_poll(tmp_path: Path) -> None:
    (tmp_path / "fresh.jsonl").write_bytes(b'{"text": "still being written"}\n')
    assert await read_all(connector(tmp_path, settle_secs=30.0)) == []
    assert (tmp_path / "fresh.jsonl").exists()
    batches = await read_all(connector(tmp_path, settle_secs=0.0))
    assert [e.text for b in batches for e in b.events] == ["still being written"]


async def test_a_file_whose_lines_are_all_bad_goes_to_failed(tmp_path: Path) -> None:
    drop(tmp_path, "broken.jsonl", b"{not json\n[1, 2]\n")
    batches = await read_all(connector(tmp_path))
    assert len(batches) == 1 and batches[0].events == []
    assert [b.kind for b in batches[0].bad] == ["bad_json", "bad_schema", "all_bad"]
    assert batches[0].bad[-1].ref == "broken.jsonl"
    await commit(batches)
    assert (tmp_path / "failed" / "broken.jsonl").exists()
    assert names(tmp_path / "done") == []


async def test_an_undecodable_file_is_dead_lettered_once_and_goes_to_failed(
    tmp_path: Path,
) -> None:
    drop(tmp_path, "export.csv", "\ufeff编号,内容\n1,你好\n".encode())  # no "text" column
    drop(tmp_path, "book.csv", b"PK\x03\x04" + bytes(500), age_secs=30)
    batches = await read_all(connector(tmp_path))
    assert [[b.kind for b in batch.bad] for batch in batches] == [["bad_header"], ["unreadable"]]
    await commit(batches)
    assert names(tmp_path / "failed") == ["book.csv", "export.csv"]


async def test_a_file_with_some_bad_lines_goes_to_done(tmp_path: Path) -> None:
    drop(tmp_path, "mixed.jsonl", b'{"text": "ok"}\nnot json\n')
    batches = await read_all(connector(tmp_path))
    assert [b.kind for b in batches[0].bad] == ["bad_json"]
    await commit(batches)
    assert (tmp_path / "done" / "mixed.jsonl").exists()


async def test_an_empty_file_goes_to_done_without_dead_letters(tmp_path: Path) -> None:
    drop(tmp_path, "empty.csv", b"")
    batches = await read_all(connector(tmp_path))
    assert [(list(b.events), list(b.bad)) for b in batches] == [([], [])]
    await commit(batches)
    assert (tmp_path / "done" / "empty.csv").exists()


async def test_a_name_already_in_done_gets_a_timestamp_suffix(tmp_path: Path) -> None:
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "forms.jsonl").write_bytes(b"earlier drop\n")
    drop(tmp_path, "forms.jsonl", b'{"text": "again"}\n')
    await commit(await read_all(connector(tmp_path)))
    done = names(tmp_path / "done")
    assert len(done) == 2 and "forms.jsonl" in done
    (renamed,) = set(done) - {"forms.jsonl"}
    assert renamed.startswith("forms.") and renamed.endswith("Z.jsonl")
    assert (tmp_path / "done" / "forms.jsonl").read_bytes() == b"earlier drop\n"


async def test_a_file_changed_before_the_commit_is_not_moved(tmp_path: Path) -> None:
    path = drop(tmp_path, "growing.jsonl", b'{"text": "first"}\n')
    batches = await read_all(connector(tmp_path))
    with path.open("ab") as f:
        f.write(b'{"text": "second"}\n')
    await commit(batches)
    assert path.exists()  # its new content is read on the next poll
    again = await read_all(connector(tmp_path, settle_secs=0.0))
    assert [e.text for b in again for e in b.events] == ["first", "second"]


async def test_a_huge_line_in_a_file_is_dead_lettered_in_bounded_size(tmp_path: Path) -> None:
    drop(tmp_path, "big.jsonl", b'{"text": "' + b"x" * 3_000_000 + b'"}\n{"text": "ok"}\n')
    batches = await read_all(connector(tmp_path, max_line_bytes=1000))
    (bad,) = batches[0].bad
    assert bad.kind == "oversized" and len(bad.raw) == 1000 and "3000012 bytes" in bad.reason
    assert [e.text for e in batches[0].events] == ["ok"]


class TestFileDropContract(ConnectorContract):
    """file_drop keeps the connector contract (ingest/testing.py)."""

    connector = FileDropConnector
    options = {"path": "/var/lib/feedback-ingest/inbox", "source": "官网意见反馈"}
    bad_check_options = {"path": "/nonexistent/feedback-inbox"}
    good_payloads = (JSONL_WITH_IDS, JSONL_WITHOUT_IDS)
    bad_payloads = (b'{"text": ', b"\x00\x01\x02binary\xff\xfe")

    async def pull_connector(self, tmp_path: Path) -> FileDropConnector:
        drop(tmp_path, "export.jsonl", JSONL_WITH_IDS)
        return connector(tmp_path)
