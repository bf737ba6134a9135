"""The settings in force, replaced whole by a successful reload (SIGHUP).

Readers take ``live.current`` once per request or check and use that frozen ``Settings``; a reload
swaps the reference, so nobody ever sees half a configuration.
"""

from __future__ import annotations

from dataclasses import dataclass

from uptime_daemon.config.model import Settings


@dataclass(slots=True)
class LiveSettings:
    """A mutable reference to the current frozen settings."""

    current: Settings
