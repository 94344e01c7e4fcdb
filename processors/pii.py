"""The `pii` step: masks personal data in the text, the turns and the author before
anything is stored, fed to the desk or logged (个人信息保护法: mask what is shown),
and derives `customer_ref`, the keyed hash that links one customer across channels.

What is masked (on the NFKC text `normalize` produced), and how it looks after:

    kind      recognised as                                   masked as
    id        18-digit resident ID, GB 11643 check digit,     **************123X   (last 4 kept)
              plausible birth date
    card      16–19 digits passing Luhn; spaces or dashes     6222 **** **** 1234  (first 4 and
              between groups allowed                          6222***********0123   last 4 kept,
                                                                                    separators kept)
    mobile    1[3-9] + 9 digits, optional +86 / 0086 / 86,    +86 138****8000      (first 3, last 4)
              3-4-4 groups allowed
    landline  0 + 2–3 digit area code, optional dash, 7–8     021-****5678         (area code and
              digits; "(021)" form too                                              last 4 kept)
    email     local@domain                                    z***@example.com     (first letter,
                                                                                    domain kept)
    name      after a cue: 我叫 / 姓名: / 户名 / 联系人 …,      张* / 欧阳**  (surname kept;
              客户…先生 / 我是…女士, 我姓…                     *先生         a bare one masked)
    address   after a cue: 地址: / 住址 / 住在 / 家住 …, with   上海市浦东新区***
              a street-level unit (路, 号, 小区 …)              (province, city, district kept)

Digits are never masked when they fail their checksum (a mistyped or unrelated
number is not an ID or card), or when they follow a reference cue (订单号,
流水号, 保单号, 交易号; option `reference_cues`): the desk needs those to find the
transaction, and they do not identify a person. Names and addresses are masked
only where a clear cue introduces them (`processors.pii_cues`, words in
`rules/pii_cues.toml`): "我叫客服", "地址栏" or "网点地址查询" are left alone.

`customer_ref` = HMAC-SHA256(`customer_ref_key`, normalised author), hex, first
32 characters: a mobile number becomes E.164 (+86…), an e-mail address is
lower-cased, any other channel identity (openid, nickname) is used as it is
(surrounding spaces trimmed); an empty author gives an empty ref. A ref already
set by an earlier run is kept.

WARNING: without `customer_ref_key` the step uses `DEV_CUSTOMER_REF_KEY`, a key
published in this source, and logs a warning. Anyone can recompute refs made with
it from a phone number, so production must set `[classify] customer_ref_key`
(or `FEEDBACK_CLASSIFY__CUSTOMER_REF_KEY`) to a long random secret, and never
change it afterwards: a new key unlinks every customer's history.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

import structlog

from ingest.model import FeedbackRecord, Reason
from ingest.options import Secret
from ingest.sealed import seal
from processors import step_options
from processors.pii_cues import load_cues

DEV_CUSTOMER_REF_KEY = "feedback-ingest-dev-only-customer-ref-key"
"""Published development key: refs made with it are not pseudonymous. Set your own."""
PII_KINDS = ("id", "card", "mobile", "landline", "email", "name", "address")

_warned_dev_key = False


def _warn_dev_key() -> None:
    """Once per process. Through structlog where the worker configured it; else through
    stdlib logging, which goes to stderr: an unconfigured structlog prints to stdout,
    and stdout carries records (`feedback-ingest classify`)."""
    fix = "set [classify] customer_ref_key to a long random secret"
    if structlog.is_configured():
        structlog.get_logger("processors.pii").warning(
            "customer_ref_key_not_set", using="DEV_CUSTOMER_REF_KEY", fix=fix
        )
    else:
        logging.getLogger("processors.pii").warning(
            "customer_ref_key_not_set: using DEV_CUSTOMER_REF_KEY; %s", fix
        )


_EDGE_L = r"(?<![0-9A-Za-z])"
_EDGE_R = r"(?![0-9A-Za-z])"
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
)
_ID = re.compile(rf"{_EDGE_L}[1-9][0-9]{{16}}[0-9Xx]{_EDGE_R}")
_CARD = re.compile(
    rf"{_EDGE_L}(?:[0-9]{{16,19}}|[0-9]{{4}}(?:[ -][0-9]{{4}}){{3}}(?:[ -]?[0-9]{{1,3}})?"
    rf"|[0-9]{{6}}[ -][0-9]{{10,13}}){_EDGE_R}"
)
_MOBILE = re.compile(
    r"(?<![0-9A-Za-z+])(?:(?:\+|00)?86[ -]?)?"
    rf"1[3-9][0-9](?:[0-9]{{8}}|[ -][0-9]{{4}}[ -][0-9]{{4}}){_EDGE_R}"
)
_LANDLINE = re.compile(rf"{_EDGE_L}(?:0[0-9]{{2,3}}-?|\(0[0-9]{{2,3}}\) ?)[0-9]{{7,8}}{_EDGE_R}")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_MOBILE_AUTHOR = re.compile(r"(?:\+86|0086|86)?(1[3-9][0-9]{9})")


def id_check_ok(number: str) -> bool:
    """GB 11643-1999: an 18-character resident ID with a valid check character and a
    birth date that exists (between 1900 and today's century)."""
    if len(number) != 18 or not number[:17].isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(number[:17], _ID_WEIGHTS, strict=True))
    if _ID_CHECK[total % 11] != number[17].upper():
        return False
    try:
        born = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return False
    return 1900 <= born.year <= 2099


def luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) check every bank card number carries."""
    if not digits.isdigit():
        return False
    total = 0
    for i, char in enumerate(reversed(digits)):
        value = int(char)
        if i % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _mask_digits(text: str, keep_first: int, keep_last: int) -> str:
    """Digits (and X) to '*' except the first and last few; separators stay."""
    positions = [i for i, ch in enumerate(text) if ch.isdigit() or ch in "Xx"]
    hidden = set(positions[keep_first : len(positions) - keep_last])
    return "".join("*" if i in hidden else ch for i, ch in enumerate(text))


def _mask_mobile(text: str) -> str:
    prefix_end = len(text) - len(re.sub(r"^(?:\+|00)?86[ -]?", "", text))
    return text[:prefix_end] + _mask_digits(text[prefix_end:], 3, 4)


def _mask_landline(text: str) -> str:
    match = re.match(r"\(?0[0-9]{2,3}\)?[ -]?", text)
    area = match.group() if match else ""
    return area + _mask_digits(text[len(area) :], 0, 4)


def _mask_email(text: str) -> str:
    local, _, domain = text.partition("@")
    return f"{local[:1]}***@{domain}"


@dataclass(frozen=True, slots=True)
class Found:
    """What one masking pass saw: kinds masked, and numbers deliberately left alone."""

    masked: Counter[str]
    references: Counter[str]
    failed_checksum: int = 0


@dataclass(frozen=True)
class PiiOptions:
    customer_ref_key: Secret = Secret("")  # noqa: RUF009 - an immutable str, safe to share
    contact_key: Secret = Secret("")  # noqa: RUF009 - an immutable str, safe to share
    """Seal the raw author into `meta.contact_sealed` (ingest/sealed.py); "" = keep none."""
    reference_cues: tuple[str, ...] = ("订单号", "流水号", "保单号", "交易号")
    cue_kinds: tuple[str, ...] = ("name", "address")
    """Which cue-introduced kinds to mask; () turns name and address masking off."""

    def __post_init__(self) -> None:
        if self.contact_key and len(self.contact_key) < 16:
            raise ValueError("contact_key must be at least 16 characters (a long random secret)")
        unknown = set(self.cue_kinds) - {"name", "address"}
        if unknown:
            raise ValueError(f"cue_kinds: unknown kind(s) {sorted(unknown)}: name, address")


class Masker:
    """Finds and masks personal data in one string; reusable outside the chain
    (the desk masks free text an agent pastes)."""

    def __init__(
        self, reference_cues: tuple[str, ...], cue_kinds: tuple[str, ...] = ("name", "address")
    ) -> None:
        self._cues = load_cues() if cue_kinds else None
        self._cue_kinds = cue_kinds
        cues = "|".join(re.escape(cue) for cue in sorted(reference_cues, key=len, reverse=True))
        self._reference = (
            re.compile(rf"({cues})\s*(?:码)?\s*(?:[:#]|是|为)?\s*([0-9A-Za-z-]+)") if cues else None
        )

    def mask(self, text: str) -> tuple[str, Found]:
        masked: Counter[str] = Counter()
        references: Counter[str] = Counter()
        claimed: list[tuple[int, int]] = []
        if self._reference:
            for match in self._reference.finditer(text):
                claimed.append(match.span(2))
                references[match.group(1)] += 1
        edits: list[tuple[int, int, str]] = []
        failed = 0

        def free(start: int, end: int) -> bool:
            return all(end <= a or start >= b for a, b in claimed)

        def take(kind: str, start: int, end: int, replacement: str) -> None:
            claimed.append((start, end))
            edits.append((start, end, replacement))
            masked[kind] += 1

        passes: tuple[tuple[str, re.Pattern[str], Callable[[str], str | None]], ...] = (
            ("email", _EMAIL, _mask_email),
            ("id", _ID, lambda s: _mask_digits(s, 0, 4) if id_check_ok(s) else None),
            ("card", _CARD, _card),
            ("mobile", _MOBILE, _mask_mobile),
            ("landline", _LANDLINE, _mask_landline),
        )
        for kind, pattern, masker in passes:
            for match in pattern.finditer(text):
                start, end = match.span()
                if not free(start, end):
                    continue
                replacement = masker(match.group())
                if replacement is None:
                    failed += 1 if kind == "card" else 0  # IDs failing GB 11643 get a Luhn try
                    continue
                take(kind, start, end, replacement)
        if self._cues is not None:
            spans = []
            if "address" in self._cue_kinds:
                spans += self._cues.addresses(text)
            if "name" in self._cue_kinds:
                spans += self._cues.names(text)
            for span in spans:
                if free(span.start, span.end):
                    take(span.kind, span.start, span.end, span.replacement)
        for start, end, replacement in sorted(edits, reverse=True):
            text = text[:start] + replacement + text[end:]
        return text, Found(masked, references, failed)


def _card(candidate: str) -> str | None:
    """A Luhn-valid card number masked, else None. "6222 0212 3456 7894 12" may be a
    16-digit card followed by another number, so the grouped head is tried too."""
    digits = re.sub(r"[ -]", "", candidate)
    if luhn_ok(digits):
        return _mask_digits(candidate, 4, 4)
    head = candidate[:19]
    grouped = len(digits) > 16 and re.fullmatch(r"[0-9]{4}(?:[ -][0-9]{4}){3}", head)
    if grouped and luhn_ok(re.sub(r"[ -]", "", head)):
        return _mask_digits(head, 4, 4) + candidate[19:]
    return None


def contact_identifier(author: str) -> str:
    """The author in the one form every channel agrees on: mobile → E.164, e-mail →
    lower case, anything else unchanged (trimmed)."""
    author = author.strip()
    compact = re.sub(r"[\s()-]", "", author)
    mobile = _MOBILE_AUTHOR.fullmatch(compact)
    if mobile:
        return "+86" + mobile.group(1)
    if _EMAIL.fullmatch(author):
        return author.lower()
    return author


def customer_ref(author: str, key: str) -> str:
    identifier = contact_identifier(author)
    if not identifier:
        return ""
    return hmac.new(key.encode(), identifier.encode(), hashlib.sha256).hexdigest()[:32]


class MaskPii:
    """Masks ID, card, mobile, landline, e-mail, and cued names and addresses everywhere;
    sets `customer_ref`."""

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        global _warned_dev_key
        self.options = step_options(PiiOptions, options, "pii")
        self._key = self.options.customer_ref_key.reveal() or DEV_CUSTOMER_REF_KEY
        if self._key == DEV_CUSTOMER_REF_KEY and not _warned_dev_key:
            _warned_dev_key = True
            _warn_dev_key()
        self._masker = Masker(self.options.reference_cues, self.options.cue_kinds)

    def __call__(self, record: FeedbackRecord) -> FeedbackRecord:
        masked: Counter[str] = Counter()
        references: Counter[str] = Counter()
        failed = 0

        def mask(text: str) -> str:
            nonlocal failed
            out, found = self._masker.mask(text)
            masked.update(found.masked)
            references.update(found.references)
            failed += found.failed_checksum
            return out

        text = mask(record.text)
        text_masked = text if record.text_masked == record.text else mask(record.text_masked)
        turns = tuple(replace(turn, text=mask(turn.text)) for turn in record.turns)
        author = mask(record.author)
        ref = record.customer_ref or customer_ref(record.author, self._key)
        meta = record.meta
        if self.options.contact_key and record.author.strip() and "contact_sealed" not in meta:
            sealed = seal(self.options.contact_key.reveal(), record.author.strip(), record.id)
            meta = {**meta, "contact_sealed": sealed}
        kinds = tuple(k for k in PII_KINDS if masked[k] or k in record.pii_found)
        kinds += tuple(k for k in record.pii_found if k not in kinds)
        return replace(
            record,
            text=text,
            text_masked=text_masked,
            turns=turns,
            author=author,
            meta=meta,
            customer_ref=ref,
            pii_found=kinds,
            reasons=record.reasons + _reasons(masked, references, failed, record, ref),
        )


def _reasons(
    masked: Counter[str], references: Counter[str], failed: int, record: FeedbackRecord, ref: str
) -> tuple[Reason, ...]:
    reasons = []
    if masked:
        counts = ", ".join(f"{kind}×{masked[kind]}" for kind in PII_KINDS if masked[kind])
        reasons.append(Reason("pii", f"masked {counts}", 0.0))
    if references or failed:
        kept = [
            f"{n} number(s) after {cue} (a reference, not personal data)"
            for cue, n in references.items()
        ]
        if failed:
            kept.append(f"{failed} ID- or card-like number(s) failing their checksum")
        reasons.append(Reason("pii", "not masked: " + "; ".join(kept), 0.0))
    if ref and not record.customer_ref:
        identifier = contact_identifier(record.author)
        source = (
            "mobile number (E.164)"
            if identifier.startswith("+86")
            else "e-mail address"
            if "@" in identifier
            else "channel identity"
        )
        reasons.append(Reason("customer_ref", f"keyed hash of the author's {source}", 0.0))
    return tuple(reasons)
