"""The aiohttp server of a worker: webhooks of push connectors, the desk, and the
operator endpoints `/metrics`, `/healthz` (alive) and `/readyz` (every dependency
reachable), which go to a second server when `[http] ops_port` is set."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

from ingest import telemetry
from ingest.log import get_logger

log = get_logger("ingest.http")
Probe = Callable[[], Awaitable[None]]


def build_app(probes: dict[str, Probe] | None) -> web.Application:
    """The application; with the operator endpoints unless `probes` is None (they are
    served by `build_app(probes)` on the ops port instead)."""
    app = web.Application(client_max_size=2 * 1024 * 1024)
    if probes is None:
        return app

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        results: dict[str, str] = {}

        async def run(name: str, probe: Probe) -> None:
            try:
                await asyncio.wait_for(probe(), 3)
                results[name] = "ok"
            except Exception as exc:
                results[name] = f"down: {type(exc).__name__}: {str(exc)[:200]}"

        await asyncio.gather(*(run(n, p) for n, p in probes.items()))
        ready = all(v == "ok" for v in results.values())
        return web.json_response({"ready": ready, "checks": results}, status=200 if ready else 503)

    async def metrics(_: web.Request) -> web.Response:
        body, content_type = telemetry.render()
        return web.Response(body=body, headers={"Content-Type": content_type})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


class HttpServer:
    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self._runner.addresses:  # port 0 → the one the OS chose
            self.port = int(self._runner.addresses[0][1])
        log.info("http_listening", host=self.host, port=self.port)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
