"""Every plug-in interface of the worker in one place (buses live in `ingest.bus.base`).

Connectors, processor steps and sinks implement these; the runtime only ever
talks to these types, so `ingest/` never names a channel, a rule or a database.
"""

from __future__ import annotations

import builtins
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

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


class Connector(ABC):
    """Common part of pull and push connectors."""

    type: ClassVar[str]
    """Registry name, e.g. "file_drop"."""
    description: ClassVar[str]
    mode: ClassVar[Literal["pull", "push"]]
    Options: ClassVar[builtins.type[Any]]
    """A frozen dataclass of the connector's options, built by `ingest.options.parse_options`
    from its `[connectors.<name>]` table (minus `type`); it has a classmethod `example()`."""

    def __init__(self, name: str, options: Any) -> None:
        self.name = name
        self.options = options

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
    mode: ClassVar[Literal["pull", "push"]] = "pull"
    poll_interval_secs: float = 30.0

    @abstractmethod
    def read(self, cursor: str | None) -> AsyncIterator[Batch]:
        """Batches of new input after `cursor`, each with the cursor that follows it."""


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
