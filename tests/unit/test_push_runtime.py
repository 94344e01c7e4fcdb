"""The runtime side of push connectors (ingest/runtime/push.py): where routes are
mounted, and how every way a handler can end is answered and counted."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY

from ingest.abc import PushConnector, Route
from ingest.errors import Rejected, TransientError
from ingest.model import FeedbackEvent, stable_id
from ingest.runtime import push
from ingest.runtime.backoff import Backoff
from ingest.runtime.publish import Publisher
from ingest.testing import ConfirmControlBus, MemoryCursors, PushRequest, push_client, send


@dataclass(frozen=True)
class EchoOptions:
    @classmethod
    def example(cls) -> EchoOptions:
        return cls()


class EchoConnector(PushConnector):
    """Publishes the body as one event; `/forged`, `/crash`, `/down` misbehave."""

    type: ClassVar[str] = "echo"
    description: ClassVar[str] = "test connector"
    Options: ClassVar[type[Any]] = EchoOptions
    runs = 0

    def routes(self) -> Sequence[Route]:
        return [
            Route("POST", self.receive),
            Route("GET", self.forged, "/forged"),
            Route("GET", self.crash, "/crash"),
            Route("GET", self.down, "/down"),
        ]

    async def check(self) -> None:
        pass

    async def receive(self, request: web.Request) -> web.Response:
        text = (await request.read()).decode()
        await self.intake.publish(
            [FeedbackEvent(id=stable_id("echo", text), channel="t", text=text)]
        )
        return web.Response(text="success")

    async def forged(self, _: web.Request) -> web.Response:
        raise Rejected(403, "forged", "bad signature")

    async def crash(self, _: web.Request) -> web.Response:
        raise ValueError("bug")

    async def down(self, _: web.Request) -> web.Response:
        raise TransientError("channel API down")

    async def run(self) -> None:
        self.runs += 1
        if self.runs < 3:
            raise TransientError("not yet")


def requests(outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "feedback_webhook_requests_total", {"connector": "hook", "outcome": outcome}
    )
    return value or 0.0


async def test_routes_are_mounted_under_webhooks_type_name_and_publish_after_confirm() -> None:
    bus = ConfirmControlBus()
    await bus.start()
    connector = EchoConnector("hook", EchoOptions())
    client = await push_client(connector, bus)
    try:
        assert push.base_path(connector) == "/webhooks/echo/hook"
        before = requests("ok")
        status, body = await send(client, connector, PushRequest("POST", body="投诉".encode()))
        assert (status, body) == (200, b"success")
        assert await bus.ingress_depth() == 1
        assert requests("ok") == before + 1
        status, _ = await send(client, connector, PushRequest("POST", "/nope"))
        assert status == 404
    finally:
        await client.close()
        await bus.close()


async def test_every_failure_gets_its_answer_and_nothing_reaches_the_bus() -> None:
    bus = ConfirmControlBus()
    await bus.start()
    connector = EchoConnector("hook", EchoOptions())
    client = await push_client(connector, bus)
    try:
        forged, crashed, down = requests("forged"), requests("error"), requests("unavailable")
        assert (await send(client, connector, PushRequest("GET", "/forged")))[0] == 403
        assert (await send(client, connector, PushRequest("GET", "/crash")))[0] == 500
        assert (await send(client, connector, PushRequest("GET", "/down")))[0] == 503
        assert requests("forged") == forged + 1
        assert requests("error") == crashed + 1
        assert requests("unavailable") == down + 1
        big = PushRequest("POST", body=b"x" * (3 * 1024 * 1024))
        assert (await send(client, connector, big))[0] == 413
        assert await bus.ingress_depth() == 0
    finally:
        await client.close()
        await bus.close()


async def test_a_closed_intake_answers_503_so_the_sender_retries_after_shutdown() -> None:
    bus = ConfirmControlBus()
    await bus.start()
    connector = EchoConnector("hook", EchoOptions())
    app = web.Application()
    intakes = push.mount(app, [connector], Publisher(bus), MemoryCursors())
    intakes[0].close()
    async with TestClient(TestServer(app)) as client:
        response = await client.post("/webhooks/echo/hook", data=b"late")
        assert response.status == 503
    assert await bus.ingress_depth() == 0
    await bus.close()


async def test_push_cursors_are_kept_per_connector_and_key() -> None:
    bus, cursors = ConfirmControlBus(), MemoryCursors()
    connector = EchoConnector("hook", EchoOptions())
    push.mount(web.Application(), [connector], Publisher(bus), cursors)
    await connector.intake.save_cursor("kf_1", "C1")
    assert cursors.saved == {"hook:kf_1": "C1"}
    assert await connector.intake.load_cursor("kf_1") == "C1"
    assert await connector.intake.load_cursor("kf_2") is None


async def test_background_work_is_restarted_after_failures() -> None:
    connector = EchoConnector("hook", EchoOptions())
    await asyncio.wait_for(push.run_background(connector, Backoff(0.001, 0.01)), 5)
    assert connector.runs == 3
