"""file_drop CSV encoding vote (connectors/file_drop/parse.py `detect_csv_encoding`): a
row that is UTF-8 but for a stray byte votes UTF-8 (ingest/text_bytes.py), so it no
longer tips a UTF-8 export into GB18030, where that row became mojibake or the
Chinese header stopped matching and the whole file was refused."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from connectors.file_drop.config import FileDropOptions
from connectors.file_drop.parse import detect_csv_encoding, parse_csv
from ingest.abc import BadInput
from ingest.model import FeedbackEvent

OPTIONS = FileDropOptions(path="/drop", id_column="工单编号", text_column="反馈内容")
COMPLAINT = "信用卡昨晚被盗刷了两万元，请立即冻结我的卡"


def csv_(data: bytes, options: FileDropOptions) -> tuple[list[FeedbackEvent], list[BadInput]]:
    return parse_csv(
        data,
        file_id=hashlib.sha256(data).hexdigest(),
        options=options,
        file_name="export.csv",
        file_mtime=datetime(2024, 3, 2, 8, 0, tzinfo=UTC),
        connector="forms",
    )


def test_the_only_chinese_row_with_a_stray_byte_is_dead_lettered_not_mojibake() -> None:
    """Old code: the file was read as GB18030 and row 2 arrived as mojibake."""
    data = (
        b"id,text\n1,card blocked please call back\n2,\x92"
        + COMPLAINT.encode()
        + b"\n3,thanks it works now\n"
    )
    assert detect_csv_encoding(data) == "utf-8"
    events, bad = csv_(data, FileDropOptions(path="/drop", id_column="id"))
    assert [e.native_id for e in events] == ["1", "3"]
    assert [(b.ref, b.kind) for b in bad] == [("export.csv:3", "bad_encoding")]
    assert "not utf-8" in bad[0].reason


def test_rows_with_stray_bytes_do_not_turn_a_utf8_file_into_gb18030() -> None:
    """Old code: the damaged rows outvoted the header and the clean row; read as GB18030
    the header had no 反馈内容 column and the whole file was refused."""
    data = (
        "工单编号,反馈内容\n".encode()
        + f"GD01,{COMPLAINT}".encode()
        + b"\xa0\nGD02,"
        + "网银登录验证码收不到，转账也失败".encode()
        + b"\x85\nGD03,\x92"
        + "理财产品到期后资金迟迟未到账".encode()
        + "\nGD04,贷款利率与合同不符\n".encode()
    )
    assert detect_csv_encoding(data) == "utf-8"
    events, bad = csv_(data, OPTIONS)
    assert [e.text for e in events] == ["贷款利率与合同不符"]
    assert [(b.ref, b.kind) for b in bad] == [
        ("export.csv:2", "bad_encoding"),
        ("export.csv:3", "bad_encoding"),
        ("export.csv:4", "bad_encoding"),
    ]


def test_a_gbk_export_with_long_rows_is_still_gb18030() -> None:
    rows = [COMPLAINT, "网银登录验证码收不到，转账也失败", "理财产品到期后资金迟迟未到账"]
    text = "工单编号,反馈内容\r\n" + "".join(f"GD{i},{r}\r\n" for i, r in enumerate(rows))
    data = text.encode("gbk")
    assert detect_csv_encoding(data) == "gb18030"
    events, bad = csv_(data, OPTIONS)
    assert bad == [] and [e.text for e in events] == rows
