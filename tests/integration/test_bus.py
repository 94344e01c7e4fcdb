"""The bus contract (ingest/bus/base.py), proven once against both implementations.

Every test runs on the in-memory bus and on RabbitMQ (quorum queues in a throwaway vhost,
contract queues purged around each test), so embedded mode cannot drift from production.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import shutil
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote, urlparse

import aio_pika
import pytest
from aio_pika.exceptions import ChannelNotFoundEntity

from ingest.bus.amqp import AmqpBus
from ingest.bus.base import (
    CLASSIFIED,
    DLX,
    H_CHANNEL,
    H_ERROR,
    H_ERROR_STAGE,
    H_ID,
    H_ORIGIN_EXCHANGE,
    H_ORIGIN_ROUTING_KEY,
    H_STAGE,
    INGRESS,
    Q_DEAD,
    Q_PROCESS,
    Q_PROCESS_URGENT,
    Q_SINK_FEED,
    Q_SINK_STORE,
    Bus,
    Delivery,
    OutMessage,
    Topology,
)
from ingest.bus.memory import MemoryBus
from ingest.bus.topology import CONTRACT_QUEUES
from ingest.errors import ConfigError, TransientError

pytestmark = pytest.mark.timeout(30)

DEFINITIONS = Path(__file__).parents[2] / "deploy" / "rabbitmq" / "definitions.json"
QUIET_SECS = 0.3
"""How long "nothing more arrives" is watched: far above a local broker's round trip."""


async def _purge_contract_queues(url: str) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        for name in CONTRACT_QUEUES:
            queue = await channel.get_queue(name, ensure=False)
            await queue.purge()


@pytest.fixture(params=["memory", pytest.param("amqp", marks=pytest.mark.integration)])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    if request.param == "memory":
        async with MemoryBus() as memory_bus:
            yield memory_bus
        return
    url: str = request.getfixturevalue("amqp_vhost_url")
    async with AmqpBus(url, timeout_secs=10) as amqp_bus:
        await _purge_contract_queues(url)
        yield amqp_bus
    # messages a test left unsettled come back when its channels close: purge them too
    await _purge_contract_queues(url)


def event(n: int, lane: str = "normal") -> OutMessage:
    body = json.dumps({"schema": 1, "event": {"id": f"t-{n}", "channel": "app", "text": "hi"}})
    headers = {H_ID: f"t-{n}", H_CHANNEL: "app", H_STAGE: "ingress"}
    return OutMessage(Topology.ingress_routing_key("app", lane), body.encode(), headers)


async def publish(bus: Bus, message: OutMessage, exchange: str = INGRESS) -> None:
    await bus.publish(exchange, message.routing_key, message.body, message.headers)


async def take(deliveries: AsyncIterator[Delivery], count: int) -> list[Delivery]:
    async with asyncio.timeout(5):
        return [await anext(deliveries) for _ in range(count)]


async def assert_nothing_more(deliveries: AsyncIterator[Delivery]) -> None:
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(QUIET_SECS):
            extra = await anext(deliveries)
            pytest.fail(f"unexpected delivery {extra.headers} from {extra.queue}")


async def ack_all(deliveries: list[Delivery]) -> None:
    for delivery in deliveries:
        await delivery.ack()


async def test_publish_then_consume_returns_the_same_bytes_and_headers(bus: Bus) -> None:
    body = b'{"schema":1,"event":{"id":"wx-1","channel":"wechat","text":"\xe5\x8d\xa1"}}\x00\xff'
    headers = {H_ID: "wx-1", H_CHANNEL: "wechat", H_STAGE: "ingress", "x-note": "中文备注"}
    await bus.publish(INGRESS, "wechat.normal", body, headers)
    async with bus.consume([Q_PROCESS], prefetch=4) as deliveries:
        [delivery] = await take(deliveries, 1)
        assert delivery.body == body
        assert delivery.headers == headers
        assert (delivery.exchange, delivery.routing_key) == (INGRESS, "wechat.normal")
        assert (delivery.queue, delivery.delivery_count) == (Q_PROCESS, 1)
        await delivery.ack()
        await assert_nothing_more(deliveries)


