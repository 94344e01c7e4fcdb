"""The three review connectors against local fakes of the stores (tests/app_reviews_fakes):
the contract suite for each, and what the stores make hard: re-polls that add nothing,
edits that update, ties, rate limits, tokens, crashes between batches, bad keys."""

from __future__ import annotations

import contextlib
import gzip
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from connectors.app_reviews.apple import AppStoreConnector
from connectors.app_reviews.connector import ReviewConnector
from connectors.app_reviews.cursor import Found, Watermark
from connectors.app_reviews.google import GooglePlayConnector
from connectors.app_reviews.http import MAX_RESPONSE_BYTES
from connectors.app_reviews.huawei import HuaweiAppGalleryConnector, next_query
from connectors.app_reviews.parse import Page
from ingest.abc import Batch, PullConnector
from ingest.codec import encode_event
from ingest.errors import ConfigError, TransientError
from ingest.model import FeedbackEvent
from ingest.options import parse_options
from ingest.registry import connector_class
from ingest.testing import ConnectorContract
from tests.app_reviews_fakes import (
    APPLE_APP,
    HUAWEI_APP,
    PACKAGE,
    FakeStores,
    Keys,
    asc_item,
    asc_options,
    fixture,
    google_item,
    google_options,
    huawei_item,
    huawei_options,
    rss_entry,
    rss_options,
    running,
)

KEYS = Keys.make()
OTHER_KEYS = Keys.make()
NOWHERE = "http://127.0.0.1:9"


def make(cls: type[ReviewConnector], table: dict[str, Any]) -> Any:
    return cls("t", parse_options(cls.Options, table, "connectors.t"))


async def drain(connector: PullConnector, cursor: str | None = None) -> list[Batch]:
    return [batch async for batch in connector.read(cursor)]


def ids(batches: list[Batch]) -> list[str]:
    return [e.native_id for b in batches for e in b.events]


def last_cursor(batches: list[Batch]) -> str | None:
    cursors = [b.cursor for b in batches if b.cursor is not None]
    return cursors[-1] if cursors else None


@pytest.fixture
async def fake() -> AsyncIterator[FakeStores]:
    async with running(FakeStores.with_fixtures(KEYS)) as stores:
        yield stores


# --- the contract, one class per connector (and per Apple source) ----------------------


class _FakeBacked(ConnectorContract):
    """Starts a fake per test that needs one; closed after the test."""

    fake_options: Any

    @pytest.fixture(autouse=True)
    async def _fakes(self) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            self._stack = stack
            yield

    async def pull_connector(self, tmp_path: Path) -> PullConnector:
        stores = await self._stack.enter_async_context(running(FakeStores.with_fixtures(KEYS)))
        connector: PullConnector = make(self.connector, type(self).fake_options(stores))  # type: ignore[arg-type]
        return connector


class TestAppStoreRssContract(_FakeBacked):
    connector = AppStoreConnector
    options = {"app_id": APPLE_APP, "countries": ["cn", "hk"]}
    bad_check_options = {"app_id": APPLE_APP, "rss_base": NOWHERE, "max_retries": 0}
    good_payloads = [fixture("apple_rss_cn_page1.json")]
    bad_payloads = [
        b"{",
        b'{"feed": {"entry": [{"im:rating": {"label": "9"}, "id": {"label": "1"}}]}}',
    ]
    fake_options = staticmethod(rss_options)


class TestAppStoreConnectContract(_FakeBacked):
    connector = AppStoreConnector
    options = {
        "app_id": APPLE_APP,
        "source": "connect_api",
        "issuer_id": "57246542-96fe-1a63-e053-0824d011072a",
        "key_id": "2X9R4HXF34",
        "private_key": KEYS.asc_pem,
    }
    bad_check_options = {
        **options,
        "private_key": OTHER_KEYS.asc_pem,
        "api_base": NOWHERE,
        "max_retries": 0,
    }
    good_payloads = [fixture("asc_customer_reviews_page1.json")]
    bad_payloads = [b"[]", b'{"data": [{"type": "customerReviews", "id": "x", "attributes": {}}]}']
    fake_options = staticmethod(asc_options)


