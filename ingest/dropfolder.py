"""Drop-folder mechanics for connectors that read files other programs write: which
files are settled (their writer is done), and moving a file out of the folder, which
is its commit, only if it is still exactly the file that was read.

Shared by every drop-folder connector (exports, call transcripts) so they agree on the
rules an operator learns once: dot-files are in progress, symbolic links are refused,
a file is read after it has not changed for `settle_secs`, `done/` and `failed/` live
inside the folder, a name already taken there gets a UTC timestamp suffix. It names no
file format.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, BinaryIO

from ingest.errors import ConfigError, TransientError

DONE = "done"
FAILED = "failed"


@dataclass(frozen=True, slots=True)
class SettledFile:
    """A settled file as listed; it is moved only if it is still exactly this file."""

    path: Path
    size: int
    mtime_ns: int
    inode: int

    def same(self, st: os.stat_result) -> bool:
        return (st.st_size, st.st_mtime_ns, st.st_ino) == (self.size, self.mtime_ns, self.inode)


def prepare(folder: Path, key: str, probe_prefix: str = ".dropfolder") -> None:
    """`check()` of a drop folder: it exists, and `done/`, `failed/` and files can be
    created in it. Raises `ConfigError` naming `key` (the option holding the path)."""
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise ConfigError(key, f"{folder} {what}")
    probe = folder / f"{probe_prefix}-probe-{uuid.uuid4().hex}"
    try:
        for sub in (DONE, FAILED):
            (folder / sub).mkdir(exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            key, f"cannot create done/, failed/ and files in {folder}: {exc.strerror}"
        ) from None


def settled_files(
    folder: Path,
    patterns: tuple[str, ...],
    settle_secs: float,
    *,
    skip: Callable[[str], bool] | None = None,
    log: Any = None,
) -> list[SettledFile]:
    """Regular files matching `patterns` (case-insensitive) not modified for
    `settle_secs`, by mtime then name. Dot-files are skipped: they are how most tools
    write before renaming; `skip(lower_case_name)` skips more (e.g. sidecars)."""
    now_ns = time.time_ns()
    settle_ns = settle_secs * 1e9
    lowered = [p.lower() for p in patterns]
    found: list[SettledFile] = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                name = entry.name.lower()
                if name.startswith(".") or not any(fnmatchcase(name, p) for p in lowered):
                    continue
                if skip is not None and skip(name):
                    continue
                try:
                    if entry.is_symlink():
                        if log is not None:
                            log.warning("dropfolder.symlink_refused", file=entry.name)
                        continue
                    if not entry.is_file(follow_symlinks=False):
                        continue
                    st = entry.stat()
                except OSError:
                    continue  # gone since the listing
                if now_ns - st.st_mtime_ns < settle_ns:
                    if log is not None:
                        log.debug("dropfolder.unsettled", file=entry.name)
                    continue
                found.append(SettledFile(Path(entry.path), st.st_size, st.st_mtime_ns, st.st_ino))
    except OSError as exc:
        raise TransientError(f"cannot list {folder}: {exc.strerror}") from None
    found.sort(key=lambda f: (f.mtime_ns, f.path.name))
    return found


def open_regular(path: Path) -> BinaryIO:
    """`path` opened for reading, refusing a symbolic link (OSError ELOOP) even one
    swapped in since the listing: whoever may write to the drop folder must not make
    the worker read, publish and dead-letter any file it can read (a private key)."""
    return os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb")


def move(folder: Path, found: SettledFile, to: str, log: Any = None) -> Path | None:
    """Move the file to `folder/to` (a timestamp suffix if the name is taken); None if
    it vanished or changed while it was read (its new content is read on a later poll).
    Raises `TransientError` when the file system refuses."""
    try:
        st = found.path.stat()
    except FileNotFoundError:
        if log is not None:
            log.warning("dropfolder.gone_before_move", file=found.path.name)
        return None
    except OSError as exc:
        raise TransientError(f"cannot stat {found.path}: {exc.strerror}") from None
    if not found.same(st):
        if log is not None:
            log.warning("dropfolder.changed_while_read", file=found.path.name)
        return None
    return move_path(folder, found.path, to, log)


def move_path(folder: Path, path: Path, to: str, log: Any = None) -> Path:
    """Move `path` to `folder/to` without the identity check (companion files such as a
    sidecar that travel with the file they describe)."""
    target_dir = folder / to
    try:
        target_dir.mkdir(exist_ok=True)
        target = free_name(target_dir, path.name)
        os.replace(path, target)
    except OSError as exc:
        raise TransientError(f"cannot move {path} to {to}/: {exc.strerror}") from None
    if log is not None:
        log.info("dropfolder.moved", file=path.name, to=str(target))
    return target


def free_name(folder: Path, name: str) -> Path:
    """`name` in `folder`, or `stem.<UTC timestamp>[-n]suffix` if a file has it already
    (the same file dropped twice keeps both copies)."""
    target = folder / name
    if not target.exists():
        return target
    path = Path(name)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    tag, n = stamp, 1
    while (target := folder / f"{path.stem}.{tag}{path.suffix}").exists():
        n += 1
        tag = f"{stamp}-{n}"
    return target
