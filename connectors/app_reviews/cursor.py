"""Cursors of the review connectors, and how collected reviews become batches.

API sources (App Store Connect, Google Play, AppGallery) keep a *watermark*: the
newest review time seen (last-modified where the store has one, else created) and
the ids seen at exactly that time, so two reviews in the same second are never
mistaken for one. A review is new when it is newer than the watermark, or as old and
not among its ids; an edited review has a newer time, so it comes back (same record
id: the sinks update it in place).

The watermark never passes the poll's "now". A review stamped later (a store's clock
ahead, or a forged date) is handed on like any other, but it does not move the
watermark: it is kept in `ahead` (id → its time) so it is not handed on again, and
dropped from there once the watermark passes its time. A watermark moved a day ahead
would otherwise skip, for good, every review of that day stamped with a real time.
There is no skew allowance: a watermark allowed to run N minutes ahead skips the
reviews stamped in those minutes, and `ahead` already covers a store a little fast.

The public Apple RSS feed has no trustworthy modification time (older responses
carry none), so its cursor is what channels.md recommends: the ids already seen per
storefront with their `updated` stamp, capped at the feed's own window (500).

Stores list newest first; committing the cursor of the newest page first would lose
the older pages if the worker stopped half-way. So a poll collects every new review
first, then hands them to the runtime oldest first, each batch with the cursor that
covers it: a crash between batches re-reads only what was not yet committed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace

import orjson

from ingest.abc import BadInput
from ingest.model import FeedbackEvent

CURSOR_VERSION = 1
MAX_REPORTED = 200
MAX_AHEAD = 200
"""Future-stamped reviews remembered at most (the soonest kept); one forgotten is only
handed on again, onto its own record."""
RSS_WINDOW = 500
"""Apple serves at most 10 pages of 50 reviews per storefront: ids older than that can
only come back edited, and an edited review is re-read anyway."""


@dataclass(frozen=True, slots=True)
class Found:
    """A parsed review with the key it is ordered and compared by."""

    event: FeedbackEvent
    review_id: str
    at_ms: int
    """Last-modified time (or created, where the store has nothing better), Unix ms."""


@dataclass(frozen=True, slots=True)
class Watermark:
    at_ms: int = -1
    ids: frozenset[str] = frozenset()
    reported: tuple[str, ...] = ()
    """Digests of unusable items already dead-lettered (`unreported`)."""
    ahead: Mapping[str, int] = field(default_factory=dict)
    """Reviews handed on with a time after the poll's now: id → that time, Unix ms."""

    def is_new(self, at_ms: int, review_id: str) -> bool:
        if self.ahead.get(review_id) == at_ms:
            return False
        return at_ms > self.at_ms or (at_ms == self.at_ms and review_id not in self.ids)

    def is_older(self, at_ms: int) -> bool:
        """Strictly before the watermark: paging newest-first may stop here."""
        return at_ms < self.at_ms

    def advance(self, at_ms: int, review_id: str, *, now_ms: int) -> Watermark:
        """Past this review, handed on; one stamped after `now_ms` goes to `ahead`."""
        if at_ms > now_ms:
            ahead = sorted({**self.ahead, review_id: at_ms}.items(), key=lambda kv: kv[::-1])
            return replace(self, ahead=dict(ahead[:MAX_AHEAD]))
        if at_ms > self.at_ms:
            passed = {i: t for i, t in self.ahead.items() if t >= at_ms}
            return replace(self, at_ms=at_ms, ids=frozenset({review_id}), ahead=passed)
        if at_ms == self.at_ms:
            return replace(self, ids=self.ids | {review_id})
        return self

    def encode(self) -> str:
        doc: dict[str, object] = {"v": CURSOR_VERSION, "t": self.at_ms, "ids": sorted(self.ids)}
        if self.reported:
            doc["bad"] = list(self.reported)
        if self.ahead:
            doc["ahead"] = dict(sorted(self.ahead.items()))
        return orjson.dumps(doc).decode()

    @classmethod
    def decode(cls, cursor: str | None) -> Watermark:
        """The empty watermark for no cursor; `ValueError` for one that is not ours."""
        if not cursor:
            return cls()
        doc = _load(cursor)
        at_ms, ids = doc.get("t"), doc.get("ids")
        if not isinstance(at_ms, int) or not isinstance(ids, list):
            raise ValueError("watermark cursor needs integer 't' and list 'ids'")
        ahead = doc.get("ahead", {})
        if not isinstance(ahead, dict) or not all(isinstance(t, int) for t in ahead.values()):
            raise ValueError("watermark cursor: 'ahead' must map ids to integers")
        return cls(at_ms, frozenset(str(i) for i in ids), _reported(doc), ahead)

    def rewound(self) -> Watermark:
        """For a stored watermark after now (written before it was kept behind now):
        none, so the poll reads from the backfill horizon again, as for an unreadable
        cursor; the reviews it holds stay known (`ahead`), not handed on again."""
        ahead = {**dict.fromkeys(self.ids, self.at_ms), **self.ahead}
        return Watermark(reported=self.reported, ahead=ahead)


