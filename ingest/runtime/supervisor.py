"""The supervisor: starts any combination of roles in one process under one task
group, and stops them in order on SIGTERM/SIGINT: intake first, then processing
drains (up to `drain_timeout_secs`), then the sinks; whatever is still unacked
returns to its queue."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from ingest import registry, telemetry
from ingest.abc import Connector, Feed, PullConnector, PushConnector, Store
from ingest.bus.base import Q_PROCESS, Q_PROCESS_URGENT, Q_SINK_FEED, Q_SINK_STORE, Bus
from ingest.classify import ChainPool, ChainSpec, default_workers
from ingest.errors import ConfigError
from ingest.log import get_logger
from ingest.runtime import components, push, sdnotify
from ingest.runtime.backoff import Backoff
from ingest.runtime.http import HttpServer, Probe, build_app
from ingest.runtime.processor import ProcessorWorker
from ingest.runtime.publish import Publisher
from ingest.runtime.pull import BatchObserver, PullScheduler
from ingest.runtime.sink_worker import SinkWorker
from ingest.runtime.stage import InFlight
from ingest.runtime.sweeper import sweeper_for
from ingest.settings import Settings

log = get_logger("ingest.supervisor")
ROLES = ("connectors", "processors", "sinks", "desk")


@dataclass
class RunStats:
    published: int = 0
    roles: tuple[str, ...] = ()
    errors: list[str] = field(default_factory=list)


class Worker:
    """One process running `roles`; `once` = one pull pass, drain, exit;
    `from_scratch` = that first pass of every pull connector ignores its stored cursor
    (`backfill --from-scratch`, see `ingest.runtime.pull`)."""

    def __init__(
        self,
        settings: Settings,
        roles: Sequence[str] = ROLES,
        *,
        once: bool = False,
        http: bool | None = None,
        bus: Bus | None = None,
        observer: BatchObserver | None = None,
        from_scratch: bool = False,
    ) -> None:
        """`observer` sees every committed batch of the pull connectors (progress)."""
        unknown = [r for r in roles if r not in ROLES]
        if unknown:
            raise ConfigError("--roles", f"unknown role {unknown[0]!r}; roles are {ROLES}")
        self.settings = settings
        self.roles = tuple(roles)
        self.once = once
        self.serve_http = (not once) if http is None else http
        self.bus = bus or components.make_bus(settings)
        self.connectors: list[Connector] = (
            components.make_connectors(settings) if "connectors" in roles else []
        )
        self.feed: Feed | None = None
        self.store: Store | None = None
        self.pool: ChainPool | None = None
        self.processor: ProcessorWorker | None = None
        self.sinks: list[SinkWorker] = []
        self.scheduler: PullScheduler | None = None
        self.push: list[PushConnector] = []
        self.intakes: list[push.WebhookIntake] = []
        self.http: HttpServer | None = None
        self.ops_http: HttpServer | None = None
        """The operator endpoints' own server when `[http] ops_port` is set."""
        self.stats = RunStats(roles=self.roles)
        self.observer = observer
        self.from_scratch = from_scratch
        self._stop = asyncio.Event()

    @property
    def stop_requested(self) -> bool:
        """SIGTERM/SIGINT (or `request_stop`) arrived: a `--once` pass ended early."""
        return self._stop.is_set()

    def request_stop(self) -> None:
        """Stop intake now; the rest drains in `run`."""
        sdnotify.stopping()
        log.info("stop_requested")
        self._stop.set()
        for intake in self.intakes:  # webhooks now answer 503: the sender retries elsewhere
            intake.close()
        if self.scheduler is not None:
            self.scheduler.stop()

    async def run(self) -> RunStats:
        backoff = Backoff(
            self.settings.runtime.retry_initial_secs, self.settings.runtime.retry_max_secs
        )
        async with contextlib.AsyncExitStack() as stack:
            await self.bus.start()
            stack.push_async_callback(self.bus.close)
            if "sinks" in self.roles or "desk" in self.roles:
                self.feed = components.make_feed(self.settings)
                self.store = components.make_store(self.settings)
                for sink in (self.feed, self.store):
                    await sink.start()
                    stack.push_async_callback(sink.close)
            if "processors" in self.roles:
                spec = ChainSpec.from_settings(self.settings.classify)
                self.pool = ChainPool(spec, default_workers(self.settings.classify.workers))
                stack.callback(self.pool.close)
                self.processor = ProcessorWorker(
                    self.bus,
                    self.pool,
                    prefetch=self.settings.broker.prefetch,
                    concurrency=self.settings.runtime.concurrency,
                )
            if "sinks" in self.roles:
                assert self.feed is not None and self.store is not None
                size = self.settings.runtime.batch_size
                self.sinks = [
                    SinkWorker(self.bus, Q_SINK_FEED, self.feed, batch_size=size, backoff=backoff),
                    SinkWorker(
                        self.bus,
                        Q_SINK_STORE,
                        self.store,
                        batch_size=size,
                        backoff=Backoff(backoff.initial_secs, backoff.max_secs),
                    ),
                ]
            if self.connectors:
                cursors = components.make_cursors(self.settings)
                stack.push_async_callback(cursors.close)
                publisher = Publisher(self.bus, registry.triage())
                pull = [c for c in self.connectors if isinstance(c, PullConnector)]
                if pull:
                    self.scheduler = PullScheduler(
                        pull,
                        publisher,
                        cursors,
                        backoff,
                        observer=self.observer,
                        from_scratch=self.from_scratch,
                    )
                self.push = [c for c in self.connectors if isinstance(c, PushConnector)]
                if self.push and not self.serve_http:
                    log.warning("push_connectors_idle", reason="no web server in --once mode")
            for connector in self.connectors:
                stack.push_async_callback(connector.close)
            if self.serve_http:
                http = self.settings.http
                app = build_app(None if http.ops_port is not None else self._probes())
                if self.push:
                    self.intakes = push.mount(app, self.push, publisher, cursors)
                if "desk" in self.roles:
                    from ingest import desk

                    assert self.feed is not None and self.store is not None
                    desk.mount(app, self.feed, self.store, self.settings)
                if http.ops_port is not None:
                    self.ops_http = HttpServer(build_app(self._probes()), http.host, http.ops_port)
                    await self.ops_http.start()
                    stack.push_async_callback(self.ops_http.close)
                self.http = HttpServer(app, http.host, http.port)
                await self.http.start()
                stack.push_async_callback(self.http.close)
            with self._signals():
                await self._run_roles()
        return self.stats

    async def _run_roles(self) -> None:
        consumers: list[asyncio.Task[None]] = []
        if self.processor is not None:
            consumers.append(asyncio.create_task(self.processor.run(), name="processor"))
        consumers += [asyncio.create_task(s.run(), name=s.stage) for s in self.sinks]
        gauges = asyncio.create_task(self._report_depths(), name="depths")
        background = [gauges]
        try:
            if self.once:
                if self.scheduler is not None:
                    self.stats.published = await self.scheduler.run_once()
                await self._drain_once()
            else:
                intake = (
                    asyncio.create_task(self.scheduler.run(), name="pull")
                    if self.scheduler is not None
                    else None
                )
                background += [
                    asyncio.create_task(push.run_background(c), name=f"push:{c.name}")
                    for c in self.push
                ]
                sweeper = sweeper_for(self.feed, self.settings.runtime.sweep_interval_secs)
                if sweeper is not None:  # sinks or desk role: leases and SLA breaches
                    background.append(asyncio.create_task(sweeper.run(), name="sweeper"))
                sdnotify.ready()  # systemd Type=notify: every role is up
                interval = sdnotify.watchdog_interval_secs()
                if interval is not None:
                    watchdog = self._watchdog(interval, consumers)
                    background.append(asyncio.create_task(watchdog, name="watchdog"))
                waiters = {asyncio.ensure_future(self._stop.wait()), *consumers}
                if intake is not None:
                    waiters.add(intake)
                done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task in consumers and task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
                if intake is not None:
                    self.request_stop()
                    await intake
                if not self.bus.durable:  # in-memory: queued work would be lost at exit
                    await self._drain_within_timeout()
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await self._stop_consumers(consumers)

    async def _watchdog(self, interval_secs: float, consumers: list[asyncio.Task[None]]) -> None:
        """Ping systemd's watchdog while every consumer runs; a dead one stops the pings,
        so systemd restarts a worker that is up but no longer working."""
        while not any(task.done() for task in consumers):
            sdnotify.watchdog()
            await asyncio.sleep(interval_secs)

    async def _stop_consumers(self, consumers: list[asyncio.Task[None]]) -> None:
        timeout = self.settings.runtime.drain_timeout_secs
        order: list[tuple[list[asyncio.Task[None]], list[ProcessorWorker | SinkWorker]]] = [
            (
                [t for t in consumers if t.get_name() == "processor"],
                [self.processor] if self.processor else [],
            ),
            ([t for t in consumers if t.get_name() != "processor"], list(self.sinks)),
        ]
        for tasks, workers in order:
            for w in workers:
                w.stop()
            if not tasks:
                continue
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:  # past the drain timeout: unacked messages go back
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def _in_flight(self) -> list[InFlight]:
        counters = [s.in_flight for s in self.sinks]
        if self.processor is not None:
            counters.append(self.processor.in_flight)
        return counters

    async def _drain_within_timeout(self) -> None:
        try:
            await asyncio.wait_for(
                self._drained(stop_early=False), self.settings.runtime.drain_timeout_secs
            )
        except TimeoutError:
            log.error("drain_timeout", hint="in-memory work still queued is lost")

    async def _drain_once(self) -> None:
        """The end of a `--once` pass: wait until everything read was processed. A stop
        request cuts the wait short on a broker (the rest stays in its queues), but the
        in-memory bus dies with the process while the cursors of what it holds are
        already committed: it is still drained, within `drain_timeout_secs` of the stop."""
        if self.bus.durable:
            await self._drained()
            return
        drained = asyncio.ensure_future(self._drained(stop_early=False))
        stopped = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({drained, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not drained.done():
                await asyncio.wait({drained}, timeout=self.settings.runtime.drain_timeout_secs)
            if not drained.done():
                log.error("drain_timeout", hint="in-memory work still queued is lost")
        finally:
            for task in (drained, stopped):
                task.cancel()
            await asyncio.gather(drained, stopped, return_exceptions=True)

    async def _drained(self, *, stop_early: bool = True) -> None:
        """Wait until every queue this process consumes is empty and nothing is in flight."""
        queues = []
        if self.processor is not None:
            queues += [Q_PROCESS_URGENT, Q_PROCESS]
        if self.sinks:
            queues += [Q_SINK_FEED, Q_SINK_STORE]
        if not queues:
            return
        quiet = 0
        while quiet < 3 and not (stop_early and self._stop.is_set()):
            depths = await self.bus.queue_depths()
            busy = any(depths.get(q, 0) for q in queues) or any(c.count for c in self._in_flight())
            quiet = 0 if busy else quiet + 1
            await asyncio.sleep(0.05)

    async def _report_depths(self) -> None:
        while True:
            try:
                for queue, depth in (await self.bus.queue_depths()).items():
                    telemetry.QUEUE_DEPTH.labels(queue).set(depth)
                if self.feed is not None:
                    for level, size in (await self.feed.size()).items():
                        telemetry.FEED_SIZE.labels(level).set(size)
            except Exception as exc:  # a gauge must never stop the worker
                log.debug("depth_report_failed", error=str(exc))
            await asyncio.sleep(5)

    def _probes(self) -> dict[str, Probe]:
        probes: dict[str, Probe] = {"bus": self.bus.ping}
        if self.feed is not None:
            probes["feed"] = self.feed.ping
        if self.store is not None:
            probes["store"] = self.store.ping
        return probes

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        installed = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self.request_stop)
                installed.append(sig)
            except (NotImplementedError, RuntimeError):  # not the main thread
                pass
        try:
            yield
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