async def test_ingress_routes_urgent_lane_to_urgent_queue_and_every_other_key_to_normal(
    bus: Bus,
) -> None:
    expected = {
        "wechat.urgent": Q_PROCESS_URGENT,
        "wechat.normal": Q_PROCESS,
        "email.routine": Q_PROCESS,  # unknown lane: processed, never dropped
        "nolane": Q_PROCESS,
        "wecom.kf.urgent": Q_PROCESS,  # `*.urgent` is exactly <channel>.<lane>
        "": Q_PROCESS,
    }
    for key, queue in expected.items():
        await bus.publish(INGRESS, key, key.encode(), {})
        delivery = await bus.get(queue)
        assert delivery is not None, f"{key!r} did not reach {queue}"
        assert delivery.body == key.encode()
        await delivery.ack()
        assert sum((await bus.queue_depths()).values()) == 0, f"{key!r} routed twice"


async def test_classified_records_reach_both_sinks(bus: Bus) -> None:
    await bus.publish(CLASSIFIED, "app", b'{"schema":1,"record":{}}', {H_ID: "r-1"})
    for sink in (Q_SINK_FEED, Q_SINK_STORE):
        delivery = await bus.get(sink)
        assert delivery is not None
        assert (delivery.body, delivery.headers) == (b'{"schema":1,"record":{}}', {H_ID: "r-1"})
        await delivery.ack()


async def test_urgent_queue_is_served_before_normal_when_both_have_messages(bus: Bus) -> None:
    for n in range(5):
        await publish(bus, event(n, "normal"))
    for n in range(5, 10):
        await publish(bus, event(n, "urgent"))
    async with bus.consume([Q_PROCESS_URGENT, Q_PROCESS], prefetch=10) as deliveries:
        received = await take(deliveries, 10)
        assert [d.queue for d in received] == [Q_PROCESS_URGENT] * 5 + [Q_PROCESS] * 5
        assert [d.headers[H_ID] for d in received] == [f"t-{n}" for n in (*range(5, 10), *range(5))]
        await ack_all(received)


async def test_requeue_increments_delivery_count_and_redelivers_before_later_messages(
    bus: Bus,
) -> None:
    await publish(bus, event(1))
    await publish(bus, event(2))
    async with bus.consume([Q_PROCESS], prefetch=1) as deliveries:
        for count in (1, 2, 3):
            [delivery] = await take(deliveries, 1)
            assert (delivery.headers[H_ID], delivery.delivery_count) == ("t-1", count)
            await delivery.requeue()
        [first] = await take(deliveries, 1)  # the requeued message stays ahead of t-2
        assert (first.headers[H_ID], first.delivery_count) == ("t-1", 4)
        await first.ack()
        [second] = await take(deliveries, 1)
        assert (second.headers[H_ID], second.delivery_count) == ("t-2", 1)
        await second.ack()


async def test_exceeding_the_delivery_limit_parks_the_message_in_dead_with_body_intact(
    bus: Bus,
) -> None:
    message = event(7)
    await publish(bus, message)
    limit = bus.topology.delivery_limit
    async with bus.consume([Q_PROCESS], prefetch=1) as deliveries:
        for count in range(1, limit + 1):
            [delivery] = await take(deliveries, 1)
            assert delivery.delivery_count == count
            await delivery.requeue()
        await assert_nothing_more(deliveries)  # exactly `delivery_limit` deliveries
    async with bus.consume([Q_DEAD], prefetch=1) as dead_deliveries:
        [dead] = await take(dead_deliveries, 1)
        assert dead.body == message.body
        assert dead.headers.items() >= dict(message.headers).items()
        assert dead.headers["x-first-death-reason"] == "delivery_limit"
        assert dead.headers["x-first-death-queue"] == Q_PROCESS
        assert dead.headers["x-first-death-exchange"] == INGRESS
        assert (dead.routing_key, dead.delivery_count) == (message.routing_key, 1)
        await dead.ack()
    assert (await bus.queue_depths())[Q_PROCESS] == 0