class TestGooglePlayContract(_FakeBacked):
    connector = GooglePlayConnector
    options = {"package_name": PACKAGE, "service_account_json": KEYS.service_account_json()}
    bad_check_options = {**options, "token_url": f"{NOWHERE}/token", "max_retries": 0}
    good_payloads = [fixture("google_reviews_page1.json"), fixture("google_reviews_page2.json")]
    bad_payloads = [b"not json", b'{"reviews": [{"reviewId": "x", "comments": []}]}']
    fake_options = staticmethod(google_options)


class TestHuaweiAppGalleryContract(_FakeBacked):
    connector = HuaweiAppGalleryConnector
    options = {
        "app_id": HUAWEI_APP,
        "client_id": "1234567890",
        "client_secret": "agc-s3cret-for-tests",
    }
    bad_check_options = {**options, "api_base": NOWHERE, "max_retries": 0}
    good_payloads = [fixture("huawei_reviews_page1.json")]
    bad_payloads = [b"{", b'{"ret": {"rtnCode": 0}, "data": {"reviewList": [{"reviewId": "1"}]}}']
    fake_options = staticmethod(huawei_options)


def test_the_registry_knows_the_three_connectors() -> None:
    assert connector_class("app_store") is AppStoreConnector
    assert connector_class("google_play") is GooglePlayConnector
    assert connector_class("huawei_appgallery") is HuaweiAppGalleryConnector


# --- reading ------------------------------------------------------------------------------

STORES = [
    (AppStoreConnector, rss_options, 4),
    (AppStoreConnector, asc_options, 3),
    (GooglePlayConnector, google_options, 3),
    (HuaweiAppGalleryConnector, huawei_options, 3),
]


@pytest.mark.parametrize(("cls", "options", "count"), STORES)
async def test_every_review_once_oldest_first_and_a_repoll_adds_nothing(
    fake: FakeStores, cls: Any, options: Any, count: int
) -> None:
    connector = make(
        cls, options(fake, page_size=2) if options is not rss_options else options(fake)
    )
    try:
        first = await drain(connector)
        events = [e for b in first for e in b.events]
        assert len(events) == len({e.id for e in events}) == count
        times = [e.received_at for e in events]
        assert times == sorted(times), "oldest first: each batch's cursor covers what is before"
        assert ids(await drain(connector, last_cursor(first))) == []
    finally:
        await connector.close()


async def test_an_edited_google_review_comes_back_as_the_same_record(fake: FakeStores) -> None:
    connector = make(GooglePlayConnector, google_options(fake))
    try:
        first = await drain(connector)
        before = {e.native_id: e for b in first for e in b.events}
        target = fake.google[1]
        comment = target["comments"][0]["userComment"]
        comment["text"] = "人脸识别不过\t更新：客服帮我重置后可以了，改成四星。"
        comment["starRating"] = 4
        comment["lastModified"] = {"seconds": str(1763600000), "nanos": 0}
        [again] = [e for b in await drain(connector, last_cursor(first)) for e in b.events]
        old = before[target["reviewId"]]
        assert again.id == old.id, "same review, same record: the sinks update it"
        assert (again.rating, again.text) == (
            4,
            "人脸识别不过\n更新：客服帮我重置后可以了，改成四星。",
        )
        assert again.received_at > old.received_at, "the new version's time"
    finally:
        await connector.close()


async def test_an_edited_rss_review_comes_back_and_new_ones_arrive(fake: FakeStores) -> None:
    connector = make(AppStoreConnector, rss_options(fake))
    try:
        first = await drain(connector)
        entry = fake.rss["cn"][2]
        entry["updated"]["label"] = "2025-11-20T08:00:00-07:00"
        entry["content"]["label"] = "补充：去网点柜台验证后已经解决。"
        fake.rss["cn"].append(rss_entry("11234570000", datetime(2025, 11, 21, tzinfo=UTC), 1))
        second = await drain(connector, last_cursor(first))
        assert ids(second) == [entry["id"]["label"], "11234570000"]
        assert ids(await drain(connector, last_cursor(second))) == []
    finally:
        await connector.close()


