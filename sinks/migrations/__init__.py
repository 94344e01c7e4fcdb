"""Versioned schema migrations of SqlStore, as SQL files (a package so they ship in the wheel)."""

from __future__ import annotations

import dataclasses
from importlib import resources


@dataclasses.dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(dialect: str) -> list[Migration]:
    """Every version in order, each in its `dialect` variant when it has one."""
    generic: dict[int, tuple[str, str]] = {}
    specific: dict[int, tuple[str, str]] = {}
    variants: dict[int, set[str]] = {}
    for entry in resources.files("sinks").joinpath("migrations").iterdir():
        if not entry.name.endswith(".sql"):
            continue
        stem, _, variant = entry.name.removesuffix(".sql").partition(".")
        number, _, _ = stem.partition("_")
        if not number.isdigit():
            raise ValueError(f"migration {entry.name!r} does not start with a version number")
        version = int(number)
        variants.setdefault(version, set()).add(variant)
        target = generic if not variant else specific if variant == dialect else None
        if target is not None:
            if version in target:
                raise ValueError(f"two migrations for version {version} ({dialect})")
            target[version] = (stem, entry.read_text(encoding="utf-8"))
    migrations = []
    for version in sorted(variants):
        chosen = specific.get(version) or generic.get(version)
        if chosen is None:
            raise ValueError(f"migration {version} has no {dialect!r} or generic variant")
        migrations.append(Migration(version, *chosen))
    return migrations
