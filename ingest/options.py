"""Typed, frozen option classes for components (connectors, steps, sinks).

A component declares its options as a frozen dataclass; `parse_options` builds it
from the TOML table, rejecting unknown keys (with "did you mean"), wrong types and
missing required keys with a `ConfigError` that names the full key. `Secret`
values never show in repr or logs.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from ingest.errors import ConfigError

T = TypeVar("T")


class Secret(str):
    """A string that never shows itself in repr, str() formatting of containers or logs.
    Use `.reveal()` where the value is really needed."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Secret('***')" if self else "Secret('')"

    def reveal(self) -> str:
        return str.__str__(self)


def suggest(name: str, choices: typing.Iterable[str]) -> str:
    """' (did you mean "x"?)' or ''."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


def _coerce(key: str, value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(key, value, arg)
            except ConfigError as exc:
                errors.append(exc.reason)
        raise ConfigError(key, " or ".join(errors))
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(key, f"must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise ConfigError(key, f"must be a list, got {type(value).__name__}")
        item = args[0] if args else Any
        return tuple(_coerce(f"{key}[{i}]", v, item) for i, v in enumerate(value))
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        if not isinstance(value, dict):
            raise ConfigError(key, f"must be a table, got {type(value).__name__}")
        return dict(value)
    if hint is Any:
        return value
    if hint is Secret:
        if not isinstance(value, str):
            raise ConfigError(key, "must be a string")
        return Secret(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(key, f"must be a number, got {type(value).__name__}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"must be an integer, got {type(value).__name__}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"must be true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"must be a string, got {type(value).__name__}")
        return value
    raise ConfigError(key, f"unsupported option type {hint!r}")


def parse_options(cls: type[T], table: Mapping[str, Any], prefix: str = "") -> T:
    """Build the frozen dataclass `cls` from `table`; errors name `prefix.key`."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    where = f"{prefix}." if prefix else ""
    for key in table:
        if key not in fields:
            raise ConfigError(f"{where}{key}", "unknown key" + suggest(key, fields))
    values: dict[str, Any] = {}
    for name, f in fields.items():
        if name in table:
            values[name] = _coerce(f"{where}{name}", table[name], hints[name])
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}{name}", "is required")
    try:
        return cls(**values)
    except (ValueError, TypeError) as exc:
        raise ConfigError(prefix or cls.__name__, str(exc)) from None


def options_to_table(options: Any) -> dict[str, Any]:
    """The inverse of `parse_options` (secrets revealed: for config round trips only)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(options):
        value = getattr(options, f.name)
        if isinstance(value, Secret):
            value = value.reveal()
        elif isinstance(value, tuple):
            value = list(value)
        if value is not None:
            out[f.name] = value
    return out