async def test_reviews_in_the_same_millisecond_are_both_read(fake: FakeStores) -> None:
    connector = make(HuaweiAppGalleryConnector, huawei_options(fake))
    try:
        first = await drain(connector)
        newest = max(int(i["dateline"]) for i in fake.huawei)
        at = datetime.fromtimestamp(newest / 1000, UTC)
        fake.huawei.append(huawei_item("hw-same-ms", at, 3))
        assert ids(await drain(connector, last_cursor(first))) == ["hw-same-ms"]
    finally:
        await connector.close()


async def test_a_crash_between_batches_loses_nothing(fake: FakeStores) -> None:
    """The runtime commits each batch's cursor after the broker confirmed it; stopping
    after the first commit and polling again reads exactly the rest."""
    connector = make(GooglePlayConnector, google_options(fake, batch_size=1))
    try:
        batches = connector.read(None)
        committed = (await anext(batches)).cursor
        await batches.aclose()  # the worker died here
        rest = ids(await drain(connector, committed))
        everything = ids(await drain(connector))
        assert len(rest) == 2 and everything[1:] == rest
    finally:
        await connector.close()


async def test_huawei_backfill_is_read_in_windows_of_at_most_six_months(fake: FakeStores) -> None:
    old = datetime.now(UTC) - timedelta(days=300)
    fake.huawei.append(huawei_item("hw-old", old, 2))
    connector = make(HuaweiAppGalleryConnector, huawei_options(fake, backfill_days=400))
    try:
        assert "hw-old" in ids(await drain(connector))
        windows = [q for m, q in fake.requests if "/manage/dev/reviews" in q]
        assert len(windows) >= 3, "400 days need three windows (the fake refuses longer spans)"
    finally:
        await connector.close()


@pytest.mark.parametrize(
    ("cls", "options", "store", "make_item"),
    [
        (AppStoreConnector, asc_options, "asc", asc_item),
        (GooglePlayConnector, google_options, "google", google_item),
    ],
)
async def test_a_review_stamped_a_day_ahead_does_not_hide_the_next_polls_reviews(
    fake: FakeStores, cls: Any, options: Any, store: str, make_item: Any
) -> None:
    """Clock skew at the store or a forged date: the review is published, but the
    watermark stays at now, so a review stamped a minute ago on the next poll arrives
    (it was behind a watermark a day ahead, skipped for good). The future one is not
    published again. AppGallery is left out: it is asked for nothing after now."""
    now = datetime.now(UTC)
    reviews: list[dict[str, Any]] = getattr(fake, store)
    reviews.append(make_item("20000000-future", now + timedelta(days=1), 0))
    connector = make(cls, options(fake))
    try:
        first = await drain(connector)
        assert "20000000-future" in ids(first)
        reviews.append(make_item("20000001-fresh", now - timedelta(minutes=1), 1))
        second = await drain(connector, last_cursor(first))
        assert ids(second) == ["20000001-fresh"]
        assert ids(await drain(connector, last_cursor(second))) == []
    finally:
        await connector.close()


async def test_a_watermark_stored_ahead_of_now_is_read_again_from_the_horizon(
    fake: FakeStores,
) -> None:
    """A cursor written before the fix, a day ahead: the poll reads from the backfill
    horizon again (as for an unreadable cursor) instead of skipping until tomorrow;
    the review the watermark stood on is not published again."""
    now = datetime.now(UTC)
    ahead = now + timedelta(days=1)
    fake.google.append(google_item("gp:future", ahead, 0))
    fake.google.append(google_item("gp:fresh", now - timedelta(minutes=1), 1))
    stored = Watermark(int(ahead.timestamp()) * 1000, frozenset({"gp:future"})).encode()
    connector = make(GooglePlayConnector, google_options(fake, backfill_days=7))
    try:
        got = ids(await drain(connector, stored))
        assert "gp:fresh" in got and "gp:future" not in got
    finally:
        await connector.close()


class HarmonyEnvelope(FakeStores):
    """AppGallery's HarmonyOS 5+ answer: `{"rtnCode", "data": [...], "total"}`, no
    `hasNext` (the shape the parser tests use)."""

    async def _huawei(self, request: web.Request) -> web.Response:
        answer = await super()._huawei(request)
        assert isinstance(answer.body, bytes)
        doc = orjson.loads(answer.body)
        if isinstance(doc.get("data"), dict):
            data = doc["data"]
            doc = {"rtnCode": 0, "data": data["reviewList"], "total": data["total"]}
        return web.json_response(body=orjson.dumps(doc))


