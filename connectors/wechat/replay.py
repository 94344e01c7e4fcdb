"""Replay protection that never fails a genuine WeChat retry (channels.md §1.1).

WeChat retries a push it got no answer to within ~5 s with the *same* request,
nonce included, up to three times, sometimes while the first is still running. So:

- a request whose timestamp is outside `window_secs` of now is refused (`stale`);
- (timestamp, nonce) pairs are remembered for the window (past the later of now and
  the timestamp) with a digest of what the
  request means (the decrypted message, or the body when there is no encryption):
  * seen, same digest, first attempt answered → the same answer again, nothing
    published twice;
  * seen, same digest, first attempt still running → wait for it, then as above,
    or process now if it failed;
  * seen, first attempt failed (we answered 5xx) → process now;
  * seen with a *different* digest → refused (`replayed`): in plaintext mode the
    signature does not cover the body, so this is how a captured signature cannot
    carry a forged body.

Per process and in memory: a second worker replica has its own memory, and the
sinks' upsert by event id is the backstop for duplicates across replicas.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from ingest.errors import Rejected
from ingest.log import get_logger

T = TypeVar("T")
log = get_logger("connectors.wechat")


def check_fresh(timestamp: str, window_secs: int, now: float) -> None:
    """Refuse a timestamp further than `window_secs` from `now` (0 = no check)."""
    try:
        sent = int(timestamp)
    except ValueError:
        raise Rejected(400, "malformed", "timestamp is not Unix seconds") from None
    if window_secs and abs(now - sent) > window_secs:
        raise Rejected(403, "stale", f"timestamp is {int(now - sent)} s from now")


def _latest(now: float, timestamp: str) -> float:
    """`now`, or the request's timestamp if it lies ahead: a pair must be remembered as
    long as its timestamp still passes `check_fresh` (up to the window past it), else a
    request stamped ahead could be replayed with another body once its nonce expired."""
    try:
        return max(now, float(int(timestamp)))
    except ValueError:
        return now


@dataclass
class _Seen(Generic[T]):
    digest: bytes
    expires_at: float
    answer: asyncio.Future[T | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class NonceMemory(Generic[T]):
    """Remembers (timestamp, nonce) for `window_secs`; see the module docstring."""

    def __init__(
        self,
        window_secs: int,
        max_entries: int,
        clock: Callable[[], float] = time.time,
        wait_secs: float = 10.0,
    ) -> None:
        self.window_secs = window_secs
        self.max_entries = max_entries
        self.clock = clock
        self.wait_secs = wait_secs
        self._seen: OrderedDict[tuple[str, str], _Seen[T]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def check_fresh(self, timestamp: str) -> None:
        check_fresh(timestamp, self.window_secs, self.clock())

    def _expire(self, now: float) -> None:
        """Forget pairs past their time, oldest first (insertion order is nearly time
        order; a pair stamped ahead only holds the ones behind it a little longer)."""
        while self._seen:
            key, oldest = next(iter(self._seen.items()))
            if oldest.expires_at > now:
                break
            del self._seen[key]

    async def once(
        self, timestamp: str, nonce: str, digest: bytes, work: Callable[[], Awaitable[T]]
    ) -> T:
        """Run `work` for this request unless it already ran successfully; return its
        answer (or the first attempt's answer for a repeat)."""
        if not self.window_secs:
            return await work()
        key = (timestamp, nonce)
        for _ in range(2):
            now = self.clock()
            self._expire(now)
            seen = self._seen.get(key)
            if seen is None:
                return await self._first(key, digest, now, work)
            if seen.digest != digest:
                raise Rejected(403, "replayed", "nonce reused with a different body")
            try:
                answer = await asyncio.wait_for(asyncio.shield(seen.answer), self.wait_secs)
            except TimeoutError:
                answer = None
            if answer is not None:
                log.info("webhook_duplicate", nonce=nonce, sent_at=timestamp)
                return answer
            if self._seen.get(key) is seen:  # the first attempt hangs: take over
                del self._seen[key]
        return await work()  # pragma: no cover - only after two failed attempts in a row

    async def _first(
        self, key: tuple[str, str], digest: bytes, now: float, work: Callable[[], Awaitable[T]]
    ) -> T:
        while len(self._seen) >= self.max_entries:  # full: forget the oldest early
            self._seen.popitem(last=False)
        seen: _Seen[T] = _Seen(digest, _latest(now, key[0]) + self.window_secs)
        self._seen[key] = seen
        try:
            answer = await work()
        except BaseException:
            if self._seen.get(key) is seen:
                del self._seen[key]  # not answered: the sender's retry is processed anew
            seen.answer.set_result(None)
            raise
        seen.answer.set_result(answer)
        return answer
