"""The live stream (`GET /api/events`, Server-Sent Events) from the feed's event log.

One `EventHub` per desk process reads the log and fans it out to every open stream,
so twenty agents cost one reader of the feed, not twenty pollers. A client that
reconnects with `Last-Event-ID` first catches up straight from the feed (the log
keeps the last `events_maxlen` entries), then joins the hub; events are written in
batches, one write per wake-up, so a burst of new records costs few syscalls.

The hub also remembers who holds which item (from `claimed` / `reassigned` /
`released` / `resolved` events), which answers the feed's `owner` filter; the
feed itself stays the truth, every candidate is re-read before it is shown.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

import orjson
from aiohttp import web

from ingest.abc import DeskFeed, DeskItem, FeedEvent
from ingest.desk.auth import http_error
from ingest.desk.present import event_view
from ingest.log import get_logger

log = get_logger("ingest.desk.sse")

BATCH = 500
"""Events read from the feed per call."""
BLOCK_MS = 1000
QUEUE_SIZE = 100
"""Batches (up to `BATCH` events each) a slow client may lag behind before its stream
is closed (it reconnects with Last-Event-ID and catches up from the feed)."""
RETRY_MS = 3000
_CLOSE = None
Frame = tuple[str, bytes]
"""(event id, the encoded SSE frame)."""
Frames = list[Frame]
"""One read of the log, encoded once and handed to every stream as it is."""


def id_key(event_id: str) -> tuple[int, ...]:
    """Order of stream ids ("42" in SQLite, "1700000000000-3" in Redis)."""
    try:
        return tuple(int(part) for part in event_id.split("-"))
    except ValueError:
        return (0,)


class EventHub:
    def __init__(self, feed: DeskFeed, *, batch: int = BATCH, block_ms: int = BLOCK_MS) -> None:
        self.feed = feed
        self.batch = batch
        self.block_ms = block_ms
        self.owners: dict[str, str] = {}
        """record id → agent, for items whose last event left them claimed."""
        self.live = asyncio.Event()
        """Set once the hub has read the whole log and follows it as it grows."""
        self._subscribers: set[asyncio.Queue[Frames | None]] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="desk-events")

    async def stop(self) -> None:
        for queue in list(self._subscribers):
            self._close(queue)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def subscribe(self) -> asyncio.Queue[Frames | None]:
        queue: asyncio.Queue[Frames | None] = asyncio.Queue(QUEUE_SIZE)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Frames | None]) -> None:
        self._subscribers.discard(queue)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def note(self, item: DeskItem) -> None:
        """What this process just did, known before its event comes round the log."""
        if item.status == "claimed":
            self.owners[item.record.id] = item.owner
        else:
            self.owners.pop(item.record.id, None)

    def held_by(self, agent: str) -> list[str]:
        return [record_id for record_id, owner in self.owners.items() if owner == agent]

    async def _run(self) -> None:
        """Replay the log from its start (to learn the owners), then follow it."""
        after = "0"
        while True:
            try:
                block = self.block_ms if self.live.is_set() else 0
                events = await self.feed.events(after, count=self.batch, block_ms=block)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # feed down: the streams stay open, we retry
                log.warning("desk_events_read_failed", error=str(exc))
                await asyncio.sleep(1)
                continue
            self._remember(events)
            if events:
                after = events[-1].event_id
            if self.live.is_set() and self._subscribers:
                frames = [(e.event_id, frame(e)) for e in events]  # encoded once for all
                for queue in list(self._subscribers):
                    self._offer(queue, frames)
            elif len(events) < self.batch:
                self.live.set()

    def _remember(self, events: Iterable[FeedEvent]) -> None:
        for event in events:
            if event.type in ("claimed", "reassigned"):
                self.owners[event.record_id] = event.fields.get("owner", "")
            elif event.type in ("released", "resolved"):
                self.owners.pop(event.record_id, None)

    def _offer(self, queue: asyncio.Queue[Frames | None], frames: Frames) -> None:
        try:
            queue.put_nowait(frames)
        except asyncio.QueueFull:
            log.warning("desk_stream_lagging", hint="closed; the client resumes from the feed")
            self._close(queue)

    def _close(self, queue: asyncio.Queue[Frames | None]) -> None:
        self._subscribers.discard(queue)
        while True:  # make room for the close marker
            try:
                queue.put_nowait(_CLOSE)
                return
            except asyncio.QueueFull:
                queue.get_nowait()


def frame(event: FeedEvent) -> bytes:
    data = orjson.dumps(event_view(event))
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (
        event.event_id.encode(),
        event.type.encode(),
        data,
    )


async def stream(request: web.Request, hub: EventHub, heartbeat_secs: float) -> web.StreamResponse:
    """Resume after the `Last-Event-ID` header, else start with the next event. The first
    read of the catch-up comes before the 200, so an id the feed does not take is a 400."""
    last = request.headers.get("Last-Event-ID", "")
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
        }
    )
    queue = hub.subscribe()  # before catching up: nothing falls between the two
    try:
        try:
            missed = await hub.feed.events(last, count=BATCH) if last else []
        except ValueError:
            reason = "Last-Event-ID is not an event id of this feed"
            raise http_error(400, "bad_request", reason) from None
        await response.prepare(request)
        await response.write(b"retry: %d\n\n" % RETRY_MS)
        if last:
            last = await _catch_up(response, hub.feed, last, missed)
        while True:
            try:
                first = await asyncio.wait_for(queue.get(), heartbeat_secs)
            except TimeoutError:
                await response.write(b": ping\n\n")
                continue
            batches = [first]
            while not queue.empty():
                batches.append(queue.get_nowait())
            closing = _CLOSE in batches
            out = [
                data
                for batch in batches
                if batch is not _CLOSE
                for event_id, data in batch
                if not last or id_key(event_id) > id_key(last)  # else sent while catching up
            ]
            if out:
                await response.write(b"".join(out))
                last = ""  # the hub is in order: everything after this is new too
            if closing:
                break
    except ConnectionResetError:  # the client went away
        pass
    finally:
        hub.unsubscribe(queue)
    return response


async def _catch_up(
    response: web.StreamResponse, feed: DeskFeed, after: str, events: list[FeedEvent]
) -> str:
    """Send what the client missed, straight from the feed, starting with `events` (the
    first read, after `after`); returns the last id sent."""
    while True:
        if events:
            await response.write(b"".join(frame(e) for e in events))
            after = events[-1].event_id
        if len(events) < BATCH:
            return after
        events = await feed.events(after, count=BATCH)