class DeletesAfterFirstPage(FakeStores):
    """A review on the page just served is removed (moderation, or its author) before
    the next page is asked for: by position, every later review moves up one place."""

    deleted = False

    async def _huawei(self, request: web.Request) -> web.Response:
        answer = await super()._huawei(request)
        if not self.deleted:
            self.deleted = True
            del self.huawei[10]
        return answer


def minutes_apart(count: int) -> list[dict[str, Any]]:
    top = datetime.now(UTC) - timedelta(minutes=1)
    return [huawei_item(f"hw-{i:04d}", top - timedelta(minutes=i), i) for i in range(count)]


async def test_harmonyos_answers_without_has_next_are_paged_by_their_total() -> None:
    """250 reviews, 100 a page: all on the first poll (page 1 alone used to move the
    watermark past the other 150, lost for good), in three requests (one window)."""
    async with running(HarmonyEnvelope(KEYS)) as stores:
        stores.huawei = minutes_apart(250)
        table = huawei_options(stores, harmonyos=True, page_size=100, backfill_days=30)
        connector = make(HuaweiAppGalleryConnector, table)
        try:
            first = await drain(connector)
            assert sorted(ids(first)) == sorted(i["reviewId"] for i in stores.huawei)
            asked = [q for _, q in stores.requests if "/dev/reviews" in q]
            assert len(asked) == 3 and all("/marketing-api/v2/" in q for q in asked)
            assert ids(await drain(connector, last_cursor(first))) == []
        finally:
            await connector.close()


async def test_a_review_deleted_between_pages_does_not_hide_the_next_one() -> None:
    async with running(DeletesAfterFirstPage(KEYS)) as stores:
        stores.huawei = minutes_apart(150)
        connector = make(HuaweiAppGalleryConnector, huawei_options(stores, page_size=100))
        try:
            got = set(ids(await drain(connector)))
            assert {i["reviewId"] for i in stores.huawei} <= got, "hw-0100 was skipped"
            assert "hw-0010" in got, "read before it was deleted"
        finally:
            await connector.close()


async def test_more_reviews_in_one_millisecond_than_a_page_holds_are_all_read() -> None:
    """Paging by time cannot move inside one millisecond: there it pages by number."""
    async with running(FakeStores(KEYS)) as stores:
        at = datetime.now(UTC) - timedelta(minutes=1)
        stores.huawei = [huawei_item(f"hw-same-{i}", at, i) for i in range(5)]
        stores.huawei.append(huawei_item("hw-older", at - timedelta(minutes=1), 5))
        connector = make(HuaweiAppGalleryConnector, huawei_options(stores, page_size=2))
        try:
            assert len(set(ids(await drain(connector)))) == 6
        finally:
            await connector.close()


def at(*times_ms: int) -> list[Found]:
    event = FeedbackEvent(id="e", channel="app_review", text="x")
    return [Found(event, str(ms), ms) for ms in times_ms]


@pytest.mark.parametrize(
    ("page", "number", "expected"),
    [
        (Page(found=at(900, 500), has_more=False, total=999), 1, None),  # hasNext=0 wins
        (Page(found=at(900, 500), has_more=True), 4, (501, 1)),  # by time, from page 1
        (Page(found=at(900, 500), total=250), 2, (501, 1)),  # 2 × 100 < 250
        (Page(found=at(900, 500), total=250), 3, None),  # 3 × 100 ≥ 250
        (Page(found=at(999, 999), total=250), 1, (1000, 2)),  # one millisecond: by number
        (Page(skipped=100), 1, (1000, 2)),  # no usable review on a full page: by number
        (Page(skipped=40), 1, None),  # neither hasNext nor total: a short page ends it
    ],
)
def test_the_next_appgallery_request(page: Page, number: int, expected: Any) -> None:
    assert next_query(page, 0, 1000, number, 100) == expected


