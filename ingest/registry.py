"""Where names in the configuration become classes: `"module:Attr"` strings imported
lazily (so `ingest` imports no connector, step or sink until one is configured),
plus the entry-point group `feedback_ingest.connectors` for plugins outside the tree.
A typo gets "did you mean …?".
"""

from __future__ import annotations

import importlib
from functools import cache
from importlib.metadata import entry_points
from typing import Any

from ingest.errors import ConfigError
from ingest.options import suggest

ENTRY_POINT_GROUP = "feedback_ingest.connectors"

CONNECTORS: dict[str, str] = {
    "file_drop": "connectors.file_drop.connector:FileDropConnector",
    "transcripts": "connectors.transcripts.connector:TranscriptsConnector",
    "wechat": "connectors.wechat.connector:WechatConnector",
    "wecom": "connectors.wechat.connector:WecomConnector",
    "imap": "connectors.imap.connector:ImapConnector",
    "app_store": "connectors.app_reviews.apple:AppStoreConnector",
    "google_play": "connectors.app_reviews.google:GooglePlayConnector",
    "huawei_appgallery": "connectors.app_reviews.huawei:HuaweiAppGalleryConnector",
}

STEP_TABLE = "processors.chain:STEPS"
"""The processors package owns its table of step names → "module:Class"."""
TRIAGE = "processors.triage:lane"

SINKS: dict[str, str] = {
    "redis_feed": "sinks.redis_feed:RedisFeed",
    "sqlite_feed": "sinks.sqlite_feed:SqliteFeed",
    "sql_store": "sinks.sql_store:SqlStore",
    "redis_cursors": "sinks.cursor_store:RedisCursorStore",
    "sqlite_cursors": "sinks.cursor_store:SqliteCursorStore",
}


def import_string(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ImportError(f"{module_name} has no attribute {attr!r}") from None


@cache
def plugin_connectors() -> dict[str, str]:
    """Connectors installed with pip that declare the entry-point group."""
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def connector_types() -> dict[str, str]:
    """Every known connector type → where it lives (built-ins win over plugins)."""
    return {**plugin_connectors(), **CONNECTORS}


def _resolve(kind: str, key: str, name: str, table: dict[str, str]) -> Any:
    if name not in table:
        raise ConfigError(key, f"unknown {kind} {name!r}" + suggest(name, table))
    try:
        return import_string(table[name])
    except ImportError as exc:
        raise ConfigError(key, f"{kind} {name!r} cannot be imported: {exc}") from None


def connector_class(type_name: str, key: str = "type") -> Any:
    return _resolve("connector", key, type_name, connector_types())


def step_table() -> dict[str, str]:
    table: dict[str, str] = import_string(STEP_TABLE)
    return table


def step_class(name: str, key: str = "classify.steps") -> Any:
    return _resolve("processor step", key, name, step_table())


def sink_class(name: str) -> Any:
    return _resolve("sink", name, name, SINKS)


def triage() -> Any:
    """The edge-triage function `lane(text) -> "urgent" | "normal"`."""
    return import_string(TRIAGE)
