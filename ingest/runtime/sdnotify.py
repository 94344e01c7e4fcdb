"""systemd's notify protocol (sd_notify(3)) without a dependency: one datagram per
state change to the socket named by $NOTIFY_SOCKET. Outside systemd (no variable) every
call is a no-op, so the worker calls these unconditionally.

    ready()     once every role is up (Type=notify: the unit counts as started)
    watchdog()  every `watchdog_interval_secs()` while healthy (WatchdogSec=)
    stopping()  as soon as SIGTERM is handled, before the drain
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


def notify(state: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send `state` (e.g. "READY=1"); True when a notify socket took it."""
    address = (os.environ if environ is None else environ).get("NOTIFY_SOCKET", "")
    if not address or address[0] not in "/@":
        return False
    if address[0] == "@":  # abstract namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(state.encode(), address)
    except OSError:
        return False  # notification is best effort; systemd acts on its absence
    return True


def ready() -> bool:
    return notify("READY=1")


def stopping() -> bool:
    return notify("STOPPING=1")


def watchdog() -> bool:
    return notify("WATCHDOG=1")


def watchdog_interval_secs(
    environ: Mapping[str, str] | None = None,
) -> float | None:
    """Half of WatchdogSec= (as sd_watchdog_enabled(3) advises), None when it is off or
    meant for another process."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2_000_000
