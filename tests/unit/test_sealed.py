"""Contact data sealed at rest (ingest/sealed.py) and the pii step that seals it."""

from __future__ import annotations

import pytest

from ingest.errors import ConfigError, PermanentError
from ingest.model import FeedbackEvent, FeedbackRecord
from ingest.sealed import seal, unseal
from processors.pii import MaskPii

KEY = "a-long-random-contact-key-0123456789"


def test_a_sealed_contact_opens_with_its_key_and_record() -> None:
    token = seal(KEY, "13801235678", "rec-1")
    assert "13801235678" not in token and token.startswith("v1:")
    assert unseal(KEY, token, "rec-1") == "13801235678"


def test_sealing_is_deterministic_so_redelivery_changes_nothing() -> None:
    assert seal(KEY, "oAbc123", "rec-1") == seal(KEY, "oAbc123", "rec-1")
    assert seal(KEY, "oAbc123", "rec-1") != seal(KEY, "oAbc123", "rec-2")


@pytest.mark.parametrize(
    ("key", "context", "mutate"),
    [
        ("another-key-of-sufficient-length", "rec-1", lambda t: t),
        (KEY, "rec-2", lambda t: t),  # copied onto another record
        (KEY, "rec-1", lambda t: t[:-4] + ("AAAA" if not t.endswith("AAAA") else "BBBB")),
        (KEY, "rec-1", lambda t: t[:20]),
        (KEY, "rec-1", lambda t: "v2:" + t[3:]),
    ],
)
def test_wrong_key_record_or_bytes_do_not_open(key: str, context: str, mutate: object) -> None:
    token = mutate(seal(KEY, "zhang@qq.com", "rec-1"))  # type: ignore[operator]
    with pytest.raises(PermanentError):
        unseal(key, token, context)


def record(author: str) -> FeedbackRecord:
    return FeedbackRecord.from_event(
        FeedbackEvent(id="rec-9", channel="phone", text="卡被盗刷", author=author)
    )


def test_pii_step_seals_the_raw_author_only_when_a_key_is_configured() -> None:
    sealed = MaskPii({"contact_key": KEY})(record(" 13801235678 "))
    assert "13801235678" not in sealed.author
    assert unseal(KEY, sealed.meta["contact_sealed"], "rec-9") == "13801235678"
    plain = MaskPii({})(record("13801235678"))
    assert "contact_sealed" not in plain.meta and "13801235678" not in str(plain)
    assert "contact_sealed" not in MaskPii({"contact_key": KEY})(record("")).meta


def test_a_short_contact_key_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="contact_key"):
        MaskPii({"contact_key": "short"})
