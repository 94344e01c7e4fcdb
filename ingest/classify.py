"""The classification chain: steps named in `[classify] steps`, built through the
registry, applied in order. CPU-heavy (snownlp), so the runtime runs it in a process
pool: `ChainPool` keeps one chain per worker process and exchanges only bytes.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any, NamedTuple

from ingest import registry
from ingest.abc import Step
from ingest.codec import decode_event, encode_record, event_from_dict
from ingest.errors import ConfigError, Drop, PermanentError
from ingest.model import FeedbackEvent, FeedbackRecord
from ingest.settings import ClassifySettings


@dataclass(frozen=True, slots=True)
class ChainSpec:
    """Everything a worker process needs to build the chain (picklable)."""

    steps: tuple[str, ...]
    options: dict[str, dict[str, Any]]

    @classmethod
    def from_settings(cls, settings: ClassifySettings) -> ChainSpec:
        shared = {
            "timezone": settings.timezone,
            "customer_ref_key": settings.customer_ref_key.reveal(),
            "contact_key": settings.contact_key.reveal(),
            "holidays_file": settings.holidays_file,
        }
        options: dict[str, dict[str, Any]] = {}
        for name in settings.steps:
            own = settings.options.get(name, {})
            if not isinstance(own, dict):
                raise ConfigError(f"classify.options.{name}", "must be a table")
            options[name] = {**shared, **own}
        for name in settings.options:
            if name not in settings.steps:
                raise ConfigError(f"classify.options.{name}", "options for a step not in steps")
        return cls(tuple(settings.steps), options)


class Chain:
    def __init__(self, spec: ChainSpec) -> None:
        self.steps: list[Step] = []
        for i, name in enumerate(spec.steps):
            cls = registry.step_class(name, key=f"classify.steps[{i}]")
            self.steps.append(cls(spec.options.get(name, {})))

    def __call__(self, event: FeedbackEvent) -> FeedbackRecord:
        record = FeedbackRecord.from_event(event)
        for step in self.steps:
            record = step(record)
        return record


# Results cross the process boundary as tuples, not exceptions: custom exceptions with
# keyword arguments do not survive pickling intact.
class Outcome(NamedTuple):
    """("ok", record_bytes, routing_key, signals) | ("drop", reason, "") |
    ("error", message, kind). The routing key (`<channel>.<urgency>`) and the record's
    distinct reason signals (bounded names: `trigger`, `model`, `calendar_fallback` …,
    counted by the parent in `feedback_decisions_total`) come back with the record so
    the parent process never decodes it: its CPU belongs to the bus and the sinks."""

    status: str
    value: bytes | str
    detail: str
    signals: tuple[str, ...] = ()


_CHAIN: Chain | None = None


def _init_worker(spec: ChainSpec, log_level: str = "warning") -> None:
    global _CHAIN
    from ingest.log import configure_logging

    configure_logging(log_level)  # stderr, JSON: never mixed into `classify`'s stdout
    _CHAIN = Chain(spec)


def classify_bytes(body: bytes) -> Outcome:
    """Worker-process entry point: an ingress message body in, an outcome out."""
    assert _CHAIN is not None, "worker not initialised"
    try:
        record = _CHAIN(decode_event(body))
        signals = tuple(sorted({reason.signal for reason in record.reasons}))
        routing_key = f"{record.channel}.{record.urgency}"
        return Outcome("ok", encode_record(record), routing_key, signals)
    except Drop as drop:
        return Outcome("drop", drop.reason, "")
    except PermanentError as exc:
        return Outcome("error", str(exc), exc.kind)
    except Exception as exc:  # a step bug: reported as a failure of this input only
        return Outcome("error", f"{type(exc).__name__}: {exc}", "step_crash")


def classify_batch(bodies: Sequence[bytes]) -> list[Outcome]:
    """Worker-process entry point for the processor role: one round trip per batch."""
    return [classify_bytes(body) for body in bodies]


def classify_lines(lines: Sequence[bytes]) -> list[Outcome]:
    """Worker-process entry point for `feedback-ingest classify`: raw JSON lines."""
    import orjson

    from ingest.codec import encode_event

    out: list[Outcome] = []
    for i, line in enumerate(lines):
        try:
            doc = orjson.loads(line)
            if not isinstance(doc, dict):
                raise PermanentError("line is not a JSON object", kind="bad_schema")
            doc.setdefault("id", f"stdin-{i}")
            doc.setdefault("channel", "unknown")
            out.append(classify_bytes(encode_event(event_from_dict(doc))))
        except orjson.JSONDecodeError as exc:
            out.append(Outcome("error", f"not JSON: {exc}", "bad_json"))
        except PermanentError as exc:
            out.append(Outcome("error", str(exc), exc.kind))
    return out


def default_workers(configured: int) -> int:
    return configured if configured > 0 else max(1, os.cpu_count() or 1)


class ChainPool:
    """A process pool whose workers each hold a built chain."""

    def __init__(self, spec: ChainSpec, workers: int) -> None:
        Chain(spec)  # fail fast in the parent on a bad step name or option
        self.spec = spec
        self.workers = workers
        self._executor: Executor = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=get_context("forkserver"),
            initializer=_init_worker,
            initargs=(spec,),
        )

    async def classify(self, body: bytes) -> Outcome:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, classify_bytes, body)

    async def classify_many(self, bodies: Sequence[bytes]) -> list[Outcome]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, classify_batch, bodies)

    def map_lines(self, chunks: Iterable[Sequence[bytes]]) -> Iterator[list[Outcome]]:
        """Ordered results of chunks of input lines, a bounded number in flight."""
        executor = self._executor
        pending = []
        for chunk in chunks:
            pending.append(executor.submit(classify_lines, chunk))
            if len(pending) >= self.workers * 2:
                yield pending.pop(0).result()
        for future in pending:
            yield future.result()

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
