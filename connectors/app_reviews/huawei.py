"""huawei_appgallery: AppGallery Connect's comment list, I/O only. [R] documented as
best known (channels.md §2.4 marks it secondary): confirm against AGC's reference.

Auth: `POST /api/oauth2/v1/token` with the API client's id and secret
(client_credentials) → a token sent as `Authorization: Bearer` together with a
`client_id` header; cached until shortly before `expires_in`, renewed once on 401.
Reviews: `GET /api/reviews/v1/manage/dev/reviews` (HarmonyOS 5+:
`/api/marketing-api/v2/reviews/manage/dev/reviews`) with `appId`, `countries`,
`beginTime`/`endTime` (ms; a span of at most 6 months, so a long backfill is read in
windows), `sort=0` (newest first), `page`, `limit`. The watermark is the query's
`beginTime`, so nothing older is even fetched.

Paging is by time where it can be: AGC pages by position, so a review deleted from an
already-read page would shift the next page's first review out of reach. Each next
query ends just after the oldest review read (those of that millisecond come again;
`cursor.oldest_first` keeps one per id).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from functools import partial
from typing import Any

from connectors.app_reviews.config import HuaweiOptions
from connectors.app_reviews.connector import DAY_MS, ReviewConnector, parse_or_fail
from connectors.app_reviews.cursor import Watermark
from connectors.app_reviews.http import Answer
from connectors.app_reviews.parse import HUAWEI, Page
from connectors.app_reviews.parse_huawei import parse_reviews, return_code
from ingest.abc import BadInput, Batch
from ingest.model import FeedbackEvent
from ingest.tokens import AccessToken

TOKEN_PATH = "/api/oauth2/v1/token"
REVIEWS_PATH = "/api/reviews/v1/manage/dev/reviews"
REVIEWS_PATH_HARMONYOS = "/api/marketing-api/v2/reviews/manage/dev/reviews"
WINDOW_MS = 180 * DAY_MS
"""[R] AGC refuses a beginTime..endTime span over six months."""
NO_PERMISSION = 50010028
"""[R] "user or app auth validate failed": not our app, or not published yet."""


class HuaweiAppGalleryConnector(ReviewConnector):
    type = "huawei_appgallery"
    store = HUAWEI
    description = (
        "Huawei AppGallery reviews of an app (AppGallery Connect comment API, API client "
        "credentials) [R: as best known]"
    )
    Options = HuaweiOptions
    options: HuaweiOptions

    def __init__(self, name: str, options: HuaweiOptions) -> None:
        super().__init__(name, options)
        self._token = AccessToken()

    @classmethod
    def parse_payload(
        cls, data: bytes, options: Any
    ) -> tuple[Sequence[FeedbackEvent], Sequence[BadInput]]:
        page = parse_reviews(data, app_id=options.app_id, connector=cls.type)
        return [f.event for f in page.found], page.bad

    async def access_token(self, *, strict: bool = False) -> str:
        kept = self._token.current(self.clock())
        if kept is not None:
            return kept
        body = {
            "grant_type": "client_credentials",
            "client_id": self.options.client_id,
            "client_secret": self.options.client_secret.reveal(),
        }
        answer = await self.http.request("POST", self.options.api_base + TOKEN_PATH, json_body=body)
        doc = answer.json()
        token = doc.get("access_token") if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token:
            if answer.status in (200, 400, 401, 403):
                raise self.refused(
                    answer, "client_secret", "AGC refused the API client", strict=strict
                )
            raise self.unexpected(answer, "token")
        expires_in = doc.get("expires_in") if isinstance(doc, dict) else None
        return self._token.keep(token, expires_in, self.clock())

    async def get_page(
        self, begin_ms: int, end_ms: int, page: int, *, strict: bool = False
    ) -> Answer:
        path = REVIEWS_PATH_HARMONYOS if self.options.harmonyos else REVIEWS_PATH
        params = {
            "appId": self.options.app_id,
            "countries": ",".join(self.options.countries),
            "beginTime": str(begin_ms),
            "endTime": str(end_ms),
            "sort": "0",
            "page": str(page),
            "limit": str(self.options.page_size),
        }
        for renewed in (False, True):
            bearer = await self.access_token(strict=strict)
            headers = {"Authorization": f"Bearer {bearer}", "client_id": self.options.client_id}
            answer = await self.http.request(
                "GET", self.options.api_base + path, params=params, headers=headers
            )
            if answer.status == 401 and not renewed:
                self._token.forget()
                continue
            break
        if answer.status in (401, 403):
            raise self.refused(answer, "client_id", "AGC refused the token", strict=strict)
        if answer.status != 200:
            raise self.unexpected(answer, "reviews")
        doc = answer.json()
        code = return_code(doc)[0] if isinstance(doc, dict) else None
        if code == NO_PERMISSION:
            raise self.refused(
                answer, "app_id", "not this client's app, or not published", strict=strict
            )
        return answer

    async def check(self) -> None:
        """Token exchange and one review of the last day."""
        self._token.forget()
        now = int(self.clock() * 1000)
        answer = await self.get_page(now - DAY_MS, now, 1, strict=True)
        parse_or_fail(partial(self._parse, answer), self.store)

    def _parse(self, answer: Answer) -> Page:
        return parse_reviews(answer.body, app_id=self.options.app_id, connector=self.name)

    def read(self, cursor: str | None) -> AsyncGenerator[Batch, None]:
        return self.watermark_read(cursor, self._pages)

    async def _pages(self, mark: Watermark) -> AsyncGenerator[Page, None]:
        """Every page of every window from the watermark (inclusive) to now."""
        end = int(self.clock() * 1000)
        begin = self.backfill_floor_ms(mark)
        pages_read = 0
        while end > begin:
            start = max(begin, end - WINDOW_MS)
            query: tuple[int, int] | None = (end, 1)
            while query is not None:
                if pages_read >= self.options.max_pages:
                    self.page_limit_reached()
                    return
                until, number = query
                answer = await self.get_page(start, until, number)
                page = parse_or_fail(partial(self._parse, answer), self.store)
                pages_read += 1
                yield page
                query = next_query(page, start, until, number, self.options.page_size)
            end = start


def more_pages(page: Page, number: int, limit: int) -> bool:
    """`hasNext` where AGC sends it; else its `total` (the HarmonyOS 5+ envelope has
    only that); else whether the page came back full."""
    if page.has_more is not None:
        return page.has_more
    if page.total is not None:
        return number * limit < page.total
    return len(page.found) + len(page.bad) + page.skipped >= limit


def next_query(
    page: Page, start_ms: int, until_ms: int, number: int, limit: int
) -> tuple[int, int] | None:
    """(endTime, page number) of the next request in a window, None when it is read.
    By time: end just after the oldest review read, page 1. By number only when that
    would not move (the whole page in one millisecond, or no usable review on it)."""
    if not more_pages(page, number, limit):
        return None
    oldest = min((f.at_ms for f in page.found), default=until_ms)
    if start_ms < oldest + 1 < until_ms:
        return oldest + 1, 1
    return until_ms, number + 1
