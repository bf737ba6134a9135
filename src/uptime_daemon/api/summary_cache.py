"""``GET /uptime/summary`` from per-service fragments: every check shows at once, cost stays flat.

A 1,000-service summary costs tens of milliseconds to compute from the projection, and the event loop
cannot answer anything else meanwhile. So each service's part of the answer is kept as serialized
JSON and rebuilt only when

* the service has a new check, its current status changed (it went stale, so ``unknown``), or its
  configuration entry changed (reload) — those show in the very next answer; or
* the fragment is older than ``server.summary_max_age_seconds`` — only the clock's advance (the open period
  growing, the window sliding) can be that late. Each service's ``window.end`` says when its
  figures were computed.

First expiries are spread over that age by service name, so fragments expire a few at a
time and no single request pays for all of them. ``summary_max_age_seconds = 0`` computes every fragment
on every request: the answer is then exactly the model's serialization at ``now``.
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

import orjson

from uptime_daemon.api import views
from uptime_daemon.clock import to_iso_millis
from uptime_daemon.config.model import Settings
from uptime_daemon.projector.fold import ProjectionState, next_change

WINDOWS_KEPT: Final = 4
"""Distinct ``hours`` values cached at once (the least recently asked is dropped)."""
_SPREAD: Final = 1 << 32


@dataclass(frozen=True, slots=True)
class _Fragment:
    body: bytes
    last_check: datetime | None
    """The service's last check when this was built: a newer one means rebuild."""
    stale_at: datetime | None
    """When the service's status turns ``unknown`` (no check for 2 × interval + timeout)."""
    expires: float
    status: str
    configured: bool


@dataclass(slots=True)
class _Window:
    fragments: dict[str, _Fragment] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)
    services_json: bytes = b""
    """``,"services":[...]}`` as last rendered: reused whole while no fragment changes."""
    status: str = "ok"


class SummaryCache:
    """Renders ``UptimeSummary`` JSON, reusing per-service fragments (see the module docstring)."""

    def __init__(self, *, monotonic: Callable[[], float]) -> None:
        """``monotonic`` ages fragments (the app's clock, so tests control it)."""
        self._monotonic = monotonic
        self._settings: Settings | None = None
        self._maintenance_revision = 0
        self._windows: OrderedDict[int, _Window] = OrderedDict()
        self.rebuilt = 0
        """Fragments computed so far (what a test or a profile looks at)."""

    @property
    def windows(self) -> int:
        """Distinct ``hours`` values cached now (at most ``WINDOWS_KEPT``)."""
        return len(self._windows)

    def render(
        self, settings: Settings, state: ProjectionState, *, hours: int, now: datetime
    ) -> bytes:
        """The whole answer for ``hours`` at ``now``.

        The per-service test is a few attribute reads, so a warm answer for 1,000 services costs
        well under a millisecond; the joined body is reused whole while nothing changed.
        """
        revision = state.maintenance.revision
        if settings is not self._settings or revision != self._maintenance_revision:
            # A reload (kinds, names and order may all differ), or a maintenance window declared,
            # ended or cancelled (it may change any service's figures, also in the past).
            self._settings = settings
            self._maintenance_revision = revision
            self._windows.clear()
        window = self._window(hours)
        clock = self._monotonic()
        fragments = window.fragments
        projections = state.services
        names = views.service_names(settings, state)
        changed = names != window.names
        for name in names:
            fragment = fragments.get(name)
            projection = projections.get(name)
            last_check = None if projection is None else projection.last_check
            if (
                fragment is None
                or fragment.last_check != last_check
                or clock >= fragment.expires
                or (fragment.stale_at is not None and now > fragment.stale_at)
            ):
                max_age = settings.server.summary_max_age_seconds
                if fragment is None:  # spread first expiries so later rebuilds come a few at a time
                    max_age *= zlib.crc32(name.encode()) / _SPREAD
                fragments[name] = self._build(
                    settings, state, name, hours=hours, now=now, expires=clock + max_age
                )
                changed = True
        if changed:
            if len(fragments) > len(names):  # services that left the log and the config
                for gone in fragments.keys() - set(names):
                    del fragments[gone]
            window.names = names
            window.services_json = (
                b',"services":[' + b",".join(fragments[name].body for name in names) + b"]}"
            )
            window.status = views.overall(
                [fragments[name].status for name in names if fragments[name].configured]
            )
        head = orjson.dumps(
            {"generatedAt": to_iso_millis(now), "hours": hours, "status": window.status}
        )
        return head[:-1] + window.services_json

    def _window(self, hours: int) -> _Window:
        window = self._windows.get(hours)
        if window is None:
            window = self._windows[hours] = _Window()
            while len(self._windows) > WINDOWS_KEPT:
                self._windows.popitem(last=False)
        else:
            self._windows.move_to_end(hours)
        return window

    def _build(
        self,
        settings: Settings,
        state: ProjectionState,
        name: str,
        *,
        hours: int,
        now: datetime,
        expires: float,
    ) -> _Fragment:
        self.rebuilt += 1
        model = views.service_uptime(settings, state, name, hours=hours, now=now)
        projection = state.services.get(name)
        stale_at = None if projection is None else next_change(projection, now)
        return _Fragment(
            body=model.model_dump_json(by_alias=True).encode(),
            last_check=None if projection is None else projection.last_check,
            stale_at=stale_at,
            expires=expires,
            status=model.status,
            configured=model.configured,
        )
