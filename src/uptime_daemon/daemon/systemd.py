"""systemd's service-manager protocol (``Type=notify``): READY, WATCHDOG and STOPPING over ``$NOTIFY_SOCKET``.

A dozen lines of datagram socket, so no dependency. Outside systemd (no ``NOTIFY_SOCKET``) every call
is a no-op. Failures to notify are logged once and never stop the daemon.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Final

import structlog

log = structlog.get_logger(__name__)

MICROSECONDS: Final = 1_000_000


class SystemdNotifier:
    """Talks to the service manager when there is one."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]  # abstract namespace
        self._address = address or None
        self._warned = False
        pid = env.get("WATCHDOG_PID")
        usec = env.get("WATCHDOG_USEC", "")
        mine = pid is None or pid == str(os.getpid())
        self.watchdog_interval_seconds: float | None = (
            int(usec) / MICROSECONDS / 2 if usec.isdigit() and int(usec) > 0 and mine else None
        )
        """Ping at half the manager's WatchdogSec; ``None`` when no watchdog is configured."""

    @property
    def enabled(self) -> bool:
        """Whether a service manager is listening."""
        return self._address is not None

    def notify(self, message: str) -> None:
        """Send one notification (``KEY=value`` lines)."""
        if self._address is None:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(message.encode(), self._address)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("systemd_notify_failed", error=str(exc))

    def ready(self, status: str) -> None:
        """Serving and caught up."""
        self.notify(f"READY=1\nSTATUS={status}")

    def watchdog(self) -> None:
        """Still alive (sent from the event loop, so a blocked loop stops the pings)."""
        self.notify("WATCHDOG=1")

    def stopping(self) -> None:
        """Shutting down."""
        self.notify("STOPPING=1\nSTATUS=stopping")
