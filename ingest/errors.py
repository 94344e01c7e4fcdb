"""One error taxonomy for the whole worker.

    IngestError
    ├── ConfigError      fatal at start-up; names the offending key
    ├── TransientError   retry with backoff (broker, Redis, database, channel API down)
    ├── PermanentError   this input can never succeed: dead-letter it with its bytes
    ├── Conflict         a desk operation lost a race or is not allowed in that state
    └── Rejected         a push request refused before parsing (forged, stale, replayed)

    Drop                 not an error: a duplicate or an ignored event, acked quietly

Library errors are translated into these at the boundary where they are raised,
so the runtime decides retry / dead-letter / drop from the type alone.
"""

from __future__ import annotations


class IngestError(Exception):
    """Base of every error the worker raises on purpose."""


class ConfigError(IngestError):
    """The configuration is wrong; `key` is the dotted path that is wrong."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


class TransientError(IngestError):
    """Something outside us is down or slow; the same input may succeed later."""


class PermanentError(IngestError):
    """The input itself is bad; retrying cannot help. `kind` is a short bounded label
    (used as a metric label), the message says what exactly is wrong."""

    def __init__(self, message: str, *, kind: str = "malformed") -> None:
        super().__init__(message)
        self.kind = kind


class Conflict(IngestError):
    """A desk operation lost a race or is not allowed in the item's state (someone
    else holds it, it is already resolved); the caller shows `reason` to the agent."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Rejected(IngestError):
    """A push request refused before it becomes input: forged signature, stale or
    replayed timestamp, malformed envelope. The web layer answers `status` with
    `message`, counts `kind`, and nothing reaches the bus."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message


class Drop(Exception):
    """Not an error: the input is a duplicate or deliberately ignored; ack and move on."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
