"""SIGHUP: re-read the configuration and hand it to every component through the one reload interface.

Services are added, removed or re-timed; projection state is untouched. An invalid file is rejected
and the running configuration kept (logged, and ``uptime_config_last_reload_successful`` drops to 0).
Sections that hold sockets, files or pools cannot change in place: they keep their running values,
with a warning that a restart is needed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

import structlog

from uptime_daemon.config.live import LiveSettings, Reloadable
from uptime_daemon.config.model import Settings
from uptime_daemon.errors import ConfigError
from uptime_daemon.metrics import Metrics

log = structlog.get_logger(__name__)

RESTART_ONLY: Final = (
    "server",
    "store",
    "projector",
    "scheduler",
    "cluster",
    "instance",
    "location",
)
"""Settings a reload cannot change in place (sockets, files, pools): kept, with a warning."""


class LogLevel:
    """The root logger's level follows ``[log] level``."""

    def reload(self, settings: Settings) -> None:
        """Set the level now."""
        logging.getLogger().setLevel(settings.log.level.upper())


class Reloader:
    """Validates a new configuration once, then reloads each registered component in order."""

    def __init__(self, live: LiveSettings, metrics: Metrics) -> None:
        self._live = live
        self._metrics = metrics
        self._components: list[Reloadable] = [live, LogLevel()]
        """The live settings first: components reloaded after them read the new tree."""

    def register(self, component: Reloadable) -> None:
        """Reload ``component`` too, after those registered before it."""
        self._components.append(component)

    def reload(self, load: Callable[[], Settings]) -> bool:
        """Load, validate, pin what needs a restart, reload every component; ``False`` if rejected."""
        old = self._live.current
        try:
            new = load()
        except ConfigError as exc:
            log.error("config_reload_failed", error=str(exc))  # noqa: TRY400 - the message is the point
            self._metrics.observe_reload(ok=False)
            return False
        pinned = [key for key in RESTART_ONLY if getattr(new, key) != getattr(old, key)]
        if pinned:
            log.warning("config_reload_needs_restart", sections=pinned)
            new = new.model_copy(update={key: getattr(old, key) for key in pinned})
        for component in self._components:
            component.reload(new)
        self._metrics.observe_reload(ok=True)
        log.info(
            "config_reloaded",
            added=sorted(new.services.keys() - old.services.keys()),
            removed=sorted(old.services.keys() - new.services.keys()),
            changed=sorted(
                n
                for n in new.services.keys() & old.services.keys()
                if new.services[n] != old.services[n]
            ),
        )
        return True