@pytest.mark.parametrize(
    ("options", "spoil", "kind"),
    [
        (  # astimezone() raised OverflowError: the whole poll failed, every retry
            asc_options,
            lambda f: f.asc[0]["attributes"].update(createdDate="9999-12-31T23:00:00-08:00"),
            "bad_time",
        ),
        (  # "²".isdigit() is true, int("²") raised ValueError
            rss_options,
            lambda f: f.rss["cn"][0].update({"im:voteSum": {"label": "²"}}),
            "bad_schema",
        ),
    ],
)
async def test_a_review_with_a_wrong_shaped_value_does_not_hold_back_the_others(
    fake: FakeStores, options: Any, spoil: Any, kind: str
) -> None:
    whole = make(AppStoreConnector, options(fake))
    try:
        everything = ids(await drain(whole))
    finally:
        await whole.close()
    spoil(fake)
    connector = make(AppStoreConnector, options(fake))
    try:
        batches = await drain(connector)
        [bad] = [b for batch in batches for b in batch.bad]
        assert bad.kind == kind
        spoiled = [i for i in everything if i.encode() in bad.raw]
        assert len(spoiled) == 1 and len(everything) > 1
        assert ids(batches) == [i for i in everything if i not in spoiled]
    finally:
        await connector.close()


async def test_an_integer_beyond_64_bits_is_published_as_its_digits(fake: FakeStores) -> None:
    fake.google[0]["comments"][0]["userComment"]["appVersionCode"] = "123456789012345678901"
    connector = make(GooglePlayConnector, google_options(fake))
    try:
        events = [e for b in await drain(connector) for e in b.events]
        assert len(events) == 3
        for event in events:
            encode_event(event)  # orjson raised TypeError here, failing the publish
        assert "123456789012345678901" in [e.meta.get("app_version_code") for e in events]
    finally:
        await connector.close()


async def test_app_store_connect_notes_developer_responses_and_signs_fresh_tokens(
    fake: FakeStores,
) -> None:
    connector = make(AppStoreConnector, asc_options(fake, page_size=2))
    try:
        events = [e for b in await drain(connector) for e in b.events]
        answered = [e for e in events if "developer_response" in e.meta]
        assert [e.meta["developer_response"]["state"] for e in answered] == ["PUBLISHED"]
        first = connector.bearer()
        assert connector.bearer() == first, "a token is reused while valid"
        start = connector.clock()
        connector.clock = lambda: start + 19 * 60
        assert connector.bearer() != first, "renewed before Apple's 20-minute limit"
    finally:
        await connector.close()


async def test_links_next_never_sends_the_token_to_another_host(fake: FakeStores) -> None:
    connector = make(AppStoreConnector, asc_options(fake))
    link = "https://evil.example/v1/apps/1/customerReviews?cursor=Mg.AO3v0Pc&limit=2"
    assert (
        connector._next_url(link)
        == f"{fake.base}/v1/apps/1/customerReviews?cursor=Mg.AO3v0Pc&limit=2"
    )
    await connector.close()


async def test_one_token_serves_every_page(fake: FakeStores) -> None:
    for i in range(5):
        fake.google.append(google_item(f"gp:more-{i}", datetime(2025, 11, 1, i, tzinfo=UTC), i))
    connector = make(GooglePlayConnector, google_options(fake, page_size=2))
    try:
        assert len(ids(await drain(connector))) == 8
        assert [m for m, q in fake.requests if q == "/token"] == ["POST"]
        assert len([q for _, q in fake.requests if "/reviews" in q]) == 4
    finally:
        await connector.close()


# --- rate limits ---------------------------------------------------------------------------


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, secs: float) -> None:
        self.waits.append(secs)


@pytest.mark.parametrize(
    ("cls", "options", "path"),
    [
        (AppStoreConnector, asc_options, "/v1/apps"),
        (GooglePlayConnector, google_options, "/androidpublisher"),
        (HuaweiAppGalleryConnector, huawei_options, "/api/reviews"),
        (AppStoreConnector, rss_options, "/cn/rss"),
    ],
)
async def test_429_waits_as_long_as_retry_after_says(
    fake: FakeStores, cls: Any, options: Any, path: str
) -> None:
    fake.fail(path, 429, retry_after="7")
    fake.fail(path, 429, retry_after="Thu, 01 Jan 1970 00:00:00 GMT")  # a date long past
    connector = make(cls, options(fake))
    connector.http.sleep = sleeps = Sleeps()
    try:
        assert len(ids(await drain(connector))) >= 3
        assert sleeps.waits == [7.0, 0.0]
    finally:
        await connector.close()


