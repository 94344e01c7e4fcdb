"""The pure parts of the review connectors: each store's parser on real-shaped pages
(tests/fixtures/app_reviews, sources in its README), hostile JSON thrown at every
parser, the cursor rules (ties, edits, oldest-first batches), the JWTs checked with
the public key, and Retry-After parsing."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.app_reviews import jwt
from connectors.app_reviews.cursor import (
    RSS_WINDOW,
    Found,
    SeenIds,
    Watermark,
    oldest_first,
    unreported,
    watermark_batches,
)
from connectors.app_reviews.http import retry_after_secs
from connectors.app_reviews.parse import CHANNEL, Page, each_item
from connectors.app_reviews.parse_apple import parse_connect, parse_rss
from connectors.app_reviews.parse_google import parse_reviews as parse_google
from connectors.app_reviews.parse_huawei import parse_reviews as parse_huawei
from ingest.abc import BadInput
from ingest.codec import decode_event, encode_event
from ingest.errors import PermanentError
from ingest.model import FeedbackEvent, stable_id
from tests.app_reviews_fakes import fixture, fixture_json, verify_jwt

FETCHED = datetime(2025, 11, 20, 12, 0, tzinfo=UTC)
APPLE, PACKAGE, HUAWEI = "1458752011", "cn.example.bank", "104567891"


def rss(data: bytes, country: str = "cn") -> Page:
    return parse_rss(data, app_id=APPLE, country=country, fetched_at=FETCHED, connector="c")


def connect(data: bytes) -> Page:
    return parse_connect(data, app_id=APPLE, connector="c")


def google(data: bytes) -> Page:
    return parse_google(data, package=PACKAGE, connector="c")


def huawei(data: bytes) -> Page:
    return parse_huawei(data, app_id=HUAWEI, connector="c")


PARSERS = [rss, connect, google, huawei]


# --- each store, on its real-shaped pages ------------------------------------------

# (parser, fixture, [(native_id, rating, author, received_at ISO, text start)], next, skipped)
CASES = [
    (
        rss,
        "apple_rss_cn_page1.json",
        [
            ("11234567895", 1, "夜猫子理财", "2025-11-19T04:47:03+00:00", "登录闪退\n升级到8.2.1"),
            (
                "11234561234",
                2,
                "小王不想排队",
                "2025-11-18T16:12:44+00:00",
                "转账失败还扣了手续费\n",
            ),
            ("11234550001", 3, "张阿姨", "2025-11-18T01:30:00+00:00", "人脸识别老是不过\n"),
            ("11234540007", 5, "Leo", "2025-11-16T15:05:10+00:00", "好用\n新版理财"),
        ],
        None,
        1,
    ),
    (
        connect,
        "asc_customer_reviews_page1.json",
        [
            (
                "00000046-b1c2-0014-729e-fbd500000001",
                1,
                "在外打工的老李",
                "2025-11-19T16:10:34+00:00",
                "转账失败\n给家里转生活费",
            ),
            (
                "00000046-b1c2-0014-729e-fbd500000002",
                2,
                "果粉一枚",
                "2025-11-19T07:02:11+00:00",
                "登录闪退\niOS 18",
            ),
        ],
        "https://api.appstoreconnect.apple.com/v1/apps/1458752011/customerReviews"
        "?cursor=Mg.AO3v0Pc&include=response&limit=2&sort=-createdDate",
        0,
    ),
    (
        google,
        "google_reviews_page1.json",
        [
            (
                "gp:AOqpTOG1kYbR3vX0aN7cZ2mQ9wE5tU8iL4sD6fH1jK3xV7bN0pM2qW5eR8tY1uI4oP7aS0dF3gH6jK9lZ2xC5vB8nM",
                1,
                "陈先生",
                "2025-11-19T02:00:00.713000+00:00",
                "扫码付款老是提示系统繁忙",
            ),
            (
                "gp:AOqpTOH7mN2bV5cX8zL1kJ4hG7fD0sA3pO6iU9yT2rE5wQ8",
                2,
                "A Google user",
                "2025-11-18T02:00:00+00:00",
                "人脸识别不过\n在光线好的地方",
            ),
        ],
        "Ci8KLWdwOkFPcXBUT0g3bU4yYlY1Y1g4ekwxa0o0aEc3ZkQwc0EzcE82aVU5eVQyckU1d1E4",
        0,
    ),
    (
        huawei,
        "huawei_reviews_page1.json",
        [
            ("d1b2c3a4e5f60718293a4b5c6d7e8f90", 1, "", "2025-11-19T02:40:00+00:00", "鸿蒙系统上"),
            ("90871234", 2, "", "2025-11-18T02:40:00+00:00", "指纹登录失效"),
            ("a9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4", 5, "", "2025-11-17T02:40:00+00:00", "开户流程"),
        ],
        None,
        0,
    ),
]


@pytest.mark.parametrize(("parse", "name", "expected", "next_", "skipped"), CASES)
def test_each_store_page_becomes_its_reviews(
    parse: Any, name: str, expected: list[tuple[Any, ...]], next_: str | None, skipped: int
) -> None:
    page = parse(fixture(name))
    assert page.bad == []
    assert page.skipped == skipped, "the app's metadata entry is not a review"
    assert page.next == next_
    got = [
        (
            f.event.native_id,
            f.event.rating,
            f.event.author,
            f.event.received_at.isoformat(),
            f.event.text[: len(exp[4])],
        )
        for f, exp in zip(page.found, expected, strict=True)
    ]
    assert got == expected
    for f in page.found:
        event = f.event
        store = event.meta["store"]
        app = event.meta["app_id"]
        assert event.channel == CHANNEL == "app_review"
        assert event.source == f"{store}:{app}"
        assert event.id == stable_id("app_review", store, app, event.native_id)
        assert decode_event(encode_event(event)) == event
        assert f.at_ms == int(event.received_at.timestamp() * 1000) or f.at_ms % 1000


def test_store_metadata_lands_in_meta() -> None:
    apple = rss(fixture("apple_rss_cn_page1.json")).found[0].event.meta
    assert (apple["country"], apple["app_version"], apple["vote_sum"]) == ("cn", "8.2.1", 3)
    asc = connect(fixture("asc_customer_reviews_page1.json")).found
    assert asc[0].event.meta["territory"] == "CHN"
    assert asc[0].event.meta["developer_response"]["state"] == "PUBLISHED"
    assert "developer_response" not in asc[1].event.meta, "no response, no key"
    play = google(fixture("google_reviews_page1.json")).found[0]
    assert play.event.meta["app_version"] == "8.2.1"
    assert play.event.meta["device"] == "HWVOG"
    assert play.event.meta["device_metadata"]["manufacturer"] == "Huawei"
    assert play.event.meta["developer_reply"]["text"].startswith("您好")
    assert play.at_ms == 1763517600713, "nanos kept to the millisecond"
    hw = huawei(fixture("huawei_reviews_page1.json")).found[1].event.meta
    assert (hw["country"], hw["app_version"], hw["device"]) == ("CN", "8.2.0", "nova 11")


def test_rss_single_entry_object_and_missing_updated() -> None:
    page = rss(fixture("apple_rss_single_entry.json"), "hk")
    [found] = page.found
    assert found.event.received_at == FETCHED, "no `updated`: the fetch time stands in"
    assert found.at_ms == 0, "…but the cursor must not see it as changed on every poll"
    assert found.event.meta["time_from_fetch"] is True
    assert page.last_page == 1


def test_rss_without_entries_is_an_empty_page() -> None:
    doc = fixture_json("apple_rss_cn_page1.json")
    del doc["feed"]["entry"]
    page = rss(orjson.dumps(doc))
    assert (page.found, page.bad, page.has_more) == ([], [], False)


def test_one_bad_review_is_dead_lettered_with_its_bytes_and_the_others_arrive() -> None:
    doc = fixture_json("google_reviews_page1.json")
    doc["reviews"][0]["comments"][0]["userComment"]["starRating"] = 9
    page = google(orjson.dumps(doc))
    assert [f.event.rating for f in page.found] == [2]
    [bad] = page.bad
    assert bad.kind == "bad_rating" and "starRating" in bad.reason
    assert orjson.loads(bad.raw)["reviewId"] == doc["reviews"][0]["reviewId"]


def test_rating_without_words_is_skipped_not_dead_lettered() -> None:
    doc = fixture_json("huawei_reviews_page1.json")
    doc["data"]["reviewList"][0]["content"] = "  "
    page = huawei(orjson.dumps(doc))
    assert (len(page.found), page.skipped, page.bad) == (2, 1, [])


def test_huawei_says_whether_more_pages_follow_only_when_it_knows() -> None:
    """`hasNext` where the answer has it; None (ask `total`) in the HarmonyOS envelope."""
    page = huawei(fixture("huawei_reviews_page1.json"))
    assert (page.has_more, page.total) == (False, 3)
    harmony = b'{"rtnCode": 0, "rtnDesc": "success", "data": [], "total": 250}'
    assert (huawei(harmony).has_more, huawei(harmony).total) == (None, 250)


def test_huawei_error_envelope_is_an_error_not_an_empty_page() -> None:
    with pytest.raises(PermanentError, match="50010028"):
        huawei(b'{"ret": {"rtnCode": 50010028, "rtnDesc": "noPermission"}}')
    harmony = b'{"rtnCode": 0, "rtnDesc": "success", "data": [], "total": 0}'
    assert huawei(harmony).found == []


# store → (parser, fixture, where its first-spoiled review is)
PAGES: dict[str, tuple[Any, str, tuple[str | int, ...]]] = {
    "asc": (connect, "asc_customer_reviews_page1.json", ("data", 0)),
    "rss": (rss, "apple_rss_cn_page1.json", ("feed", "entry", 1)),
    "google": (google, "google_reviews_page1.json", ("reviews", 0, "comments", 0)),
    "huawei": (huawei, "huawei_reviews_page1.json", ("data", "reviewList", 0)),
}


def spoiled(store: str, path: tuple[str | int, ...], value: Any) -> bytes:
    """The store's fixture page with one review's value at `path` replaced."""
    _, name, item = PAGES[store]
    doc = fixture_json(name)
    node = doc
    for key in (*item, *path[:-1]):
        node = node[key]
    node[path[-1]] = value
    return orjson.dumps(doc)


@pytest.mark.parametrize(
    ("store", "path", "value", "says"),
    [
        # no UTC datetime exists for these: astimezone() raised OverflowError
        ("asc", ("attributes", "createdDate"), "9999-12-31T23:00:00-08:00", "between 2000"),
        ("asc", ("attributes", "createdDate"), "0001-01-01T00:00:00+08:00", "between 2000"),
        # valid times, but ones that would put every later review behind the watermark
        ("asc", ("attributes", "createdDate"), "9999-12-31T00:00:00Z", "between 2000"),
        ("google", ("userComment", "lastModified", "seconds"), "32503680000", "between 2000"),
        ("huawei", ("dateline",), 32503680000000, "between 2000"),
        ("huawei", ("dateline",), 0, "between 2000"),
        # "²".isdigit() is true and int("²") raised ValueError
        ("rss", ("im:voteSum", "label"), "²", "im:voteSum must be an integer"),
        ("rss", ("im:rating", "label"), "²", "im:rating must be a star rating"),
        ("rss", ("im:voteCount", "label"), "--5", "im:voteCount must be an integer"),
        ("google", ("userComment", "thumbsUpCount"), "¹²", "thumbsUpCount must be an integer"),
        ("huawei", ("rating",), "²", "rating must be a star rating"),
    ],
)
def test_a_wrong_shaped_value_dead_letters_its_review_and_the_others_arrive(
    store: str, path: tuple[str | int, ...], value: Any, says: str
) -> None:
    parse, name, _ = PAGES[store]
    whole = parse(fixture(name)).found
    page = parse(spoiled(store, path, value))
    [bad] = page.bad
    assert says in bad.reason and bad.kind in ("bad_time", "bad_schema", "bad_rating")
    assert orjson.dumps(value) in bad.raw, "dead-lettered with the review's own bytes"
    assert [f.review_id for f in page.found] == [f.review_id for f in whole[1:]]
    for f in page.found:
        encode_event(f.event)


def test_integers_beyond_64_bits_in_meta_are_kept_as_digits() -> None:
    """orjson refuses them, so the event could be parsed but never published."""
    doc = fixture_json("google_reviews_page1.json")
    user = doc["reviews"][0]["comments"][0]["userComment"]
    user["appVersionCode"] = "123456789012345678901"
    user["thumbsUpCount"] = str(-(2**63))
    [first, second] = google(orjson.dumps(doc)).found
    assert first.event.meta["app_version_code"] == "123456789012345678901"
    assert first.event.meta["thumbs_up"] == -(2**63), "the edge of 64 bits is still a number"
    assert decode_event(encode_event(first.event)) == first.event
    assert second.event.meta["app_version_code"] == 80200


def test_an_unforeseen_error_in_one_review_is_dead_lettered_not_raised() -> None:
    """The safety net under the field readers: one review can never block its page."""
    items = [{"id": "1"}, {"id": "2", "text": "王五 13812345678"}, {"id": "3"}]

    def one(item: Any) -> Found:
        if "text" in item:
            raise ValueError(f"cannot read {item['text']}")
        return found(item["id"], 1)

    page = Page()
    each_item(items, page, one, ref=lambda i: f"review {i['id']}")
    assert [f.review_id for f in page.found] == ["1", "3"]
    [bad] = page.bad
    assert (bad.kind, bad.ref, orjson.loads(bad.raw)) == ("unexpected", "review 2", items[1])
    assert "ValueError" in bad.reason
    assert "13812345678" not in bad.reason, "the type, not the message: it may quote a customer"


@pytest.mark.parametrize(
    ("parse", "data"),
    [
        (rss, b"<html>503 Service Unavailable</html>"),
        (connect, b'["not", "an", "object"]'),
        (google, b'{"reviews": {"not": "a list"}}'),
        (huawei, b'{"ret": {"rtnCode": 0}, "data": {"reviewList": 7}}'),
    ],
)
def test_unreadable_pages_raise_a_clear_error(parse: Any, data: bytes) -> None:
    with pytest.raises(PermanentError) as info:
        parse(data)
    assert str(info.value)


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "feed",
                    "entry",
                    "im:rating",
                    "label",
                    "id",
                    "updated",
                    "data",
                    "attributes",
                    "rating",
                    "createdDate",
                    "reviews",
                    "reviewId",
                    "comments",
                    "userComment",
                    "lastModified",
                    "seconds",
                    "nanos",
                    "starRating",
                    "text",
                    "ret",
                    "rtnCode",
                    "reviewList",
                    "dateline",
                    "content",
                    "included",
                    "links",
                    "next",
                    "author",
                ]
            ),
            children,
            max_size=6,
        )
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(doc=JSON, which=st.integers(0, len(PARSERS) - 1))
def test_arbitrary_json_never_crashes_a_parser(doc: Any, which: int) -> None:
    """Store-ish keys with arbitrary values: a PermanentError or BadInputs, never a crash."""
    try:
        page = PARSERS[which](orjson.dumps(doc))
    except PermanentError as exc:
        assert str(exc)
        return
    for bad in page.bad:
        assert bad.reason and bad.kind
        assert bad.kind != "unexpected", "caught only by the safety net: fix the reader"
    for found in page.found:
        assert isinstance(found.event, FeedbackEvent) and found.event.text.strip()
        encode_event(found.event)


# --- cursor ---------------------------------------------------------------------------


def found(review_id: str, at_ms: int) -> Found:
    event = FeedbackEvent(id=f"e-{review_id}", channel="app_review", text="x")
    return Found(event, review_id, at_ms)


NOW_MS = 10_000


def test_watermark_keeps_reviews_of_the_same_millisecond_apart() -> None:
    mark = Watermark().advance(1000, "b", now_ms=NOW_MS)
    assert not mark.is_new(1000, "b") and mark.is_new(1000, "a"), "a tie is not a duplicate"
    assert not mark.is_new(999, "z") and mark.is_new(1001, "a")
    assert mark.advance(1000, "a", now_ms=NOW_MS).ids == {"a", "b"}
    assert mark.advance(999, "x", now_ms=NOW_MS) == mark
    again = Watermark.decode(mark.advance(1000, "a", now_ms=NOW_MS).encode())
    assert again == Watermark(1000, frozenset({"a", "b"}))


def test_a_review_after_now_is_remembered_without_moving_the_watermark() -> None:
    mark = Watermark(1000, frozenset({"a"})).advance(90_000, "f", now_ms=NOW_MS)
    assert (mark.at_ms, mark.ids, dict(mark.ahead)) == (1000, {"a"}, {"f": 90_000})
    assert not mark.is_new(90_000, "f"), "handed on once, not on every poll"
    assert mark.is_new(95_000, "f"), "edited: its new version comes"
    assert mark.is_new(2000, "x"), "a real review after the watermark still comes"
    assert Watermark.decode(mark.encode()) == mark
    passed = mark.advance(5000, "x", now_ms=NOW_MS).advance(90_000, "y", now_ms=100_000)
    assert (passed.at_ms, dict(passed.ahead)) == (90_000, {"f": 90_000}), "same ms: kept"
    assert passed.advance(90_001, "z", now_ms=100_000).ahead == {}, "passed: forgotten"


def test_an_edited_review_is_new_again() -> None:
    mark = Watermark(5000, frozenset({"r1"}))
    assert mark.is_new(7000, "r1"), "lastModified moved: read it again (same record id)"


def test_batches_come_oldest_first_and_each_cursor_covers_its_batch() -> None:
    items = [found("c", 3000), found("a", 1000), found("b", 2000), found("a", 1500)]
    batches = list(watermark_batches(items, Watermark(), size=2, now_ms=NOW_MS))
    assert [[e.id for e in events] for events, _ in batches] == [["e-a", "e-b"], ["e-c"]]
    assert [m.at_ms for _, m in batches] == [2000, 3000]
    assert [f.at_ms for f in oldest_first(items) if f.review_id == "a"] == [1500]


def test_cursors_refuse_what_is_not_theirs() -> None:
    assert Watermark.decode(None) == Watermark()
    for bad in (
        "nope",
        '{"v": 9}',
        '{"v": 1, "t": "x", "ids": []}',
        '{"v": 1, "t": 1, "ids": [], "ahead": {"f": "x"}}',
    ):
        with pytest.raises(ValueError):
            Watermark.decode(bad)
    with pytest.raises(ValueError):
        SeenIds.decode('{"v": 1, "seen": {"cn": {"1": "x"}}}')


def test_rss_seen_ids_detect_edits_and_stay_within_the_feed_window() -> None:
    seen = SeenIds().add("cn", [found("1", 100)])
    assert not seen.is_new("cn", "1", 100)
    assert seen.is_new("cn", "1", 200), "`updated` moved: an edit"
    assert seen.is_new("hk", "1", 100), "storefronts are apart"
    big = seen.add("cn", [found(str(i), 1000 + i) for i in range(RSS_WINDOW + 50)])
    assert len(big.by_country["cn"]) == RSS_WINDOW
    assert SeenIds.decode(big.encode()) == big


def test_a_bad_item_is_dead_lettered_once_not_every_poll() -> None:
    items = [BadInput("bad rating", b'{"reviewId": "x"}'), BadInput("bad", b"{}")]
    fresh, reported = unreported(items, ())
    assert len(fresh) == 2
    again, reported_again = unreported(items, reported)
    assert again == [] and reported_again == reported


# --- JWTs -------------------------------------------------------------------------------


def _claims(token: str) -> dict[str, Any]:
    body = token.split(".")[1]
    return dict(orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))))


def test_app_store_connect_token_is_es256_with_apples_claims() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    token = jwt.asc_token(key, "2X9R4HXF34", "issuer-uuid", now=1_763_500_000)
    header, claims = verify_jwt(token, key.public_key())
    assert header == {"alg": "ES256", "kid": "2X9R4HXF34", "typ": "JWT"}
    assert claims == {
        "iss": "issuer-uuid",
        "iat": 1_763_500_000,
        "exp": 1_763_500_000 + 20 * 60,
        "aud": "appstoreconnect-v1",
    }
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(ValueError, match="signature"):
        verify_jwt(token, other.public_key())


def test_google_assertion_is_rs256_for_the_token_uri() -> None:
    key = rsa.generate_private_key(65537, 2048)
    token = jwt.google_assertion(key, "kid1", "sa@example.iam", "https://t.example/token", 100)
    header, claims = verify_jwt(token, key.public_key())
    assert header == {"alg": "RS256", "typ": "JWT", "kid": "kid1"}
    assert claims["aud"] == "https://t.example/token"
    assert claims["scope"] == "https://www.googleapis.com/auth/androidpublisher"
    assert claims["exp"] - claims["iat"] == 3600
    assert _claims(token)["iss"] == "sa@example.iam"


def test_keys_of_the_wrong_kind_are_refused() -> None:
    with pytest.raises(jwt.BadKey):
        jwt.load_ec_p256("not a key")
    rsa_pem = rsa.generate_private_key(65537, 2048)
    from tests.app_reviews_fakes import _pem

    with pytest.raises(jwt.BadKey, match="P-256"):
        jwt.load_ec_p256(_pem(rsa_pem))
    with pytest.raises(jwt.BadKey, match="RSA"):
        jwt.load_rsa(_pem(ec.generate_private_key(ec.SECP256R1())))


# --- Retry-After --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        ("0", 0.0),
        ("Thu, 20 Nov 2025 12:01:00 GMT", 60.0),
        ("Thu, 20 Nov 2025 11:00:00 GMT", 0.0),
        ("soon", None),
        (None, None),
    ],
)
def test_retry_after_seconds_or_http_date(value: str | None, expected: float | None) -> None:
    assert retry_after_secs(value, FETCHED.timestamp()) == expected
