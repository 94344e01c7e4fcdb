"""Settings: one TOML file plus `FEEDBACK_…` environment overrides (a contract:
shared/docs/architecture.md, "Configuration").

`FEEDBACK_BROKER__URL=…` overrides `[broker] url`; `FEEDBACK_CONNECTORS__WX_MAIN__TOKEN`
overrides `[connectors.wx_main] token`. Values are read as TOML literals when they
parse as one (`8080`, `true`, `["a","b"]`), else as strings. Unknown keys and bad
values raise `ConfigError` naming the key. Connector tables are validated by the
connector's own option class when it is built (see `ingest.registry`).
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import structlog

from ingest.errors import ConfigError
from ingest.options import Secret, parse_options, suggest

ENV_PREFIX = "FEEDBACK_"
log = structlog.get_logger("ingest.settings")


@dataclass(frozen=True)
class BrokerSettings:
    url: Secret | None = None
    """Absent → embedded in-memory bus."""
    prefetch: int = 64
    delivery_limit: int = 20


@dataclass(frozen=True)
class RedisSettings:
    url: Secret | None = None
    """Absent → the feed and cursors live in the SQLite state file."""
    prefix: str = "feedback"


@dataclass(frozen=True)
class StoreSettings:
    url: Secret | None = None
    """Absent → `sqlite:///<state_dir>/feedback.db`."""


@dataclass(frozen=True)
class HttpSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    ops_port: int | None = None
    """Serve `/metrics`, `/healthz` and `/readyz` on this port (same host) and not on
    `port`: then a proxy or Ingress that routes `port` to the desk or the webhooks
    cannot expose them. None: everything on `port`."""

    def __post_init__(self) -> None:
        if self.ops_port is not None and self.ops_port == self.port != 0:
            raise ConfigError("http.ops_port", f"must differ from http.port ({self.port})")


@dataclass(frozen=True)
class ClassifySettings:
    steps: tuple[str, ...] = (
        "non_feedback",
        "normalize",
        "pii",
        "sentiment",
        "urgency",
        "churn",
        "deadline",
    )
    workers: int = 0
    """Processes for the classification chain; 0 = one per core."""
    timezone: str = "Asia/Shanghai"
    customer_ref_key: Secret = Secret("")  # noqa: RUF009 - immutable str subclass
    contact_key: Secret = Secret("")  # noqa: RUF009 - immutable str subclass
    """When set, the `pii` step stores the raw author sealed (ingest/sealed.py) in
    `meta.contact_sealed`, and the desk's audited contact endpoint can open it.
    Unset: the identifier is not kept at all, only masked."""
    holidays_file: str = ""
    """TOML of extra holidays and make-up workdays (years chinese-calendar lacks)."""
    options: dict[str, Any] = field(default_factory=dict)
    """Per-step option tables: `[classify.options.urgency] rules_file = "…"`."""


@dataclass(frozen=True)
class RuntimeSettings:
    state_dir: str = "./state"
    drain_timeout_secs: float = 20.0
    batch_size: int = 64
    """Records a sink writes per transaction."""
    concurrency: int = 32
    """Messages a processor works on at once."""
    retry_initial_secs: float = 0.5
    retry_max_secs: float = 30.0
    sweep_interval_secs: float = 15.0
    """How often the SLA sweeper returns expired leases and marks breaches (sinks, desk)."""


@dataclass(frozen=True)
class DeskSettings:
    """The complaint desk (role `desk`): API, live stream and page on the `[http]` server."""

    tokens: tuple[dict[str, Any], ...] = ()
    """`[[desk.tokens]]` tables: `name`, `role` (viewer / agent / supervisor) and `sha256`,
    the hex SHA-256 of the bearer token (never the token itself); see `desk token`."""
    lease_secs: int = 900
    """How long a claim holds an item before it returns to the feed (renew to keep it)."""
    feed_limit_max: int = 200
    sse_heartbeat_secs: float = 15.0
    """A comment line this often keeps idle live streams open through proxies."""
    stats_days_max: int = 92


@dataclass(frozen=True)
class LogSettings:
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console"] = "json"


@dataclass(frozen=True)
class Settings:
    broker: BrokerSettings = field(default_factory=BrokerSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    classify: ClassifySettings = field(default_factory=ClassifySettings)
    runtime: RuntimeSettings = field(default_factory=RuntimeSettings)
    log: LogSettings = field(default_factory=LogSettings)
    desk: DeskSettings = field(default_factory=DeskSettings)
    connectors: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: str = ""
    """The file these settings came from ('' = defaults only)."""

    @property
    def embedded(self) -> bool:
        return self.broker.url is None

    @property
    def store_url(self) -> str:
        if self.store.url:
            return self.store.url.reveal()
        return f"sqlite:///{Path(self.runtime.state_dir).resolve() / 'feedback.db'}"

    @property
    def state_path(self) -> Path:
        return Path(self.runtime.state_dir)


_SECTIONS: dict[str, type[Any]] = {
    "broker": BrokerSettings,
    "redis": RedisSettings,
    "store": StoreSettings,
    "http": HttpSettings,
    "classify": ClassifySettings,
    "runtime": RuntimeSettings,
    "log": LogSettings,
    "desk": DeskSettings,
}


def _env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def apply_env(doc: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """Overlay `FEEDBACK_A__B__C=value` onto the TOML document (paths lower-cased)."""
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue  # FEEDBACK_CONFIG and friends are not settings paths
        path = name[len(ENV_PREFIX) :].lower().split("__")
        node = doc
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(".".join(path), f"environment variable {name} overrides a value")
            node = child
        node[path[-1]] = _env_value(raw)
    return doc


def _warn_if_readable_by_others(path: Path) -> None:
    mode = path.stat().st_mode
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        log.warning(
            "config_readable_by_others",
            path=str(path),
            mode=oct(mode & 0o777),
            hint="config files may hold secrets: chmod 600",
        )


def load_settings(
    path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read `path` (or $FEEDBACK_CONFIG, or nothing: embedded defaults) plus the environment."""
    environ = os.environ if environ is None else environ
    path = path or environ.get("FEEDBACK_CONFIG") or None
    doc: dict[str, Any] = {}
    if path is not None:
        file = Path(path)
        try:
            doc = tomllib.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError("--config", f"no such file: {file}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("--config", f"{file} is not valid TOML: {exc}") from None
        _warn_if_readable_by_others(file)
    doc = apply_env(doc, environ)
    return settings_from_dict(doc, source=str(path or ""))


def settings_from_dict(doc: Mapping[str, Any], *, source: str = "") -> Settings:
    known = [*_SECTIONS, "connectors"]
    for key in doc:
        if key not in known:
            raise ConfigError(key, "unknown section" + suggest(key, known))
    sections: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        table = doc.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(name, "must be a table")
        sections[name] = parse_options(cls, table, name)
    connectors = doc.get("connectors", {})
    if not isinstance(connectors, dict):
        raise ConfigError("connectors", "must be a table of connector tables")
    for name, table in connectors.items():
        if not isinstance(table, dict):
            raise ConfigError(f"connectors.{name}", "must be a table")
        if not isinstance(table.get("type"), str):
            raise ConfigError(f"connectors.{name}.type", "is required (the connector's type)")
    return Settings(
        **sections, connectors={k: dict(v) for k, v in connectors.items()}, source=source
    )
