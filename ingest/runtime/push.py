"""Mounting push connectors on the shared web server.

Each connector's routes go under `/webhooks/<type>/<name>`. The runtime binds an
`Intake` (publish with confirms, cursors, rejection counting) and wraps every handler
so that no request can take the worker down: `Rejected` (forged, stale, malformed)
is answered with its status and counted by kind; a `TransientError` (broker or a
channel API down) becomes 503, so the sender retries later; anything else is logged
and answered 500. In none of these cases was anything acknowledged to the sender.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import structlog
from aiohttp import web

from ingest import telemetry
from ingest.abc import BadInput, CursorStore, PushConnector, Route, WebHandler
from ingest.errors import Rejected, TransientError
from ingest.log import get_logger
from ingest.model import FeedbackEvent
from ingest.runtime.backoff import Backoff
from ingest.runtime.publish import Publisher

log = get_logger("ingest.push")
WEBHOOK_PREFIX = "/webhooks"


def base_path(connector: PushConnector) -> str:
    return f"{WEBHOOK_PREFIX}/{connector.type}/{connector.name}"


class WebhookIntake:
    """The `Intake` of one push connector."""

    def __init__(
        self,
        connector: str,
        publisher: Publisher,
        cursors: CursorStore | None,
        channel: str = "",
    ) -> None:
        self.connector = connector
        self.channel = channel
        """Label of this connector's dead letters (`Connector.input_channel`)."""
        self.publisher = publisher
        self.cursors = cursors
        self.closed = False

    def close(self) -> None:
        """Shutting down: refuse new input (503) so nothing is accepted after the drain."""
        self.closed = True

    async def publish(self, events: Sequence[FeedbackEvent], bad: Sequence[BadInput] = ()) -> None:
        if self.closed:
            raise TransientError(f"{self.connector}: shutting down")
        await self.publisher.publish(self.connector, events, bad, self.channel)
        for event in events:
            telemetry.RECEIVED.labels(event.channel, self.connector).inc()

    async def load_cursor(self, key: str) -> str | None:
        return None if self.cursors is None else await self.cursors.load(self._key(key))

    async def save_cursor(self, key: str, cursor: str) -> None:
        if self.cursors is None:
            raise TransientError(f"{self.connector}: no cursor store configured")
        await self.cursors.save(self._key(key), cursor)

    def _key(self, key: str) -> str:
        return f"{self.connector}:{key}" if key else self.connector


def guarded(connector: PushConnector, handler: WebHandler) -> WebHandler:
    """Wrap a connector's handler: bound log context, metrics, no escaping errors."""

    async def handle(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        with structlog.contextvars.bound_contextvars(connector=connector.name, stage="webhook"):
            try:
                response = await handler(request)
                outcome = "ok" if response.status < 400 else str(response.status)
            except web.HTTPException as exc:  # aiohttp's own answers: 413 too large, ...
                outcome = str(exc.status)
                if exc.status == 413:
                    log.warning("webhook_too_large", path=request.path)
                telemetry.WEBHOOK_REQUESTS.labels(connector.name, outcome).inc()
                raise
            except Rejected as exc:
                outcome = exc.kind
                log.warning("webhook_rejected", kind=exc.kind, reason=exc.message)
                response = web.Response(status=exc.status, text=exc.message)
            except TransientError as exc:
                outcome = "unavailable"
                log.warning("webhook_unavailable", error=str(exc))
                response = web.Response(status=503, text="temporarily unavailable")
            except asyncio.CancelledError:
                raise
            except Exception:
                outcome = "error"
                log.exception("webhook_crashed", path=request.path)
                response = web.Response(status=500, text="internal error")
            finally:
                telemetry.WEBHOOK_LATENCY.labels(connector.name).observe(
                    time.perf_counter() - started
                )
            telemetry.WEBHOOK_REQUESTS.labels(connector.name, outcome).inc()
            return response

    return handle


def mount(
    app: web.Application,
    connectors: Sequence[PushConnector],
    publisher: Publisher,
    cursors: CursorStore | None,
) -> list[WebhookIntake]:
    """Bind each connector to its intake and add its routes."""
    mounted = []
    intakes = []
    for connector in connectors:
        intake = WebhookIntake(connector.name, publisher, cursors, connector.input_channel)
        intakes.append(intake)
        connector.bind(intake)
        routes: Sequence[Route] = connector.routes()
        for route in routes:
            path = base_path(connector) + route.path
            app.router.add_route(route.method, path, guarded(connector, route.handler))
            mounted.append(f"{route.method} {path}")
    if mounted:
        log.info("webhooks_mounted", routes=mounted)
    return intakes


async def run_background(connector: PushConnector, backoff: Backoff | None = None) -> None:
    """A push connector's `run()`, restarted with backoff if it fails, until cancelled."""
    backoff = backoff or Backoff()
    with structlog.contextvars.bound_contextvars(connector=connector.name, stage="push"):
        while True:
            try:
                await connector.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # background work must not take the worker down
                kind = "transient" if isinstance(exc, TransientError) else type(exc).__name__
                telemetry.FAILED.labels(connector.name, "push", kind).inc()
                delay = backoff.next_delay_secs()
                log.warning("push_background_failed", error=str(exc), retry_in_secs=delay)
                await asyncio.sleep(delay)
