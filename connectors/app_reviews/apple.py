"""app_store: Apple App Store reviews of one app, I/O only. `source` picks the feed:

- `rss`: the public customer-reviews feed per storefront, pages 1..10 of 50, newest
  first, no key and no SLA. Paging stops at the first page holding a review already
  seen unchanged (the cursor remembers ids per storefront, see `cursor.SeenIds`).
- `connect_api`: App Store Connect `GET /v1/apps/{id}/customerReviews`,
  `sort=-createdDate`, `include=response` (developer responses go to meta), paged by
  following `links.next` (its path and opaque cursor; the host is always `api_base`,
  so the token never leaves for another host). Auth: a 20-minute ES256 JWT signed
  with the team's `.p8` key, renewed 2 minutes before it expires.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from connectors.app_reviews.config import AppStoreOptions
from connectors.app_reviews.connector import ReviewConnector, parse_or_fail
from connectors.app_reviews.cursor import Found, SeenIds, Watermark, oldest_first, unreported
from connectors.app_reviews.http import Answer
from connectors.app_reviews.jwt import ASC_TOKEN_SECS, asc_token
from connectors.app_reviews.keys import asc_key
from connectors.app_reviews.parse import APP_STORE, Page
from connectors.app_reviews.parse_apple import parse_connect, parse_rss
from ingest.abc import BadInput, Batch
from ingest.model import FeedbackEvent

TOKEN_RENEW_SECS = ASC_TOKEN_SECS - 120


class AppStoreConnector(ReviewConnector):
    type = "app_store"
    store = APP_STORE
    description = (
        "Apple App Store reviews of an app: the public RSS feed per storefront, or the "
        "App Store Connect API (customerReviews, .p8 key)"
    )
    Options = AppStoreOptions
    options: AppStoreOptions

    def __init__(self, name: str, options: AppStoreOptions) -> None:
        super().__init__(name, options)
        self.key = None
        if options.source == "connect_api":
            self.key = asc_key(options.private_key.reveal(), options.private_key_file, self.prefix)
        self._token = ""
        self._token_renew_at = 0.0

    @classmethod
    def parse_payload(
        cls, data: bytes, options: Any
    ) -> tuple[Sequence[FeedbackEvent], Sequence[BadInput]]:
        if options.source == "rss":
            page = parse_rss(
                data,
                app_id=options.app_id,
                country=options.countries[0],
                fetched_at=datetime.now(UTC),
                connector=cls.type,
            )
        else:
            page = parse_connect(data, app_id=options.app_id, connector=cls.type)
        return [f.event for f in page.found], page.bad

    async def check(self) -> None:
        """RSS: the first page of the first storefront. API: a token and one review."""
        if self.options.source == "rss":
            country = self.options.countries[0]
            answer = await self.rss_page(country, 1, strict=True)
            parse_or_fail(partial(self._parse_rss, answer, country), self.store)
            return
        self._token = ""
        answer = await self.connect_page(None, limit=1, strict=True)
        parse_or_fail(partial(self._parse_connect, answer), self.store)

    def read(self, cursor: str | None) -> AsyncGenerator[Batch, None]:
        if self.options.source == "rss":
            return self._read_rss(cursor)
        return self.watermark_read(cursor, self._connect_pages)

    # --- RSS ----------------------------------------------------------------------

    async def rss_page(self, country: str, number: int, *, strict: bool = False) -> Answer:
        url = (
            f"{self.options.rss_base}/{country}/rss/customerreviews/page={number}/"
            f"id={self.options.app_id}/sortby=mostrecent/json"
        )
        answer = await self.http.request("GET", url)
        if answer.status in (400, 404):
            # Apple answers an unknown storefront or app this way (an unknown app in a
            # known storefront is an empty feed instead).
            raise self.refused(
                answer, "countries", f"no feed for storefront {country!r}", strict=strict
            )
        if answer.status != 200:
            raise self.unexpected(answer, "RSS feed")
        return answer

    def _parse_rss(self, answer: Answer, country: str) -> Page:
        return parse_rss(
            answer.body,
            app_id=self.options.app_id,
            country=country,
            fetched_at=self.now(),
            connector=self.name,
        )

    async def _read_rss(self, cursor: str | None) -> AsyncGenerator[Batch, None]:
        try:
            seen = SeenIds.decode(cursor)
        except ValueError as exc:
            self.log.warning("app_reviews.cursor_unreadable", error=str(exc))
            seen = SeenIds()
        for country in self.options.countries:
            found, bad = await self._rss_country(country, seen)
            fresh_bad, reported = unreported(bad, seen.reported)
            seen = SeenIds(seen.by_country, reported)
            new = [
                f
                for f in oldest_first(found)
                if seen.is_new(country, f.review_id, f.at_ms) and not self._before_since(f.at_ms)
            ]
            self.note_poll(len(new), len(fresh_bad), 0)
            size = self.options.batch_size
            chunks = [new[i : i + size] for i in range(0, len(new), size)] or [[]]
            pending = len(new)
            for number, chunk in enumerate(chunks):
                pending -= len(chunk)
                seen = seen.add(country, chunk)
                if number == len(chunks) - 1:
                    seen = seen.add(country, found)  # known-unchanged ones stay known
                bad_now = fresh_bad if number == 0 else ()
                if chunk or bad_now or number == len(chunks) - 1:
                    events = [f.event for f in chunk]
                    yield Batch(events, seen.encode(), bad=bad_now, pending=pending)

    def _before_since(self, at_ms: int) -> bool:
        """Older than `since`. An entry without a time (at_ms 0: older feed responses
        lack `updated`) cannot be shown to be older, so it is kept."""
        return 0 < at_ms < self.options.since_ms

    async def _rss_country(self, country: str, seen: SeenIds) -> tuple[list[Found], list[BadInput]]:
        """Pages newest first until one holds a review seen before, unchanged, or one
        older than `since`."""
        found: list[Found] = []
        bad: list[BadInput] = []
        last = self.options.rss_max_pages
        for number in range(1, self.options.rss_max_pages + 1):
            answer = await self.rss_page(country, number)
            page = parse_or_fail(partial(self._parse_rss, answer, country), self.store)
            found += page.found
            bad += page.bad
            if page.last_page is not None:
                last = min(last, page.last_page)
            met_known = any(
                seen.knows(country, f.review_id) and not seen.is_new(country, f.review_id, f.at_ms)
                for f in page.found
            )
            past_since = any(self._before_since(f.at_ms) for f in page.found)
            if met_known or past_since or not page.found or number >= last:
                break
        return found, bad

    # --- App Store Connect ----------------------------------------------------------

    def bearer(self) -> str:
        now = self.clock()
        if not self._token or now >= self._token_renew_at:
            assert self.key is not None
            o = self.options
            self._token = asc_token(self.key, o.key_id, o.issuer_id, int(now))
            self._token_renew_at = now + TOKEN_RENEW_SECS
        return self._token

    def _first_url(self, limit: int) -> tuple[str, dict[str, str]]:
        params = {"sort": "-createdDate", "limit": str(limit), "include": "response"}
        if self.options.territories:
            params["filter[territory]"] = ",".join(self.options.territories)
        return f"{self.options.api_base}/v1/apps/{self.options.app_id}/customerReviews", params

    def _next_url(self, link: str) -> str:
        """`links.next` on our `api_base`: its path and query, never its host."""
        parts = urlsplit(link)
        return f"{self.options.api_base}{parts.path}" + (f"?{parts.query}" if parts.query else "")

    async def connect_page(
        self, link: str | None, *, limit: int | None = None, strict: bool = False
    ) -> Answer:
        if link is None:
            url, params = self._first_url(limit or self.options.page_size)
        else:
            url, params = self._next_url(link), {}
        for renewed in (False, True):
            headers = {"Authorization": f"Bearer {self.bearer()}"}
            answer = await self.http.request("GET", url, params=params, headers=headers)
            if answer.status == 401 and not renewed:
                self._token = ""  # a clock skew or an early expiry: sign a fresh one
                continue
            break
        if answer.status == 401:
            option = "private_key_file" if self.options.private_key_file else "private_key"
            raise self.refused(
                answer,
                option,
                "App Store Connect refused the token (key, key_id, issuer_id)",
                strict=strict,
            )
        if answer.status == 403:
            raise self.refused(
                answer, "key_id", "this key's role may not read customer reviews", strict=strict
            )
        if answer.status == 404:
            raise self.refused(answer, "app_id", "no such app for this key", strict=strict)
        if answer.status != 200:
            raise self.unexpected(answer, "customerReviews")
        return answer

    def _parse_connect(self, answer: Answer) -> Page:
        return parse_connect(answer.body, app_id=self.options.app_id, connector=self.name)

    async def _connect_pages(self, mark: Watermark) -> AsyncGenerator[Page, None]:
        floor = self.backfill_floor_ms(mark)
        link: str | None = None
        for _ in range(self.options.max_pages):
            answer = await self.connect_page(link)
            page = parse_or_fail(partial(self._parse_connect, answer), self.store)
            yield page
            if not page.next or self.older_than(page, floor):
                return
            link = page.next
        self.page_limit_reached()