async def test_5xx_is_retried_with_backoff_but_not_forever(fake: FakeStores) -> None:
    for _ in range(3):
        fake.fail("/androidpublisher", 503)
    connector = make(GooglePlayConnector, google_options(fake, max_retries=2))
    connector.http.sleep = sleeps = Sleeps()
    try:
        with pytest.raises(TransientError, match="HTTP 503 after 3 attempts"):
            await drain(connector)
        assert len(sleeps.waits) == 2 and 0 < sleeps.waits[0] <= sleeps.waits[1] * 2
        assert len(ids(await drain(connector))) == 3, "the next poll gets through"
    finally:
        await connector.close()


async def test_a_retry_after_beyond_the_cap_fails_the_poll_for_the_runtime_to_retry(
    fake: FakeStores,
) -> None:
    fake.fail("/api/reviews", 429, retry_after="3600")
    connector = make(HuaweiAppGalleryConnector, huawei_options(fake))
    connector.http.sleep = sleeps = Sleeps()
    try:
        with pytest.raises(TransientError, match="Retry-After 3600s"):
            await drain(connector)
        assert sleeps.waits == []
    finally:
        await connector.close()


# --- hostile answers -----------------------------------------------------------------------

FLOOD_BYTES = 64 << 20
"""Eight times the default cap: the old client buffered all of it before parsing."""


class Floods(FakeStores):
    """Answers the first request under `flood_path` with a 200 whose body never ends
    (64 MiB of spaces): streamed without a length, with its length declared, or as a
    64 KB gzip that inflates to 64 MiB. Counts what it managed to send."""

    flood_path = ""
    how = "chunked"
    sent = 0

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if not self.flood_path or not request.path.startswith(self.flood_path):
            return await super()._middleware(request, handler)
        self.flood_path = ""
        self.requests.append((request.method, request.path_qs))
        chunk = b" " * (64 << 10)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        body = [chunk] * (FLOOD_BYTES // len(chunk))
        if self.how == "gzip":
            body = [gzip.compress(b"".join(body), compresslevel=9)]
            response.headers["Content-Encoding"] = "gzip"
        if self.how != "chunked":
            response.content_length = sum(len(c) for c in body)
        await response.prepare(request)
        try:
            for piece in body:
                await response.write(piece)
                self.sent += len(piece)
        except ConnectionError:
            pass  # the client hung up: what a capped reader does
        return response


@pytest.mark.parametrize(
    ("cls", "options", "path", "how"),
    [
        (GooglePlayConnector, google_options, "/androidpublisher", "chunked"),
        (AppStoreConnector, asc_options, "/v1/apps", "chunked"),
        (AppStoreConnector, rss_options, "/cn/rss", "declared"),
        (HuaweiAppGalleryConnector, huawei_options, "/api/oauth2/v1/token", "gzip"),
    ],
)
async def test_a_huge_answer_is_refused_past_the_cap_without_being_read_whole(
    cls: Any, options: Any, path: str, how: str
) -> None:
    """A broken or hostile store (or proxy) sending a 64 MiB body: the poll fails with a
    `TransientError` naming `max_response_bytes` once 8 MiB are read (a declared length
    is refused before reading), not retried at once; the next poll gets through."""
    async with running(Floods.with_fixtures(KEYS)) as stores:
        stores.flood_path, stores.how = path, how
        connector = make(cls, options(stores))
        connector.http.sleep = sleeps = Sleeps()
        try:
            with pytest.raises(TransientError, match="larger than max_response_bytes") as info:
                await drain(connector)
            said = "it declares 67108864 bytes" if how == "declared" else "cut off after"
            assert said in str(info.value)
            assert sleeps.waits == [], "refused, not retried within the poll"
            assert [q for _, q in stores.requests if q.startswith(path)][1:] == []
            if how == "chunked":  # the rest was never read (socket buffers hold a few MB)
                assert stores.sent < MAX_RESPONSE_BYTES + (16 << 20) < FLOOD_BYTES
            assert len(ids(await drain(connector))) >= 3, "the next poll gets through"
        finally:
            await connector.close()


# --- check() -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "options", "wrong", "key"),
    [
        (AppStoreConnector, asc_options, {"private_key": OTHER_KEYS.asc_pem}, "private_key"),
        (AppStoreConnector, asc_options, {"app_id": "1000000001"}, "app_id"),
        (GooglePlayConnector, google_options, {}, "service_account_json"),
        (GooglePlayConnector, google_options, {"package_name": "cn.other.app"}, "package_name"),
        (HuaweiAppGalleryConnector, huawei_options, {"client_secret": "wrong"}, "client_secret"),
        (HuaweiAppGalleryConnector, huawei_options, {"app_id": "999"}, "app_id"),
        (
            AppStoreConnector,
            rss_options,
            {"countries": ["zz"], "app_id": "1000000001"},
            "countries",
        ),
    ],
)
async def test_check_names_the_option_that_is_wrong(
    fake: FakeStores, cls: Any, options: Any, wrong: dict[str, Any], key: str
) -> None:
    table = options(fake, **wrong)
    if cls is GooglePlayConnector and not wrong:
        table["service_account_json"] = OTHER_KEYS.service_account_json(f"{fake.base}/token")
    connector = make(cls, table)
    try:
        with pytest.raises(ConfigError) as info:
            await connector.check()
        assert info.value.key == f"connectors.t.{key}"
        with pytest.raises(TransientError):
            await drain(connector)  # a poll keeps the worker running and says why
    finally:
        await connector.close()