@dataclass(frozen=True, slots=True)
class SeenIds:
    """RSS cursor: per storefront, review id → `updated` (Unix ms, 0 when absent)."""

    by_country: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    reported: tuple[str, ...] = ()

    def is_new(self, country: str, review_id: str, at_ms: int) -> bool:
        seen = self.by_country.get(country, {})
        return seen.get(review_id) != at_ms

    def knows(self, country: str, review_id: str) -> bool:
        return review_id in self.by_country.get(country, {})

    def add(self, country: str, found: Iterable[Found]) -> SeenIds:
        seen = dict(self.by_country.get(country, {}))
        seen.update((f.review_id, f.at_ms) for f in found)
        if len(seen) > RSS_WINDOW:
            newest = sorted(seen.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)
            seen = dict(newest[:RSS_WINDOW])
        return SeenIds({**self.by_country, country: seen}, self.reported)

    def encode(self) -> str:
        doc: dict[str, object] = {
            "v": CURSOR_VERSION,
            "seen": {cc: dict(ids) for cc, ids in self.by_country.items()},
        }
        if self.reported:
            doc["bad"] = list(self.reported)
        return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS).decode()

    @classmethod
    def decode(cls, cursor: str | None) -> SeenIds:
        if not cursor:
            return cls()
        seen = _load(cursor).get("seen")
        if not isinstance(seen, dict):
            raise ValueError("RSS cursor needs an object 'seen'")
        by_country: dict[str, dict[str, int]] = {}
        for cc, ids in seen.items():
            if not isinstance(ids, dict) or not all(isinstance(v, int) for v in ids.values()):
                raise ValueError(f"RSS cursor: 'seen.{cc}' must map ids to integers")
            by_country[str(cc)] = {str(k): int(v) for k, v in ids.items()}
        return cls(by_country, _reported(_load(cursor)))


def _reported(doc: Mapping[str, object]) -> tuple[str, ...]:
    bad = doc.get("bad", [])
    return tuple(str(d) for d in bad) if isinstance(bad, list) else ()


def unreported(
    bad: Iterable[BadInput], reported: tuple[str, ...]
) -> tuple[list[BadInput], tuple[str, ...]]:
    """The unusable items not dead-lettered yet, and the digests to remember. A bad item
    newer than the cursor is read again on every poll until a good review passes it;
    it is dead-lettered once, not once per poll."""
    known = set(reported)
    fresh: list[BadInput] = []
    digests = list(reported)
    for item in bad:
        digest = hashlib.blake2b(item.raw, digest_size=8).hexdigest()
        if digest not in known:
            known.add(digest)
            fresh.append(item)
            digests.append(digest)
    return fresh, tuple(digests[-MAX_REPORTED:])


def _load(cursor: str) -> dict[str, object]:
    try:
        doc = orjson.loads(cursor)
    except orjson.JSONDecodeError:
        raise ValueError("cursor is not JSON") from None
    if not isinstance(doc, dict) or doc.get("v") != CURSOR_VERSION:
        raise ValueError(f"cursor is not a version-{CURSOR_VERSION} review cursor")
    return doc


def oldest_first(found: Iterable[Found]) -> list[Found]:
    """One entry per review (the newest version, should a page shift repeat one),
    ordered oldest first."""
    latest: dict[str, Found] = {}
    for item in found:
        kept = latest.get(item.review_id)
        if kept is None or item.at_ms > kept.at_ms:
            latest[item.review_id] = item
    return sorted(latest.values(), key=lambda f: (f.at_ms, f.review_id))


def watermark_batches(
    found: Iterable[Found], start: Watermark, size: int, *, now_ms: int
) -> Iterator[tuple[list[FeedbackEvent], Watermark]]:
    """Batches of at most `size` events, oldest first, each with the watermark that
    covers it and everything before it (never after `now_ms`)."""
    mark = start
    chunk: list[FeedbackEvent] = []
    for item in oldest_first(found):
        chunk.append(item.event)
        mark = mark.advance(item.at_ms, item.review_id, now_ms=now_ms)
        if len(chunk) >= size:
            yield chunk, mark
            chunk = []
    if chunk:
        yield chunk, mark
