"""One HTTP client for the three stores, with the rate-limit rules they share.

HTTP 429 (every store rate-limits per key; Apple has been seen answering 429 with
quota left) and 5xx are retried here a bounded number of times: after `Retry-After`
when the store sends it (seconds or an HTTP date, capped), otherwise after a jittered
exponential delay. When the retries run out, or the store cannot be reached, this
raises `TransientError` and the runtime retries the whole poll later with its own
backoff, nothing committed. Any other answer is returned to the caller, which turns
401/403/404 into a `ConfigError` naming the option that is wrong. Sleeping and the
clock are injectable so tests check the waits without waiting.

A body is read as it arrives and refused once it passes `max_response_bytes`
(`AnswerTooLarge`, a `TransientError` like every other bad answer of a store: the poll
fails and is retried later). It is not retried here: the same endpoint would most
likely send the same body again.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from ingest.bounded_body import TooLarge, read_at_most
from ingest.errors import TransientError
from ingest.log import get_logger

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER_SECS = 120.0
"""A store asking for longer than this is better served by the runtime's own backoff
(the poll fails and is retried later) than by holding a connection in a sleep."""

MAX_RESPONSE_BYTES = 8 << 20
"""Default cap on one answer's body (after aiohttp undid any gzip), 8 MiB. The biggest
page a store documents is App Store Connect's 200 reviews (Google Play and AppGallery
100, the RSS feed 50); the captured pages in tests/fixtures hold 0.2-1 KB per review
with its metadata. Even 10 KB per review (several thousand characters, or Chinese
escaped as \\uXXXX, 6 bytes a character) makes a 2 MB page: 8 MiB leaves four times
that, and stops a broken or hostile endpoint (or proxy) from filling the worker's
memory. The `max_response_bytes` option changes it."""

log = get_logger("connectors.app_reviews")


class AnswerTooLarge(TransientError):
    """A store's answer passed `max_response_bytes`: the rest was not read."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    headers: Mapping[str, str]

    def json(self) -> Any:
        """The body as JSON, or None when it is not JSON (a proxy's HTML error page)."""
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return None


def retry_after_secs(value: str | None, now: float) -> float | None:
    """`Retry-After: 120` or `Retry-After: Wed, 21 Oct 2015 07:28:00 GMT` (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, moment.timestamp() - now)


class StoreHttp:
    """JSON over one aiohttp session (created lazily on the running loop)."""

    def __init__(
        self,
        store: str,
        *,
        timeout_secs: float,
        max_retries: int,
        backoff_initial_secs: float = 1.0,
        backoff_max_secs: float = 30.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        wall_clock: Callable[[], float] = time.time,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        self.store = store
        self.max_response_bytes = max_response_bytes
        self.timeout = aiohttp.ClientTimeout(total=timeout_secs)
        self.max_retries = max_retries
        self.backoff_initial_secs = backoff_initial_secs
        self.backoff_max_secs = backoff_max_secs
        self.sleep = sleep
        self.wall_clock = wall_clock
        self.waits: list[float] = []
        """Every wait this client slept before a retry (tests and metrics read it)."""
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self._session

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        form: Mapping[str, str] | None = None,
        json_body: Any = None,
    ) -> Answer:
        """The answer, retried on 429/5xx/unreachable up to `max_retries` times."""
        attempt = 0
        while True:
            try:
                answer = await self._once(method, url, params, headers, form, json_body)
            except AnswerTooLarge:
                raise
            except TransientError as exc:
                if attempt >= self.max_retries:
                    raise
                await self._wait(attempt, None, reason=str(exc))
                attempt += 1
                continue
            if answer.status not in RETRY_STATUSES:
                return answer
            if attempt >= self.max_retries:
                raise TransientError(
                    f"{self.store}: HTTP {answer.status} after {attempt + 1} attempts"
                )
            hint = retry_after_secs(answer.headers.get("Retry-After"), self.wall_clock())
            await self._wait(attempt, hint, reason=f"HTTP {answer.status}")
            attempt += 1

    async def _once(
        self,
        method: str,
        url: str,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
        form: Mapping[str, str] | None,
        json_body: Any,
    ) -> Answer:
        send: dict[str, Any] = {"params": dict(params or {}), "headers": dict(headers or {})}
        if form is not None:
            send["data"] = dict(form)
        elif json_body is not None:
            send["data"] = orjson.dumps(json_body)
            send["headers"]["Content-Type"] = "application/json"
        try:
            async with self._client().request(method, url, **send) as response:
                body = await self._body(response)
                return Answer(response.status, body, dict(response.headers))
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            # The URL may carry a cursor but never a credential: those travel in headers.
            raise TransientError(f"{self.store}: {type(exc).__name__} ({exc})") from None

    async def _body(self, response: aiohttp.ClientResponse) -> bytes:
        """The body, read chunk by chunk and refused past `max_response_bytes`: a
        declared length over the cap is refused before reading anything; a chunked or
        compressed one is cut off as soon as it passes (leaving the block closes the
        connection instead of reading the rest)."""
        try:
            return await read_at_most(
                response.content, response.content_length, self.max_response_bytes
            )
        except TooLarge as exc:
            if exc.read:
                detail = f"cut off after {exc.size} bytes, the rest not read"
            else:
                detail = f"it declares {exc.size} bytes, none read"
            raise self._too_large(response.status, detail) from None

    def _too_large(self, status: int, detail: str) -> AnswerTooLarge:
        return AnswerTooLarge(
            f"{self.store}: HTTP {status} answer larger than max_response_bytes "
            f"({self.max_response_bytes}), refused: {detail}"
        )

    async def _wait(self, attempt: int, hint_secs: float | None, *, reason: str) -> None:
        if hint_secs is not None:
            delay = min(hint_secs, MAX_RETRY_AFTER_SECS)
        else:
            ceiling = min(self.backoff_max_secs, self.backoff_initial_secs * 2**attempt)
            delay = random.uniform(ceiling / 2, ceiling)
        if hint_secs is not None and hint_secs > MAX_RETRY_AFTER_SECS:
            raise TransientError(
                f"{self.store}: {reason}, Retry-After {hint_secs:.0f}s is longer than "
                f"{MAX_RETRY_AFTER_SECS:.0f}s: the poll is retried later"
            )
        self.waits.append(delay)
        log.info("app_reviews.retry", store=self.store, reason=reason, wait_secs=round(delay, 2))
        await self.sleep(delay)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