@pytest.mark.parametrize(("cls", "options"), STORES_CHECK := [(c, o) for c, o, _ in STORES])
async def test_check_passes_with_the_right_keys(fake: FakeStores, cls: Any, options: Any) -> None:
    connector = make(cls, options(fake))
    try:
        await connector.check()
    finally:
        await connector.close()


def test_a_key_file_that_is_missing_or_of_the_wrong_kind_stops_the_start(tmp_path: Path) -> None:
    table = {
        "app_id": APPLE_APP,
        "source": "connect_api",
        "issuer_id": "i",
        "key_id": "k",
        "private_key_file": str(tmp_path / "AuthKey_2X9R4HXF34.p8"),
    }
    with pytest.raises(ConfigError) as info:
        make(AppStoreConnector, table)
    assert info.value.key == "connectors.t.private_key_file"
    (tmp_path / "sa.json").write_text('{"type": "authorized_user"}')
    with pytest.raises(ConfigError, match="service_account"):
        make(
            GooglePlayConnector,
            {"package_name": PACKAGE, "service_account_file": str(tmp_path / "sa.json")},
        )


@pytest.mark.parametrize(
    ("cls", "options", "store"),
    [
        (AppStoreConnector, rss_options, "rss"),
        (AppStoreConnector, asc_options, "asc"),
        (GooglePlayConnector, google_options, "google"),
        (HuaweiAppGalleryConnector, huawei_options, "huawei"),
    ],
)
async def test_since_bounds_the_first_poll_in_place_of_backfill_days(
    cls: type[ReviewConnector], options: Any, store: str
) -> None:
    """`since` (what `feedback-ingest backfill --since` sets): reviews from that day on,
    also those older than `backfill_days`; none from before it."""
    now = datetime.now(UTC)
    days = [1, 3, 9, 12, 15, 40, 41, 60]
    make_item = {"rss": rss_entry, "asc": asc_item, "google": google_item, "huawei": huawei_item}
    async with running(FakeStores(KEYS)) as stores:
        for i, ago in enumerate(days):
            item = make_item[store](f"{11000000000 + i}", now - timedelta(days=ago), i)
            target = stores.rss.setdefault("cn", []) if store == "rss" else getattr(stores, store)
            target.append(item)
        since = (now - timedelta(days=20)).date()
        connector = make(cls, options(stores, backfill_days=7, since=since.isoformat()))
        try:
            got = sorted(ids(await drain(connector)))
        finally:
            await connector.close()
    wanted = [i for i, ago in enumerate(days) if ago < 20]
    assert len(got) == len(wanted) == 5, got
    assert all(str(11000000000 + i) in native for i, native in zip(wanted, got, strict=True))
    if store == "huawei":  # AppGallery is asked for nothing older
        floor = int(datetime(since.year, since.month, since.day, tzinfo=UTC).timestamp() * 1000)
        assert all(f"beginTime={floor}" in q for m, q in stores.requests if "/dev/reviews" in q)
