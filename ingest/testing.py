"""Test helpers for connector authors: the connector contract suite and the small
fakes it needs (a bus whose confirms you control, cursors in memory).

A connector's tests adopt the contract by subclassing one class and filling in data:

    class TestMyConnectorContract(ConnectorContract):
        connector = MyConnector
        options = {"token": "t0ken", "url": "https://example.invalid"}
        bad_check_options = {"token": "wrong", "url": "http://127.0.0.1:9"}
        good_payloads = [b'{"id": "1", "text": "..."}']
        bad_payloads = [b"{not json"]

        async def pull_connector(self, tmp_path):   # pull connectors: input waiting
            ...
        def push_request(self, connector):          # push connectors: one signed request
            return PushRequest("POST", "", body=b"...", query={...})

Every test here can fail: each checks one promise the runtime relies on (see
docs/adding-a-connector.md). This module imports pytest and hypothesis, which are
test dependencies; nothing in the worker imports it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.abc import BadInput, Connector, CursorStore, PullConnector, PushConnector
from ingest.bus.base import Q_PROCESS, Q_PROCESS_URGENT, OutMessage
from ingest.bus.memory import MemoryBus
from ingest.codec import decode_event, encode_event
from ingest.errors import ConfigError, PermanentError, TransientError
from ingest.model import FeedbackEvent
from ingest.options import Secret, options_to_table, parse_options
from ingest.runtime import push
from ingest.runtime.publish import Publisher
from ingest.runtime.pull import PullScheduler

# --- fakes --------------------------------------------------------------------


class ConfirmControlBus(MemoryBus):
    """A MemoryBus whose broker confirms the test controls: `hold()` makes publishes
    wait until `release()`, `fail()` makes them raise `TransientError` as a broker
    that is down would."""

    def __init__(self) -> None:
        super().__init__()
        self._gate = asyncio.Event()
        self._gate.set()
        self._failing = False
        self.waiting = 0

    def hold(self) -> None:
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    def fail(self, failing: bool = True) -> None:
        self._failing = failing

    async def _confirm(self) -> None:
        self.waiting += 1
        try:
            await self._gate.wait()
        finally:
            self.waiting -= 1
        if self._failing:
            raise TransientError("test broker: publish not confirmed")

    async def publish(
        self, exchange: str, routing_key: str, body: bytes, headers: Mapping[str, str]
    ) -> None:
        await self._confirm()
        await super().publish(exchange, routing_key, body, headers)

    async def publish_many(self, exchange: str, messages: Sequence[OutMessage]) -> None:
        await self._confirm()
        await super().publish_many(exchange, messages)

    async def ingress_depth(self) -> int:
        depths = await self.queue_depths()
        return depths.get(Q_PROCESS, 0) + depths.get(Q_PROCESS_URGENT, 0)


class MemoryCursors(CursorStore):
    def __init__(self) -> None:
        self.saved: dict[str, str] = {}

    async def load(self, connector: str) -> str | None:
        return self.saved.get(connector)

    async def save(self, connector: str, cursor: str) -> None:
        self.saved[connector] = cursor


@dataclass(frozen=True)
class PushRequest:
    """One request as the channel would send it, relative to the connector's base path."""

    method: str
    path: str = ""
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


async def push_client(
    connector: PushConnector, bus: MemoryBus, cursors: CursorStore | None = None
) -> TestClient[web.Request, web.Application]:
    """An aiohttp test client with `connector` mounted as the worker mounts it."""
    app = web.Application(client_max_size=2 * 1024 * 1024)
    push.mount(app, [connector], Publisher(bus), cursors or MemoryCursors())
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(app))
    await client.start_server()
    return client


async def send(
    client: TestClient[web.Request, web.Application],
    connector: PushConnector,
    request: PushRequest,
) -> tuple[int, bytes]:
    response = await client.request(
        request.method,
        push.base_path(connector) + request.path,
        params=dict(request.query),
        headers=dict(request.headers),
        data=request.body,
    )
    return response.status, await response.read()


# --- the suite ------------------------------------------------------------------

NAME = "contract_test"


