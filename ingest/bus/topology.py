"""The contract topology both buses implement (exchanges, bindings, queue names) and the
small checks and header rules they share, so RabbitMQ and the in-memory bus cannot
drift apart."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

from ingest.bus.base import (
    CLASSIFIED,
    DLX,
    H_ERROR,
    H_ERROR_STAGE,
    H_ID,
    H_ORIGIN_EXCHANGE,
    H_ORIGIN_ROUTING_KEY,
    INGRESS,
    Q_DEAD,
    Q_PROCESS,
    Q_PROCESS_URGENT,
    Q_SINK_FEED,
    Q_SINK_STORE,
    Delivery,
)

INGRESS_UNROUTED = "feedback.ingress.unrouted"
"""Alternate exchange of feedback.ingress: keys matching no binding land in feedback.process."""

H_FIRST_DEATH_REASON = "x-first-death-reason"
H_FIRST_DEATH_QUEUE = "x-first-death-queue"
H_FIRST_DEATH_EXCHANGE = "x-first-death-exchange"
DEATH_REASON_DELIVERY_LIMIT = "delivery_limit"
"""RabbitMQ's own header names and reason, so a parked message looks the same on both buses."""

BROKER_OWNED_HEADERS = frozenset({"x-delivery-count", "x-death"})
"""Headers only the broker may set: dropped on publish, never shown in `Delivery.headers`
(a stale copy would corrupt the delivery count of a replayed message)."""

MAX_ERROR_CHARS = 2000
"""`x-error` is cut to this length: a header must stay far below the AMQP frame size."""

EXCHANGES: Mapping[str, tuple[str, str | None]] = MappingProxyType(
    {
        INGRESS: ("topic", INGRESS_UNROUTED),
        INGRESS_UNROUTED: ("fanout", None),
        CLASSIFIED: ("fanout", None),
        DLX: ("fanout", None),
    }
)
"""Exchange name → (type, alternate exchange)."""

BINDINGS: tuple[tuple[str, str, str], ...] = (
    (INGRESS, "*.urgent", Q_PROCESS_URGENT),
    (INGRESS, "*.normal", Q_PROCESS),
    (INGRESS_UNROUTED, "", Q_PROCESS),
    (CLASSIFIED, "", Q_SINK_FEED),
    (CLASSIFIED, "", Q_SINK_STORE),
    (DLX, "", Q_DEAD),
)
"""(exchange, binding key, queue); tests/unit/test_bus_topology.py checks it against
deploy/rabbitmq/definitions.json."""

PUBLISHABLE_EXCHANGES = (INGRESS, CLASSIFIED, DLX)
CONTRACT_QUEUES = (Q_PROCESS_URGENT, Q_PROCESS, Q_SINK_FEED, Q_SINK_STORE, Q_DEAD)
DEFAULT_PREFETCH = 64
MAX_PREFETCH = 65535
"""basic.qos prefetch-count is an unsigned short."""


def topic_matches(pattern: str, routing_key: str) -> bool:
    """AMQP topic matching: `*` is exactly one word, `#` zero or more."""
    return _match_words(pattern.split("."), routing_key.split("."))


def _match_words(pattern: list[str], words: list[str]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_match_words(rest, words[i:]) for i in range(len(words) + 1))
    return bool(words) and head in ("*", words[0]) and _match_words(rest, words[1:])


# --- shared with ingest/bus/amqp.py: one definition, so the two buses cannot drift -----


def public_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k not in BROKER_OWNED_HEADERS}


def dead_letter_headers(delivery: Delivery, error: str, stage: str) -> dict[str, str]:
    """Headers of a message parked by `Bus.dead_letter` (shared with the AMQP bus)."""
    return {
        **delivery.headers,
        H_ERROR: error[:MAX_ERROR_CHARS],
        H_ERROR_STAGE: stage,
        H_ORIGIN_EXCHANGE: delivery.exchange,
        H_ORIGIN_ROUTING_KEY: delivery.routing_key,
    }


def check_queue(queue: str) -> None:
    if queue not in CONTRACT_QUEUES:
        raise ValueError(f"unknown queue {queue!r}; the contract queues are {CONTRACT_QUEUES}")


def check_consume_args(queues: Sequence[str], prefetch: int, default: int) -> int:
    """Validate `consume` arguments the same way on both buses; return the prefetch to use
    (below 1 means the bus default: an unbounded prefetch is never used)."""
    if not queues:
        raise ValueError("consume() needs at least one queue")
    for queue in queues:
        check_queue(queue)
    if len(set(queues)) != len(queues):
        raise ValueError(f"queue listed twice in {list(queues)}")
    if prefetch > MAX_PREFETCH:
        raise ValueError(f"prefetch {prefetch} is above the AMQP maximum {MAX_PREFETCH}")
    return prefetch if prefetch >= 1 else default


def check_exchange(exchange: str) -> None:
    if exchange not in PUBLISHABLE_EXCHANGES:
        raise ValueError(
            f"unknown exchange {exchange!r}; publish to one of {PUBLISHABLE_EXCHANGES}"
        )


def settled_error(delivery: Delivery, state: str) -> RuntimeError:
    return RuntimeError(
        f"delivery of {delivery.headers.get(H_ID, '?')!r} from {delivery.queue!r} "
        f"was already settled ({state}); settle a delivery exactly once"
    )
