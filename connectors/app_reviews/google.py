"""google_play: the Google Play Developer API `reviews.list`, I/O only.

Auth: the service account's key signs a JWT (RS256) that is exchanged at the key's
`token_uri` for an access token (OAuth2 JWT-bearer grant), cached until shortly
before it expires and renewed once when the API answers 401. Reviews come most
recently created *or modified* first; paging (`token` = the previous page's
`tokenPagination.nextPageToken`) stops at the watermark, so an edited review, whose
`lastModified` moved, is read again and updates its record.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from functools import partial
from typing import Any
from urllib.parse import quote

from connectors.app_reviews.config import GooglePlayOptions
from connectors.app_reviews.connector import ReviewConnector, parse_or_fail
from connectors.app_reviews.cursor import Watermark
from connectors.app_reviews.http import Answer
from connectors.app_reviews.jwt import google_assertion
from connectors.app_reviews.keys import service_account
from connectors.app_reviews.parse import GOOGLE_PLAY, Page
from connectors.app_reviews.parse_google import parse_reviews
from ingest.abc import BadInput, Batch
from ingest.model import FeedbackEvent
from ingest.tokens import AccessToken

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


class GooglePlayConnector(ReviewConnector):
    type = "google_play"
    store = GOOGLE_PLAY
    description = (
        "Google Play reviews of an app (Developer API reviews.list, service-account key): "
        "new and edited reviews of the last week"
    )
    Options = GooglePlayOptions
    options: GooglePlayOptions

    def __init__(self, name: str, options: GooglePlayOptions) -> None:
        super().__init__(name, options)
        self.account = service_account(
            options.service_account_json.reveal(), options.service_account_file, self.prefix
        )
        self.token_url = options.token_url or self.account.token_uri
        self._token = AccessToken()

    @classmethod
    def parse_payload(
        cls, data: bytes, options: Any
    ) -> tuple[Sequence[FeedbackEvent], Sequence[BadInput]]:
        page = parse_reviews(data, package=options.package_name, connector=cls.type)
        return [f.event for f in page.found], page.bad

    # --- auth -------------------------------------------------------------------

    async def access_token(self, *, strict: bool = False) -> str:
        kept = self._token.current(self.clock())
        if kept is not None:
            return kept
        now = int(self.clock())
        a = self.account
        assertion = google_assertion(a.key, a.key_id, a.client_email, self.token_url, now)
        answer = await self.http.request(
            "POST", self.token_url, form={"grant_type": JWT_BEARER, "assertion": assertion}
        )
        doc = answer.json()
        token = doc.get("access_token") if isinstance(doc, dict) else None
        if answer.status in (400, 401, 403) and not token:
            option = (
                "service_account_file"
                if self.options.service_account_file
                else ("service_account_json")
            )
            raise self.refused(answer, option, "the token exchange refused the key", strict=strict)
        if answer.status != 200 or not isinstance(token, str) or not token:
            raise self.unexpected(answer, "token exchange")
        expires_in = doc.get("expires_in") if isinstance(doc, dict) else None
        return self._token.keep(token, expires_in, self.clock())

    async def get_page(self, token: str | None, *, strict: bool = False) -> Answer:
        url = (
            f"{self.options.api_base}/androidpublisher/v3/applications/"
            f"{quote(self.options.package_name, safe='')}/reviews"
        )
        params = {"maxResults": str(self.options.page_size)}
        if token:
            params["token"] = token
        for renewed in (False, True):
            bearer = await self.access_token(strict=strict)
            answer = await self.http.request(
                "GET", url, params=params, headers={"Authorization": f"Bearer {bearer}"}
            )
            if answer.status == 401 and not renewed:
                self._token.forget()  # revoked or expired early: one fresh token
                continue
            break
        if answer.status in (401, 403):
            raise self.refused(
                answer,
                "package_name",
                "the service account may not read this app's reviews (grant it "
                "'Reply to reviews' in Play Console → Users and permissions)",
                strict=strict,
            )
        if answer.status == 404:
            raise self.refused(answer, "package_name", "no such app", strict=strict)
        if answer.status != 200:
            raise self.unexpected(answer, "reviews.list")
        return answer

    # --- check and read -----------------------------------------------------------

    async def check(self) -> None:
        """Token exchange and the first page of reviews."""
        self._token.forget()
        answer = await self.get_page(None, strict=True)
        parse_or_fail(lambda: self._parse(answer), self.store)

    def _parse(self, answer: Answer) -> Page:
        return parse_reviews(answer.body, package=self.options.package_name, connector=self.name)

    def read(self, cursor: str | None) -> AsyncGenerator[Batch, None]:
        return self.watermark_read(cursor, self._pages)

    async def _pages(self, mark: Watermark) -> AsyncGenerator[Page, None]:
        floor = self.backfill_floor_ms(mark)
        token: str | None = None
        for _ in range(self.options.max_pages):
            answer = await self.get_page(token)
            page = parse_or_fail(partial(self._parse, answer), self.store)
            yield page
            if not page.next or self.older_than(page, floor):
                return
            token = page.next
        self.page_limit_reached()