class ConnectorContract:
    """The promises every connector keeps. Subclass, set the class attributes, and
    implement `pull_connector` (pull) or `push_request` (push)."""

    connector: ClassVar[type[Connector]]
    options: ClassVar[Mapping[str, Any]]
    """A valid `[connectors.<name>]` table (without `type`)."""
    bad_check_options: ClassVar[Mapping[str, Any]]
    """Options that parse but must make `check()` fail: wrong credentials, unreachable
    endpoint, missing folder."""
    good_payloads: ClassVar[Sequence[bytes]] = ()
    """Raw inputs as the channel sends them; each parses to at least one event."""
    bad_payloads: ClassVar[Sequence[bytes]] = ()
    """Raw inputs that must give a clear error (a `BadInput` or `PermanentError`)."""
    check_timeout_secs: ClassVar[float] = 15.0

    # hooks ----------------------------------------------------------------------

    def make(self, options: Mapping[str, Any] | None = None) -> Connector:
        table = self.options if options is None else options
        parsed = parse_options(self.connector.Options, table, f"connectors.{NAME}")
        return self.connector(NAME, parsed)

    def parsed_options(self) -> Any:
        return parse_options(self.connector.Options, self.options, f"connectors.{NAME}")

    async def pull_connector(self, tmp_path: Path) -> PullConnector:
        """Pull connectors: a connector with at least one event waiting to be read."""
        raise NotImplementedError

    def push_request(self, connector: PushConnector) -> PushRequest:
        """Push connectors: one genuine request carrying at least one event."""
        raise NotImplementedError

    # declaration ----------------------------------------------------------------

    def test_declares_its_identity(self) -> None:
        cls = self.connector
        assert re.fullmatch(r"[a-z][a-z0-9_]*", cls.type), cls.type
        assert cls.description.strip(), "description must say what the connector reads"
        assert cls.mode in ("pull", "push", "both")
        assert issubclass(cls, PullConnector) == (cls.mode in ("pull", "both"))
        assert issubclass(cls, PushConnector) == (cls.mode in ("push", "both"))
        params = getattr(cls.Options, "__dataclass_params__", None)
        assert params is not None and params.frozen, "Options must be a frozen dataclass"

    def test_example_is_a_valid_configuration(self) -> None:
        example = self.connector.Options.example()
        assert isinstance(example, self.connector.Options)
        again = parse_options(self.connector.Options, options_to_table(example))
        assert again == example

    def test_options_round_trip(self) -> None:
        parsed = self.parsed_options()
        assert parse_options(self.connector.Options, options_to_table(parsed)) == parsed

    def test_unknown_key_is_rejected_by_name(self) -> None:
        table = {**self.options, "no_such_option": 1}
        with pytest.raises(ConfigError) as info:
            parse_options(self.connector.Options, table, f"connectors.{NAME}")
        assert info.value.key == f"connectors.{NAME}.no_such_option"

    def test_secrets_never_show_in_repr(self) -> None:
        parsed = self.parsed_options()
        shown = repr(parsed) + str(parsed)
        for f in dataclasses.fields(parsed):
            value = getattr(parsed, f.name)
            if isinstance(value, Secret) and value:
                assert value.reveal() not in shown, f"{f.name} shows in repr"

    # parsing ----------------------------------------------------------------------

    def _parse(self, data: bytes) -> tuple[Sequence[FeedbackEvent], Sequence[BadInput]]:
        return self.connector.parse_payload(data, self.parsed_options())

    def test_good_payloads_parse_to_events_with_deterministic_ids(self) -> None:
        assert self.good_payloads, "give at least one real-shaped payload"
        for data in self.good_payloads:
            events, bad = self._parse(data)
            again, _ = self._parse(data)
            assert events, f"no event from {data[:80]!r}: {[b.reason for b in bad]}"
            assert [e.id for e in events] == [e.id for e in again]
            assert len({e.id for e in events}) == len(events), "ids must be unique"
            for event in events:
                assert event.id and event.channel and event.text.strip()
                assert decode_event(encode_event(event)) == event

    def test_bad_payloads_give_clear_errors(self) -> None:
        assert self.bad_payloads, "give at least one malformed payload"
        for data in self.bad_payloads:
            try:
                _, bad = self._parse(data)
            except PermanentError as exc:
                assert str(exc), "a PermanentError must say what is wrong"
                continue
            assert bad, f"{data[:80]!r} was accepted"
            for item in bad:
                assert item.reason and item.kind

    @settings(
        max_examples=60,
        deadline=None,
        # Every subclass runs this inherited method: "differing executors" by design.
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.differing_executors,
        ],
    )
    @given(data=st.binary(max_size=2048))
    def test_arbitrary_bytes_never_crash_the_parser(self, data: bytes) -> None:
        try:
            _, bad = self._parse(data)
        except PermanentError:
            return
        for item in bad:
            assert item.reason

    # check ------------------------------------------------------------------------

    async def test_check_fails_cleanly_on_bad_credentials(self) -> None:
        connector = self.make(self.bad_check_options)
        try:
            with pytest.raises((ConfigError, TransientError)):
                await asyncio.wait_for(connector.check(), self.check_timeout_secs)
        finally:
            await connector.close()

    # delivery ---------------------------------------------------------------------

    async def test_nothing_is_acknowledged_before_the_broker_confirms(self, tmp_path: Path) -> None:
        if self.connector.mode in ("pull", "both"):
            await self._pull_waits_for_confirm(tmp_path)
        if self.connector.mode in ("push", "both"):
            await self._push_waits_for_confirm()

    async def _pull_waits_for_confirm(self, tmp_path: Path) -> None:
        connector = await self.pull_connector(tmp_path)
        bus, cursors = ConfirmControlBus(), MemoryCursors()
        await bus.start()
        try:
            bus.fail()
            scheduler = PullScheduler([connector], Publisher(bus), cursors)
            with pytest.raises(TransientError):
                await scheduler.poll_once(connector)
            assert cursors.saved == {}, "cursor committed although the broker refused"
            bus.fail(False)
            published = await scheduler.poll_once(connector)
            assert published >= 1
            assert await bus.ingress_depth() == published
        finally:
            await connector.close()
            await bus.close()

    async def _push_waits_for_confirm(self) -> None:
        connector = self.make()
        assert isinstance(connector, PushConnector)
        bus = ConfirmControlBus()
        await bus.start()
        client = await push_client(connector, bus)
        try:
            request = self.push_request(connector)
            bus.fail()
            status, _ = await send(client, connector, request)
            assert status >= 500, f"answered {status} although the broker refused"
            assert await bus.ingress_depth() == 0

            bus.fail(False)
            bus.hold()
            answer = asyncio.ensure_future(send(client, connector, request))
            for _ in range(200):  # wait until the request is at the broker
                if bus.waiting:
                    break
                await asyncio.sleep(0.01)
            assert bus.waiting, "the request never reached the broker"
            await asyncio.sleep(0.1)
            assert not answer.done(), "answered the sender before the broker confirmed"
            bus.release()
            status, _ = await answer
            assert 200 <= status < 300
            assert await bus.ingress_depth() >= 1
        finally:
            await client.close()
            await connector.close()
            await bus.close()
