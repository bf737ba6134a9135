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
from uptime_daemon.projector.fold import ProjectionState, TimeState
from uptime_daemon.projector.summary import current_status

WINDOWS_KEPT: Final = 4
"""Distinct ``hours`` values cached at once (the least recently asked is dropped)."""
_SPREAD: Final = 1 << 32


@dataclass(frozen=True, slots=True)
class _Fragment:
    body: bytes
    identity: tuple[object, ...]
    expires: float
    status: str
    configured: bool


@dataclass(slots=True)
class _Window:
    fragments: dict[str, _Fragment] = field(default_factory=dict)


class SummaryCache:
    """Renders ``UptimeSummary`` JSON, reusing per-service fragments (see the module docstring)."""

    def __init__(self, *, monotonic: Callable[[], float]) -> None:
        """``monotonic`` ages fragments (the app's clock, so tests control it)."""
        self._monotonic = monotonic
        self._settings: Settings | None = None
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
        """The whole answer for ``hours`` at ``now``."""
        if settings is not self._settings:  # a reload: kinds, names and order may all differ
            self._settings = settings
            self._windows.clear()
        window = self._window(hours)
        clock = self._monotonic()
        parts: list[bytes] = []
        statuses: list[str] = []
        names = views.service_names(settings, state)
        for name in names:
            fragment = window.fragments.get(name)
            identity = _identity(state, name, now)
            if fragment is None or fragment.identity != identity or clock >= fragment.expires:
                max_age = settings.server.summary_max_age_seconds
                if fragment is None:  # spread first expiries so later rebuilds come a few at a time
                    max_age *= zlib.crc32(name.encode()) / _SPREAD
                fragment = self._build(
                    settings=settings,
                    state=state,
                    name=name,
                    hours=hours,
                    now=now,
                    identity=identity,
                    expires=clock + max_age,
                )
                window.fragments[name] = fragment
            parts.append(fragment.body)
            if fragment.configured:
                statuses.append(fragment.status)
        if len(window.fragments) > len(names):  # services that left the log and the config
            for gone in window.fragments.keys() - set(names):
                del window.fragments[gone]
        head = orjson.dumps(
            {"generatedAt": to_iso_millis(now), "hours": hours, "status": views.overall(statuses)}
        )
        return head[:-1] + b',"services":[' + b",".join(parts) + b"]}"

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
        *,
        settings: Settings,
        state: ProjectionState,
        name: str,
        hours: int,
        now: datetime,
        identity: tuple[object, ...],
        expires: float,
    ) -> _Fragment:
        self.rebuilt += 1
        model = views.service_uptime(settings, state, name, hours=hours, now=now)
        return _Fragment(
            body=model.model_dump_json(by_alias=True).encode(),
            identity=identity,
            expires=expires,
            status=model.status,
            configured=model.configured,
        )


def _identity(state: ProjectionState, name: str, now: datetime) -> tuple[object, ...]:
    """What, when it changes, must show in the next answer at once (a reload clears everything)."""
    projection = state.services.get(name)
    if projection is None:
        return (None, TimeState.UNKNOWN)
    return (projection.last_check, current_status(projection, now))
