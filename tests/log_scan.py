"""Scanning log lines for what must never be logged: resident ID numbers with a valid
checksum, card numbers passing Luhn, mainland mobile numbers, e-mail addresses of
customers, and secrets. Uses the masker's own validators so both agree on what
counts as personal data."""

from __future__ import annotations

import re
from collections.abc import Iterable

from processors.pii import id_check_ok, luhn_ok

_EDGE = r"(?<![0-9A-Za-z])"
_END = r"(?![0-9A-Za-z])"
ID_NUMBER = re.compile(_EDGE + r"[1-9][0-9]{16}[0-9Xx]" + _END)
CARD_NUMBER = re.compile(_EDGE + r"[3-6][0-9]{15,18}" + _END)
MOBILE = re.compile(_EDGE + r"(?:\+?86)?1[3-9][0-9]{9}" + _END)
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@(?!example\.)[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


def findings_in(line: str, secrets: Iterable[str] = ()) -> list[str]:
    found = [f"id {m}" for m in ID_NUMBER.findall(line) if id_check_ok(m)]
    found += [f"card {m}" for m in CARD_NUMBER.findall(line) if luhn_ok(m)]
    found += [f"mobile {m}" for m in MOBILE.findall(line)]
    found += [f"email {m}" for m in EMAIL.findall(line)]
    found += [f"secret {s[:4]}…" for s in secrets if s and s in line]
    return found


def scan_log_file(path: str, secrets: Iterable[str] = ()) -> list[str]:
    secrets = tuple(secrets)
    out: list[str] = []
    with open(path, encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, 1):
            for finding in findings_in(line, secrets):
                out.append(f"line {number}: {finding}: {line.strip()[:300]}")
    return out