async def test_dead_letter_parks_original_bytes_with_error_and_stage_headers(bus: Bus) -> None:
    message = event(3, "urgent")
    await publish(bus, message)
    async with bus.consume([Q_PROCESS_URGENT], prefetch=1) as deliveries:
        [delivery] = await take(deliveries, 1)
        await bus.dead_letter(delivery, "field 'text' is required", "decode")
        with pytest.raises(RuntimeError, match="already settled"):
            await delivery.ack()
        await assert_nothing_more(deliveries)
    dead = await bus.get(Q_DEAD)
    assert dead is not None
    assert dead.body == message.body
    assert dead.headers == {
        **message.headers,
        H_ERROR: "field 'text' is required",
        H_ERROR_STAGE: "decode",
        H_ORIGIN_EXCHANGE: INGRESS,
        H_ORIGIN_ROUTING_KEY: "app.urgent",
    }
    assert dead.exchange == DLX
    await dead.ack()


async def test_settling_a_delivery_twice_raises(bus: Bus) -> None:
    await publish(bus, event(1))
    delivery = await bus.get(Q_PROCESS)
    assert delivery is not None
    await delivery.ack()
    with pytest.raises(RuntimeError, match=r"already settled \(ack"):
        await delivery.requeue()
    with pytest.raises(RuntimeError, match="already settled"):
        await bus.dead_letter(delivery, "boom", "test")
    assert (await bus.queue_depths())[Q_DEAD] == 0


async def test_leaving_the_consume_context_unacked_returns_messages_to_the_next_consumer(
    bus: Bus,
) -> None:
    for n in range(3):
        await publish(bus, event(n))
    async with bus.consume([Q_PROCESS], prefetch=3) as deliveries:
        abandoned = await take(deliveries, 3)
    with pytest.raises(RuntimeError, match="returned to its queue"):
        await abandoned[0].ack()
    async with bus.consume([Q_PROCESS], prefetch=3) as deliveries:
        again = await take(deliveries, 3)
        assert sorted(d.headers[H_ID] for d in again) == ["t-0", "t-1", "t-2"]
        assert [d.delivery_count for d in again] == [2, 2, 2]
        await ack_all(again)
        await assert_nothing_more(deliveries)


async def test_two_concurrent_consumers_never_get_the_same_message(bus: Bus) -> None:
    total = 200
    await bus.publish_many(INGRESS, [event(n) for n in range(total)])
    received: list[tuple[str, str]] = []
    all_in = asyncio.Event()

    async def worker(name: str) -> None:
        async with bus.consume([Q_PROCESS], prefetch=10) as deliveries:
            async for delivery in deliveries:
                received.append((name, delivery.headers[H_ID]))
                await asyncio.sleep(0.001)  # work, so the other consumer gets its turn
                await delivery.ack()
                if len(received) >= total:
                    all_in.set()

    workers = [asyncio.create_task(worker(name)) for name in ("a", "b")]
    try:
        async with asyncio.timeout(10):
            await all_in.wait()
        await asyncio.sleep(QUIET_SECS)  # a duplicate would arrive now
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    ids = [feedback_id for _, feedback_id in received]
    assert sorted(ids) == sorted(f"t-{n}" for n in range(total))
    assert {name for name, _ in received} == {"a", "b"}
    assert (await bus.queue_depths())[Q_PROCESS] == 0


async def test_prefetch_bounds_unsettled_deliveries_per_consumer(bus: Bus) -> None:
    for n in range(10):
        await publish(bus, event(n))
    async with bus.consume([Q_PROCESS], prefetch=3) as small:
        held = await take(small, 3)
        await assert_nothing_more(small)
        await held[0].ack()
        held += await take(small, 1)  # a settled slot lets exactly one more through
        await assert_nothing_more(small)
        async with bus.consume([Q_PROCESS], prefetch=100) as large:
            rest = await take(large, 6)  # the small consumer kept nothing else back
            await assert_nothing_more(large)
            assert {d.headers[H_ID] for d in held + rest} == {f"t-{n}" for n in range(10)}
            await ack_all(held[1:] + rest)


