"""The settings in force, replaced whole by a successful reload (SIGHUP).

Readers take ``live.current`` once per request or check and use that frozen ``Settings``; a reload
swaps the reference, so nobody ever sees half a configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from uptime_daemon.config.model import Settings


class Reloadable(Protocol):
    """The one reload interface: every component that holds settings adopts new ones through it.

    Called with an already validated ``Settings`` (sections a reload cannot change in place are
    pinned to their running values first); it must not fail for valid settings.
    """

    def reload(self, settings: Settings) -> None:
        """Adopt ``settings``."""
        ...


@dataclass(slots=True)
class LiveSettings:
    """A mutable reference to the current frozen settings."""

    current: Settings

    def reload(self, settings: Settings) -> None:
        """Readers see the new tree from their next request or check on."""
        self.current = settings
