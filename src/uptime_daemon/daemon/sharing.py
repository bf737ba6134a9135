"""Which of its location's services this daemon probes: all of them alone, its share in a cluster.

Ownership is a pure function of (alive members of the location, service name): rendezvous hashing
with ``[cluster] replicas`` owners per service (``cluster.ownership``), the same on every member.
Services that watch this daemon itself (``watches_this_daemon``) are always its own. When the
members or the configuration change, jobs move: a service this daemon stops owning is forgotten by
the check runner, so if it comes back the runner restores its status machine from the log, where
the other owner left it — no spurious transition.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import structlog

from uptime_daemon.cluster import owned_by
from uptime_daemon.config.live import LiveSettings
from uptime_daemon.config.model import CheckPolicy, Service, Settings

log = structlog.get_logger(__name__)


def shared_owned_by(settings: Settings, member: str, members: tuple[str, ...]) -> frozenset[str]:
    """The shared services of this location (not the self-watching ones) ``member`` probes."""
    here = settings.probed_here()
    shared = [name for name, service in here.items() if not service.watches_this_daemon]
    replicas = 1 if settings.cluster is None else settings.cluster.replicas
    everyone = members if member in members else (*members, member)
    return owned_by(member, shared, everyone, replicas)


def owned_services(settings: Settings, members: tuple[str, ...]) -> dict[str, Service]:
    """The services ``settings.instance`` probes while ``members`` are alive in its location."""
    here = settings.probed_here()
    if settings.cluster is None:
        return here
    mine = shared_owned_by(settings, settings.instance, members)
    return {
        name: service
        for name, service in here.items()
        if service.watches_this_daemon or name in mine
    }


class Scheduling(Protocol):
    """The scheduler as sharing moves jobs."""

    def reschedule(self, services: Mapping[str, CheckPolicy]) -> None:
        """Run exactly these services from now on."""
        ...


class Forgetting(Protocol):
    """The check runner as sharing hands services over."""

    def forget(self, name: str) -> None:
        """Drop what is held for ``name``: its next check restores its status from the log."""
        ...


class Sharing:
    """Keeps the scheduler on this daemon's share; reloads and membership changes move it."""

    def __init__(self, live: LiveSettings, scheduler: Scheduling, runner: Forgetting) -> None:
        self._live = live
        self._scheduler = scheduler
        self._runner = runner
        self.members: tuple[str, ...] = (live.current.instance,)
        self.owned: frozenset[str] = frozenset()

    def reload(self, settings: Settings) -> None:
        """The service set changed (the live settings hold ``settings`` already)."""
        del settings
        self._apply()

    def members_changed(self, members: tuple[str, ...]) -> None:
        """A member joined, left or expired: recompute the share."""
        self.members = members
        self._apply()

    def start(self) -> dict[str, Service]:
        """The share to start scheduling with."""
        owned = owned_services(self._live.current, self.members)
        self.owned = frozenset(owned)
        return owned

    def _apply(self) -> None:
        settings = self._live.current
        owned = owned_services(settings, self.members)
        gained, lost = owned.keys() - self.owned, self.owned - owned.keys()
        for name in lost:
            self._runner.forget(name)
        self.owned = frozenset(owned)
        if settings.scheduler.enabled:
            self._scheduler.reschedule(owned)
        if gained or lost:
            log.info(
                "sharing_changed",
                members=list(self.members),
                owned=len(owned),
                gained=sorted(gained)[:20],
                lost=sorted(lost)[:20],
            )
