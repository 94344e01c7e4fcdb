"""What the three review connectors share: the HTTP client, the clock, and turning a
poll's collected reviews into batches the runtime can commit one by one (oldest
first: see `cursor`). Each store module only fetches pages and says when to stop."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, ClassVar

from connectors.app_reviews.config import PollingOptions
from connectors.app_reviews.cursor import Found, Watermark, unreported, watermark_batches
from connectors.app_reviews.http import Answer, StoreHttp
from connectors.app_reviews.parse import CHANNEL, Page
from ingest.abc import BadInput, Batch, PullConnector
from ingest.errors import ConfigError, PermanentError, TransientError
from ingest.log import get_logger

DAY_MS = 86_400_000


class ReviewConnector(PullConnector):
    """Base of `app_store`, `google_play` and `huawei_appgallery`."""

    store: ClassVar[str]
    channel = CHANNEL

    def __init__(self, name: str, options: Any) -> None:
        super().__init__(name, options)
        polling: PollingOptions = options
        self.poll_interval_secs = polling.poll_interval_secs
        self.http = StoreHttp(
            self.store,
            timeout_secs=polling.timeout_secs,
            max_retries=polling.max_retries,
            max_response_bytes=polling.max_response_bytes,
        )
        self.clock: Callable[[], float] = time.time
        """Wall clock (Unix seconds): token lifetimes, JWT times, backfill windows."""
        self.log = get_logger("connectors.app_reviews").bind(connector=name, store=self.store)
        self.prefix = f"connectors.{name}"

    async def close(self) -> None:
        await self.http.close()

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def backfill_floor_ms(self, mark: Watermark) -> int:
        """Reviews older than this are not read: the watermark, or on the first poll
        `backfill_days` before now; never before `since`, and with `since` the first poll
        goes back exactly that far."""
        polling: PollingOptions = self.options
        since = polling.since_ms
        if mark.at_ms >= 0:
            return max(mark.at_ms, since)
        if since >= 0:
            return since
        return int(self.clock() * 1000) - polling.backfill_days * DAY_MS

    def decode_watermark(self, cursor: str | None, now_ms: int) -> Watermark:
        try:
            mark = Watermark.decode(cursor)
        except ValueError as exc:
            # Not ours (an older format, a hand edit): read from the backfill horizon;
            # ids are deterministic, so re-read reviews land on their records.
            self.log.warning("app_reviews.cursor_unreadable", error=str(exc))
            return Watermark()
        if mark.at_ms > now_ms:
            # Moved ahead by a future-stamped review before the watermark was kept
            # behind now (or this host's clock went back): reviews stamped between the
            # last real one and now may have been skipped. Read from the horizon again.
            ahead_secs = (mark.at_ms - now_ms) // 1000
            self.log.warning("app_reviews.cursor_ahead", ahead_secs=ahead_secs)
            return mark.rewound()
        return mark

    async def watermark_read(
        self, cursor: str | None, pages: Callable[[Watermark], AsyncGenerator[Page, None]]
    ) -> AsyncGenerator[Batch, None]:
        """Collect every new review from `pages(mark)` (newest first), then yield them
        oldest first in batches, each with the watermark covering it."""
        now_ms = int(self.clock() * 1000)
        mark = self.decode_watermark(cursor, now_ms)
        floor = self.backfill_floor_ms(mark)
        found: list[Found] = []
        bad: list[BadInput] = []
        skipped = 0
        async for page in pages(mark):
            found += [f for f in page.found if f.at_ms >= floor and _new(mark, f)]
            bad += page.bad
            skipped += page.skipped
        fresh_bad, reported = unreported(bad, mark.reported)
        mark = replace(mark, reported=reported)
        self.note_poll(len(found), len(fresh_bad), skipped)
        batches = list(watermark_batches(found, mark, self.options.batch_size, now_ms=now_ms))
        if not batches and fresh_bad:
            batches = [([], mark)]
        pending = sum(len(events) for events, _ in batches)
        for number, (events, covering) in enumerate(batches):
            pending -= len(events)
            bad_now = fresh_bad if number == 0 else ()
            yield Batch(events, covering.encode(), bad=bad_now, pending=pending)

    def note_poll(self, new: int, bad: int, skipped: int) -> None:
        if new or bad:
            self.log.info("app_reviews.polled", new=new, bad=bad, skipped=skipped)

    def page_limit_reached(self) -> None:
        """`max_pages` read and the watermark not reached: reviews between the last page
        read and the watermark are skipped. Only a first backfill should get here."""
        self.log.warning("app_reviews.page_limit", max_pages=self.options.max_pages)

    @staticmethod
    def older_than(page: Page, floor_ms: int) -> bool:
        """Newest-first paging may stop: this page reached reviews before `floor_ms`."""
        return any(f.at_ms < floor_ms for f in page.found)

    # --- errors ---------------------------------------------------------------

    def refused(self, answer: Answer, option: str, what: str, *, strict: bool) -> Exception:
        """A store's 4xx about our credentials or ids: a `ConfigError` naming the option
        from `check()`; from a poll a `TransientError` (the worker keeps running and
        reports the failure; a key being rotated or a store hiccup should not stop it)."""
        detail = f"{what} (HTTP {answer.status}{_error_code(answer)})"
        if strict:
            return ConfigError(f"{self.prefix}.{option}", detail)
        return TransientError(f"{self.prefix}.{option}: {detail}")

    def unexpected(self, answer: Answer, what: str) -> TransientError:
        return TransientError(f"{self.store}: {what}: HTTP {answer.status}{_error_code(answer)}")


def _new(mark: Watermark, found: Found) -> bool:
    return mark.is_new(found.at_ms, found.review_id)


def _error_code(answer: Answer) -> str:
    """The store's own error code, for the operator (never the request or its keys)."""
    doc = answer.json()
    code: Any = None
    if isinstance(doc, dict):
        errors = doc.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            code = errors[0].get("code")  # App Store Connect
        elif isinstance(doc.get("error"), dict):
            code = doc["error"].get("status")  # Google APIs
        elif isinstance(doc.get("error"), str):
            code = doc["error"]  # OAuth token endpoint
        elif isinstance(doc.get("ret"), dict):
            code = doc["ret"].get("code", doc["ret"].get("rtnCode"))  # AppGallery
    return f", {str(code)[:60]}" if code is not None else ""


def parse_or_fail(parse: Callable[[], Page], store: str) -> Page:
    """A page we cannot read at all (not JSON, no review list) is the store's fault or
    a proxy's, not a review's: retry later rather than dead-letter a whole page."""
    try:
        return parse()
    except PermanentError as exc:
        raise TransientError(f"{store}: unreadable page: {exc}") from None