async def test_get_on_an_empty_queue_returns_none(bus: Bus) -> None:
    assert await bus.get(Q_DEAD) is None
    await publish(bus, event(1))
    delivery = await bus.get(Q_PROCESS)
    assert delivery is not None
    assert (delivery.headers[H_ID], delivery.delivery_count) == ("t-1", 1)
    await delivery.requeue()
    again = await bus.get(Q_PROCESS)
    assert again is not None
    assert again.delivery_count == 2
    await again.ack()
    assert await bus.get(Q_PROCESS) is None


async def test_queue_depths_count_ready_messages_per_queue(bus: Bus) -> None:
    for n in range(2):
        await publish(bus, event(n, "urgent"))
    for n in range(3):
        await publish(bus, event(n, "normal"))
    await bus.publish(CLASSIFIED, "app", b"{}", {})
    expected = {Q_PROCESS_URGENT: 2, Q_PROCESS: 3, Q_SINK_FEED: 1, Q_SINK_STORE: 1, Q_DEAD: 0}
    assert await bus.queue_depths() == expected
    held = await bus.get(Q_PROCESS)  # unacked is not ready
    assert held is not None
    assert (await bus.queue_depths())[Q_PROCESS] == 2
    await held.ack()


async def test_publish_many_of_1000_messages_all_arrive(bus: Bus) -> None:
    messages = [event(n, "urgent" if n % 4 == 0 else "normal") for n in range(1000)]
    await bus.publish_many(INGRESS, messages)
    assert await bus.queue_depths() == {
        Q_PROCESS_URGENT: 250,
        Q_PROCESS: 750,
        Q_SINK_FEED: 0,
        Q_SINK_STORE: 0,
        Q_DEAD: 0,
    }
    async with bus.consume([Q_PROCESS_URGENT, Q_PROCESS], prefetch=200) as deliveries:
        received = []
        for _ in range(1000):
            [delivery] = await take(deliveries, 1)
            received.append(delivery)
            await delivery.ack()
    assert sorted(d.body for d in received) == sorted(m.body for m in messages)
    assert [d.queue for d in received[:250]] == [Q_PROCESS_URGENT] * 250


async def test_unknown_names_are_refused_and_a_closed_bus_is_transient(bus: Bus) -> None:
    with pytest.raises(ValueError, match="unknown exchange"):
        await bus.publish("feedback.nowhere", "app.normal", b"{}", {})
    with pytest.raises(ValueError, match="unknown queue"):
        bus.consume(["feedback.nowhere"], prefetch=1)
    await bus.ping()
    await bus.close()
    with pytest.raises(TransientError):
        await bus.ping()
    with pytest.raises(TransientError):
        await publish(bus, event(1))


async def test_closing_the_bus_ends_every_consume_iteration(bus: Bus) -> None:
    await publish(bus, event(1))
    got_one = asyncio.Event()

    async def consume_until_the_end() -> list[str]:
        ids = []
        async with bus.consume([Q_PROCESS], prefetch=1) as deliveries:
            async for delivery in deliveries:
                ids.append(delivery.headers[H_ID])
                got_one.set()
        return ids

    consumer = asyncio.create_task(consume_until_the_end())
    async with asyncio.timeout(5):
        await got_one.wait()
        await bus.close()
        assert await consumer == ["t-1"]


# --- RabbitMQ only -------------------------------------------------------------------


async def test_amqp_unreachable_broker_is_a_transient_error() -> None:
    with pytest.raises(TransientError):
        await AmqpBus("amqp://guest:guest@127.0.0.1:1/", timeout_secs=5).start()


def _open_connections_to(port: int) -> list[aio_pika.RobustConnection]:
    return [
        o
        for o in gc.get_objects()
        if isinstance(o, aio_pika.RobustConnection) and o.url.port == port and not o.is_closed
    ]


