"""Every plug-in interface of the worker in one place (buses live in `ingest.bus.base`).

Connectors, processor steps and sinks implement these; the runtime only ever
talks to these types, so `ingest/` never names a channel, a rule or a database.
"""

from __future__ import annotations

import asyncio
import builtins
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal, Protocol

from aiohttp import web

from ingest.model import FeedbackEvent, FeedbackRecord

# --- connectors -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BadInput:
    """Input a connector could not turn into an event: dead-lettered with its bytes."""

    reason: str
    raw: bytes
    ref: str = ""
    """Where it came from (file and line, message UID, ...), for the operator."""
    kind: str = "malformed"


@dataclass(frozen=True, slots=True)
class Batch:
    """What a pull connector yields: events, the inputs it could not parse, and the
    cursor that follows them. The runtime publishes `events` and `bad` with broker
    confirms, then commits `cursor` and only then awaits `after_commit`."""

    events: Sequence[FeedbackEvent]
    cursor: str | None = None
    bad: Sequence[BadInput] = ()
    after_commit: Callable[[], Awaitable[None]] | None = None
    skipped: int = 0
    """Inputs read for this batch that are deliberately neither published nor dead-lettered
    (auto-replies, bounces, duplicates within the pass, ratings without words): counted
    in progress reports, so read = events + bad + skipped."""
    pending: int | None = None
    """Inputs this pass will still read after this batch, where the connector knows it
    (the total of a progress bar); None when it cannot tell."""


class Connector(ABC):
    """Common part of pull and push connectors."""

    type: ClassVar[str]
    """Registry name, e.g. "file_drop"."""
    description: ClassVar[str]
    mode: ClassVar[Literal["pull", "push", "both"]]
    """"both": the class inherits PullConnector and PushConnector (e.g. a drop folder
    and a webhook for the same source); the runtime polls it and mounts its routes."""
    Options: ClassVar[builtins.type[Any]]
    """A frozen dataclass of the connector's options, built by `ingest.options.parse_options`
    from its `[connectors.<name>]` table (minus `type`); it has a classmethod `example()`."""

    channel: ClassVar[str] = ""
    """The channel of this connector's events (`email`, `phone`, ...): a dead letter of
    input that never became an event is labelled with it (`x-channel`, metrics), like
    the events around it. Empty: labelled with the connector's name."""

    def __init__(self, name: str, options: Any) -> None:
        self.name = name
        self.options = options

    @property
    def input_channel(self) -> str:
        """The channel a dead letter of this connector's input is labelled with."""
        return self.channel or self.name

    @abstractmethod
    async def check(self) -> None:
        """A cheap real operation proving the connector can work (credentials valid,
        folder writable, endpoint reachable); raise `ConfigError`/`TransientError`."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""

    @classmethod
    def parse_payload(
        cls, data: bytes, options: Any
    ) -> tuple[Sequence[FeedbackEvent], Sequence[BadInput]]:
        """Run the pure parser on one saved payload (`feedback-ingest parse`)."""
        raise NotImplementedError(f"{cls.type} has no offline parser")


class PullConnector(Connector):
    mode: ClassVar[Literal["pull", "push", "both"]] = "pull"
    poll_interval_secs: float = 30.0
    keeps_cursor: ClassVar[bool] = True
    """False when every batch has `cursor=None` because the commit moves the input away
    (a drop folder's file to done/): `backfill --from-scratch` has nothing to rewind and
    refuses such a connector."""

    @abstractmethod
    def read(self, cursor: str | None) -> AsyncIterator[Batch]:
        """Batches of new input after `cursor`, each with the cursor that follows it."""

    async def wait_for_input(self, timeout_secs: float) -> None:
        """Return when new input may be waiting, at the latest after `timeout_secs`; the
        runtime polls then. The default sleeps; a channel that can announce new input
        (IMAP IDLE) returns early. Cancelled when the worker stops."""
        await asyncio.sleep(timeout_secs)


WebHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Route:
    """One HTTP route of a push connector, mounted at `/webhooks/<type>/<name><path>`."""

    method: Literal["GET", "POST", "PUT"]
    handler: WebHandler
    path: str = ""
    """Below the connector's base path: "" for the base itself, or e.g. "/events"."""


class Intake(Protocol):
    """What the runtime hands a push connector (`PushConnector.bind`)."""

    async def publish(self, events: Sequence[FeedbackEvent], bad: Sequence[BadInput] = ()) -> None:
        """Return only once the broker confirmed every message; raise `TransientError`
        otherwise. Answer the sender "ok" only after this returned."""

    async def load_cursor(self, key: str) -> str | None:
        """Per-connector cursors for push connectors that also pull (WeCom `sync_msg`)."""

    async def save_cursor(self, key: str, cursor: str) -> None: ...


class PushConnector(Connector):
    """A connector the channel calls. It declares routes; the runtime mounts them on the
    shared web server, binds an `Intake`, counts outcomes and answers for escaped errors:
    `Rejected` → its status (403 forged, 400 malformed, ...), `TransientError` → 503
    (the sender retries), anything else → 500. None of them reached the bus."""

    mode: ClassVar[Literal["pull", "push", "both"]] = "push"
    _intake: Intake | None = None

    def bind(self, intake: Intake) -> None:
        self._intake = intake

    @property
    def intake(self) -> Intake:
        if self._intake is None:
            raise RuntimeError(f"push connector {self.name!r} used before the runtime bound it")
        return self._intake

    @abstractmethod
    def routes(self) -> Sequence[Route]: ...

    async def run(self) -> None:
        """Background work next to the routes (e.g. pulling after a callback); runs until
        cancelled at shutdown. Most push connectors need none."""


# --- processors -------------------------------------------------------------


class Step(Protocol):
    """One pure step of the classification chain: a record in, a record out.
    Raise `Drop` to discard the record (e.g. an auto-reply), `PermanentError` if the
    input cannot be classified. Steps run in worker processes, so they must be
    built from plain options and hold no open I/O."""

    def __call__(self, record: FeedbackRecord) -> FeedbackRecord: ...


# --- sinks ------------------------------------------------------------------


class Sink(ABC):
    """Writes classified records somewhere durable. `write` is an idempotent upsert
    by record id, so redelivery never duplicates; it raises `TransientError` when the
    backend is down and returns only once the records are durable."""

    name: ClassVar[str]

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect, migrate."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Disconnect."""

    @abstractmethod
    async def write(self, records: Sequence[FeedbackRecord]) -> None: ...

    @abstractmethod
    async def ping(self) -> None:
        """Raise `TransientError` if the backend is unreachable (readiness)."""


@dataclass(frozen=True, slots=True)
class FeedQuery:
    limit: int = 50
    urgency: str | None = None
    channel: str | None = None
    category: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)


