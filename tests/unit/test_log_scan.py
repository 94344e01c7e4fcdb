"""The log scan that runs at the end of every test session finds what it must."""

from __future__ import annotations

import pytest

from tests.log_scan import findings_in


@pytest.mark.parametrize(
    "line",
    [
        '{"event":"x","text":"身份证 11010519491231002X"}',
        '{"event":"x","card":"6222021234567890128"}',
        '{"event":"x","author":"13800138000"}',
        '{"event":"x","author":"+8613800138000"}',
        '{"event":"x","from":"zhang.san@qq.com"}',
    ],
)
def test_personal_data_in_a_log_line_is_found(line: str) -> None:
    assert findings_in(line)


@pytest.mark.parametrize(
    "line",
    [
        '{"event":"x","id":"wechat-9f2c13800138000aa"}',  # inside an id, not a number
        '{"event":"x","ts_ms":1732412345678}',
        '{"event":"x","order":"110105194912310021"}',  # fails the ID checksum
        '{"event":"x","masked":"138****8000","card":"6222 **** **** 0128"}',
        '{"event":"x","to":"desk@example.com"}',
    ],
)
def test_masked_values_ids_and_timestamps_are_not_findings(line: str) -> None:
    assert findings_in(line) == []


def test_a_configured_secret_is_found() -> None:
    assert findings_in('{"url":"amqp://guest:guest@x"}', ["guest:guest"])
