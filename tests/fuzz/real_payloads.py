"""The real-shaped payloads every connector's contract class already declares, found
by importing the unit test modules (so a new connector's payloads join the fuzzing
without anyone listing them here)."""

from __future__ import annotations

import importlib
from functools import cache
from pathlib import Path

from ingest.testing import ConnectorContract

UNIT = Path(__file__).parents[1] / "unit"


def _subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out += [sub, *_subclasses(sub)]
    return out


@cache
def _by_type() -> dict[str, list[bytes]]:
    for path in sorted(UNIT.glob("test_*.py")):
        importlib.import_module(f"tests.unit.{path.stem}")
    found: dict[str, list[bytes]] = {}
    for contract in _subclasses(ConnectorContract):
        connector = getattr(contract, "connector", None)
        if connector is not None:
            found.setdefault(connector.type, []).extend(contract.good_payloads)
    return found


def real_payloads(connector_type: str) -> list[bytes]:
    return _by_type().get(connector_type, [])