@pytest.mark.filterwarnings("error::RuntimeWarning")
async def test_a_refused_connect_leaves_no_connection_for_the_garbage_collector(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A failed start closes the connection it made. Left open, aio-pika's `__del__`
    schedules `close()` wherever the collector runs; in a worker thread (to_thread, the
    SQLite threads) there is no loop: "coroutine 'RobustConnection.close' was never
    awaited"."""
    # aiormq logs the error with the exception; a captured record would keep the attempt,
    # and its connection, alive past the collection below
    caplog.set_level(logging.CRITICAL, logger="aiormq")
    try:  # not pytest.raises: its ExceptionInfo would keep the attempt alive too
        await AmqpBus("amqp://guest:guest@127.0.0.1:1/", timeout_secs=5).start()
        pytest.fail("started against a closed port")
    except TransientError as exc:
        assert "connect failed" in str(exc)
    await asyncio.sleep(0.05)  # aio-pika's connection task ends
    await asyncio.to_thread(gc.collect)  # a collection in a thread with no event loop
    assert _open_connections_to(1) == []


@pytest.mark.filterwarnings("error::RuntimeWarning")
async def test_a_connect_timeout_leaves_no_reconnect_loop_behind() -> None:
    """A broker that accepts TCP but never answers: `start()` gives up after its timeout
    and nothing of the attempt keeps running. aio-pika's reconnect task, left behind, would
    dial again every 5 s for ever and ignore the cancellation at exit (`asyncio.run`
    would never return)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes the handshake; nobody speaks AMQP
        port = silent.getsockname()[1]
        with pytest.raises(TransientError, match="connect failed"):
            await AmqpBus(f"amqp://guest:guest@127.0.0.1:{port}/", timeout_secs=0.3).start()
        await asyncio.sleep(0.05)
        left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert left == []
        assert _open_connections_to(port) == []
    await asyncio.to_thread(gc.collect)


@pytest.mark.integration
async def test_definitions_file_imports_into_a_broker_the_worker_accepts(
    amqp_vhost_url: str,
) -> None:
    """deploy/rabbitmq/definitions.json and the worker's declarations are the same topology:
    the worker starts against an imported broker, and one with other arguments is refused."""
    rabbitmqctl = shutil.which("rabbitmqctl")
    if rabbitmqctl is None:
        pytest.skip("rabbitmqctl is not on this host")
    vhost = f"feedback-defs-{uuid.uuid4().hex[:8]}"
    definitions = DEFINITIONS.read_text().replace('"vhost": "/"', f'"vhost": "{vhost}"')
    definitions = definitions.replace('"name": "/"', f'"name": "{vhost}"')

    def ctl(*args: str, stdin: str | None = None) -> None:
        subprocess.run(
            [rabbitmqctl, *args],
            input=stdin,
            text=True,
            check=True,
            capture_output=True,
            timeout=60,
        )

    url = urlparse(amqp_vhost_url)._replace(path="/" + quote(vhost, safe="")).geturl()
    try:
        # from stdin: the broker node, not this user, would read a file path
        ctl("import_definitions", "--format", "json", stdin=definitions)
        ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        await _wait_for_imported_queues(url)  # the import finishes in the background
        async with AmqpBus(url, timeout_secs=10) as bus:
            await bus.publish(INGRESS, "app.whatever", b"{}", {})
            assert (await bus.queue_depths())[Q_PROCESS] == 1
        with pytest.raises(ConfigError, match="PRECONDITION_FAILED"):
            await AmqpBus(url, Topology(delivery_limit=9), timeout_secs=10).start()
    finally:
        ctl("delete_vhost", vhost)


async def _wait_for_imported_queues(url: str) -> None:
    async with asyncio.timeout(10):
        connection = await aio_pika.connect(url)
        async with connection:
            while True:
                channel = await connection.channel()
                try:
                    for name in CONTRACT_QUEUES:
                        await channel.declare_queue(name, passive=True)
                    return
                except ChannelNotFoundEntity:
                    await asyncio.sleep(0.05)