class Feed(Sink):
    """The priority feed the desk reads (contract: architecture.md, "Redis priority feed")."""

    @abstractmethod
    async def top(self, query: FeedQuery) -> list[FeedbackRecord]:
        """Open items, most pressing first (level, then due_at)."""

    @abstractmethod
    async def size(self) -> dict[str, int]:
        """Open items per urgency level."""


@dataclass(frozen=True, slots=True)
class DeskItem:
    """A feed item as the desk sees it: the masked record plus its live hot fields."""

    record: FeedbackRecord
    status: str
    owner: str
    lease_expires_at: datetime | None = None
    breached: bool = False
    escalated: bool = False
    linked_to: str = ""
    """A repeat complaint: the id of the same customer's open item it was linked to."""


@dataclass(frozen=True, slots=True)
class FeedEvent:
    """One entry of the live stream (`{prefix}:events`): `type` is one of new, updated,
    claimed, released, resolved, breached, escalated, reassigned; `event_id` is the
    stream position a reader resumes after (SSE `Last-Event-ID`)."""

    event_id: str
    type: str
    record_id: str
    fields: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SweepResult:
    returned: Sequence[str] = ()
    """Items whose lease expired: back in the feed."""
    breached: Sequence[str] = ()
    """Items newly past due_at: marked breached and raised within their level."""


class DeskFeed(Feed):
    """The desk's operations on the feed, each atomic (contract: architecture.md,
    "Redis priority feed"). Two agents can never hold one item. Every operation that
    changes an item appends an event to the stream. Operations on an item the caller
    may not touch raise `ingest.errors.Conflict` (held by someone else, already
    resolved) or `KeyError` (no such item)."""

    @abstractmethod
    async def next(self, agent: str, lease_secs: int) -> DeskItem | None:
        """Claim the most pressing open item for `agent` with a lease; None if empty."""

    @abstractmethod
    async def claim(self, record_id: str, agent: str, lease_secs: int) -> DeskItem: ...

    @abstractmethod
    async def renew(self, record_id: str, agent: str, lease_secs: int) -> DeskItem: ...

    @abstractmethod
    async def release(self, record_id: str, agent: str) -> DeskItem: ...

    @abstractmethod
    async def resolve(self, record_id: str, agent: str, code: str, note: str = "") -> DeskItem:
        """Close the item; `code` is the resolution outcome."""

    @abstractmethod
    async def reassign(self, record_id: str, to_agent: str, by: str) -> DeskItem:
        """Supervisor: give a claimed or open item to `to_agent` (with a fresh lease)."""

    @abstractmethod
    async def escalate(self, record_id: str, by: str, reason: str) -> DeskItem:
        """Raise an item to `urgent` (keeps its owner)."""

    @abstractmethod
    async def item(self, record_id: str) -> DeskItem | None: ...

    @abstractmethod
    async def sweep(self, now: datetime) -> SweepResult:
        """Return expired leases to the feed; mark items past due_at breached."""

    @abstractmethod
    async def events(
        self, after: str = "0", count: int = 100, block_ms: int = 0
    ) -> list[FeedEvent]:
        """Stream entries after `after` ("0" = from the start, "$" = only new ones)."""


class Store(Sink):
    """SQL storage of every record plus an append-only audit trail."""

    @abstractmethod
    async def get(self, record_id: str) -> FeedbackRecord | None: ...

    @abstractmethod
    async def count(self) -> int: ...


class CursorStore(ABC):
    """Where pull connectors' cursors live (Redis, or SQLite embedded)."""

    @abstractmethod
    async def load(self, connector: str) -> str | None: ...

    @abstractmethod
    async def save(self, connector: str, cursor: str) -> None:
        """Durable once it returns."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Disconnect."""
