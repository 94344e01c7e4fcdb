"""deploy/rabbitmq/definitions.json, the worker's declarations and the in-memory routing
table are one topology (no services needed; the import itself is proven in
tests/integration/test_bus.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ingest.bus.amqp import exchange_arguments, queue_arguments
from ingest.bus.amqp_delivery import header_text
from ingest.bus.base import (
    CLASSIFIED,
    DLX,
    INGRESS,
    Q_DEAD,
    Q_PROCESS,
    Q_PROCESS_URGENT,
    Q_SINK_FEED,
    Q_SINK_STORE,
    Topology,
)
from ingest.bus.topology import BINDINGS, EXCHANGES, INGRESS_UNROUTED, topic_matches

DEFINITIONS = Path(__file__).parents[2] / "deploy" / "rabbitmq" / "definitions.json"


@pytest.fixture(scope="module")
def definitions() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DEFINITIONS.read_text())
    return loaded


def test_definitions_hold_exactly_the_contract_names_in_the_default_vhost(
    definitions: dict[str, Any],
) -> None:
    exchanges = {e["name"] for e in definitions["exchanges"]}
    queues = {q["name"] for q in definitions["queues"]}
    assert exchanges == {INGRESS, INGRESS_UNROUTED, CLASSIFIED, DLX}
    assert queues == {Q_PROCESS_URGENT, Q_PROCESS, Q_SINK_FEED, Q_SINK_STORE, Q_DEAD}
    entities = definitions["exchanges"] + definitions["queues"] + definitions["bindings"]
    assert {entity["vhost"] for entity in entities} == {"/"}
    for entity in definitions["exchanges"] + definitions["queues"]:
        assert (entity["durable"], entity["auto_delete"]) == (True, False), entity["name"]


def test_exchanges_are_declared_as_the_worker_declares_them(definitions: dict[str, Any]) -> None:
    for exchange in definitions["exchanges"]:
        name = exchange["name"]
        assert exchange["type"] == EXCHANGES[name][0], name
        assert exchange["internal"] == (name == INGRESS_UNROUTED), name
        assert exchange["arguments"] == exchange_arguments(name), name
    ingress = next(e for e in definitions["exchanges"] if e["name"] == INGRESS)
    assert ingress["arguments"] == {"alternate-exchange": INGRESS_UNROUTED}


def test_queue_arguments_equal_the_workers_or_redeclaration_would_fail(
    definitions: dict[str, Any],
) -> None:
    topology = Topology()
    for queue in definitions["queues"]:
        assert queue["arguments"] == queue_arguments(queue["name"], topology), queue["name"]
    by_name = {q["name"]: q["arguments"] for q in definitions["queues"]}
    assert by_name[Q_PROCESS] == {
        "x-queue-type": "quorum",
        "x-delivery-limit": topology.delivery_limit - 1,  # returns, not deliveries
        "x-dead-letter-exchange": DLX,
    }
    assert by_name[Q_DEAD] == {"x-queue-type": "quorum"}


def test_bindings_equal_the_routing_table_of_both_buses(definitions: dict[str, Any]) -> None:
    bindings = [(b["source"], b["routing_key"], b["destination"]) for b in definitions["bindings"]]
    assert sorted(bindings) == sorted(BINDINGS)
    assert {b["destination_type"] for b in definitions["bindings"]} == {"queue"}


@pytest.mark.parametrize(
    ("pattern", "routing_key", "matches"),
    [
        ("*.urgent", "wechat.urgent", True),
        ("*.urgent", "wechat.normal", False),
        ("*.urgent", "urgent", False),
        ("*.urgent", "wecom.kf.urgent", False),
        ("#.urgent", "urgent", True),
        ("#.urgent", "wecom.kf.urgent", True),
        ("#", "", True),
        ("app.#", "app", True),
        ("app.*", "app", False),
    ],
)
def test_topic_matching_follows_amqp(pattern: str, routing_key: str, matches: bool) -> None:
    assert topic_matches(pattern, routing_key) is matches


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("中文", "中文"),
        (b"raw", "raw"),
        (3, "3"),
        (True, "true"),
        (datetime(2024, 5, 1, tzinfo=UTC), "2024-05-01T00:00:00+00:00"),
        (["a", 1], '["a",1]'),
    ],
)
def test_amqp_header_values_are_rendered_as_strings(value: Any, text: str) -> None:
    assert header_text(value) == text
