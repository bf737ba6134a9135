"""Projection-derived series, rendered at scrape time from the projection (restart-safe).

``uptime_service_state_seconds_total`` comes from per-state totals that never decrease, not from
process-local counters, so after a restart ``increase()`` over any range is still exact
time-weighted accounting. It counts what was observed: a counter cannot take back seconds, so a
maintenance window (declared after the fact, too) shows in ``uptime_service_in_maintenance`` and in
the availability ratios, which leave its time out, not in this counter.

Rendering is incremental: about twenty lines per service, 200,000 at 10,000 services, cost seconds
a scrape when every one was rebuilt (through prometheus_client ``Sample`` objects, the ratios
walking each timeline four times). Each service's lines are kept as bytes (``exposition``) with what
they were rendered from, and a scrape rewrites them only when

* a check was folded since (the service's last check and status, its locations' for a quorum),
* its status changes without a check (a verdict going stale: ``fold.next_change``),
* a maintenance window was declared, ended or cancelled, or one of its windows starts or ends,
* they are ``REFRESH_SECONDS`` old: the figures that slide with the clock (state seconds, ratios)
  lag by at most that much.

The ratio windows, the dear part, are recomputed only on that last condition, however often the
service is checked. At 10,000 services checked every minute a 15 s scrape rewrites the quarter
checked since the last one and joins the rest.

Scrapes run in the metrics thread while the event loop keeps folding events (``api/metrics_endpoint``),
so one render may read a service half-way through an update. Its lines are cached under what was
read *before* rendering, so the fold's end shows as a change and the next scrape renders again: a
gauge is at most one scrape off. A counter must never go backwards, so each reported total is at
least the last one reported for that series.
"""

from __future__ import annotations

import math
import threading
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from uptime_daemon.clock import Clock
from uptime_daemon.exposition import (
    Block,
    Family,
    FamilyType,
    escape,
    number,
    render,
    series,
    template,
)
from uptime_daemon.maintenance import Interval, Maintenance
from uptime_daemon.projector.fold import (
    STATE_ORDER,
    ServiceProjection,
    next_change,
    seconds_in_window,
    state_totals,
)
from uptime_daemon.projector.runner import Projector
from uptime_daemon.projector.summary import current_status
from uptime_daemon.status import Status

WINDOWS: Final = (("1h", 1), ("24h", 24), ("7d", 24 * 7), ("30d", 24 * 30))
REFRESH_SECONDS: Final = 60.0
"""How stale a service's clock-driven figures (state seconds, ratios) may get between checks."""
_REFRESH: Final = timedelta(seconds=REFRESH_SECONDS)
_SPREAD: Final = 1024
_LONGEST: Final = timedelta(hours=WINDOWS[-1][1])

UP: Final = Family(
    "uptime_service_up",
    FamilyType.GAUGE,
    "The service's verdict (its locations' quorum): 1 when up or degraded, 0 when down, "
    "NaN when unknown.",
)
LOCATION_UP: Final = Family(
    "uptime_location_up",
    FamilyType.GAUGE,
    "One location's verdict of the service: 1 when up or degraded, 0 when down, NaN when unknown.",
)
STATUS: Final = Family(
    "uptime_service_status",
    FamilyType.GAUGE,
    "Current status as a state set (1 for the current one).",
)
AVAILABILITY: Final = Family(
    "uptime_service_availability_ratio",
    FamilyType.GAUGE,
    "Time-weighted availability over the window, the API's availabilityRatio: "
    "(up + degraded) / (up + degraded + down), maintenance left out; at most "
    f"{REFRESH_SECONDS:g} s old.",
)
UPTIME: Final = Family(
    "uptime_service_uptime_ratio",
    FamilyType.GAUGE,
    "Time-weighted uptime over the window, the API's uptimeRatio: "
    "up / (up + degraded + down), maintenance left out (degraded is not up); at most "
    f"{REFRESH_SECONDS:g} s old.",
)
STATE_SECONDS: Final = Family(
    "uptime_service_state_seconds",
    FamilyType.COUNTER,
    "Seconds the service spent in each state (unknown: no credible check), up to its last "
    f"check or at most {REFRESH_SECONDS:g} s ago.",
)
IN_MAINTENANCE: Final = Family(
    "uptime_service_in_maintenance",
    FamilyType.GAUGE,
    "1 while a maintenance window covers the service (its notifications are held back).",
)
FAMILIES: Final = (UP, LOCATION_UP, STATUS, AVAILABILITY, UPTIME, STATE_SECONDS, IN_MAINTENANCE)
LAG: Final = Family(
    "uptime_projector_lag_seconds",
    FamilyType.GAUGE,
    "Age of the newest folded event while catching up; 0 when current.",
)


_UP: Final = template(UP.sample)
_STATUS: Final = tuple(template(STATUS.sample, status=s.value) for s in STATE_ORDER)
_AVAILABILITY: Final = tuple(template(AVAILABILITY.sample, window=w) for w, _ in WINDOWS)
_UPTIME: Final = tuple(template(UPTIME.sample, window=w) for w, _ in WINDOWS)
_SECONDS: Final = tuple(template(STATE_SECONDS.sample, state=s.value) for s in STATE_ORDER)
_IN_MAINTENANCE: Final = template(IN_MAINTENANCE.sample)


@dataclass(frozen=True, slots=True)
class _Prefixes:
    """What one service's lines are made of besides the shared templates (``_STATUS``, …)."""

    name: str
    """The service's name as a label value (``escape``)."""
    refresh: timedelta
    """Between half and all of ``REFRESH_SECONDS``, by name: services rendered together (at the
    first scrape, after a reload) are refreshed apart, never all in one scrape again."""

    @classmethod
    def of(cls, name: str) -> _Prefixes:
        share = zlib.crc32(name.encode()) % _SPREAD / _SPREAD
        return cls(escape(name), _REFRESH * (1 - share / 2))


@dataclass(slots=True)
class _Entry:
    """A service's cached lines and what they were rendered from."""

    prefixes: _Prefixes
    signature: tuple[object, ...] = ()
    revision: int = -1
    """The maintenance revision they saw."""
    fresh_until: datetime | None = None
    ratios_at: datetime | None = None
    locations: dict[str, str] | None = None
    """``uptime_location_up`` line prefixes by location, once the service has more than its own."""
    reported: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0)
    """State seconds last reported: what the next render may not go below."""
    block: Block = ()


def _signature(service: ServiceProjection) -> tuple[object, ...]:
    """What a folded check changes (the object itself: a projection replaced on reload, too)."""
    head = (id(service), service.last_check, service.status, service.open_state)
    if not service.locations:
        return head
    locations = tuple(service.locations.items())  # one atomic copy: the loop may add one
    return head + tuple(
        (location, record.last_check, record.status) for location, record in locations
    )


class ProjectionCollector:
    """Renders the projection's series when Prometheus scrapes (an ``exposition.TextSource``)."""

    def __init__(self, projector: Projector, clock: Clock) -> None:
        self._projector = projector
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._rendering = threading.Lock()

    def pieces(self, *, openmetrics: bool) -> list[bytes]:
        """Every projection family; only the services that changed are rendered again."""
        with self._rendering:
            now = self._clock.now()
            projection = self._projector.state
            services = dict(projection.services)  # one atomic copy of the mapping
            maintenance = projection.maintenance
            revision = maintenance.revision
            blocks: list[Block] = []
            for name in sorted(services):
                service = services[name]
                entry = self._entries.get(name)
                if entry is None:
                    entry = self._entries[name] = _Entry(_Prefixes.of(name))
                signature = _signature(service)
                if (
                    entry.signature != signature
                    or entry.revision != revision
                    or entry.fresh_until is None
                    or now >= entry.fresh_until
                ):
                    self._refresh(
                        entry,
                        name,
                        service,
                        now=now,
                        signature=signature,
                        maintenance=maintenance,
                    )
                blocks.append(entry.block)
            if len(self._entries) > len(services):
                for gone in self._entries.keys() - services.keys():
                    del self._entries[gone]
            lag = f"{LAG.sample} {number(self._projector.lag_seconds())}\n".encode()
            pieces = render(FAMILIES, blocks, openmetrics=openmetrics)
            pieces += (LAG.header(openmetrics=openmetrics), lag)
            return pieces

    @staticmethod
    def _refresh(
        entry: _Entry,
        name: str,
        service: ServiceProjection,
        *,
        now: datetime,
        signature: tuple[object, ...],
        maintenance: Maintenance,
    ) -> None:
        """Render ``service``'s lines at ``now`` into ``entry`` (the ratios only when stale)."""
        prefixes = entry.prefixes
        revision = maintenance.revision  # read before the windows: a later event re-renders
        current = current_status(service, now)
        fresh_until = now + prefixes.refresh
        records = service.location_records()
        for record in (service, *records.values()):
            change = next_change(record, now)
            if change is not None:
                fresh_until = min(fresh_until, change)
        if entry.locations is None or entry.locations.keys() != records.keys():
            entry.locations = {
                location: series(LOCATION_UP.sample, service=name, location=location)
                for location in sorted(records)
            }
        location_up = "".join(
            f"{prefix}{number(_up(current_status(records[location], now)))}\n"
            for location, prefix in entry.locations.items()
        )
        status = "".join(
            t.line(prefixes.name, number(float(state is current)))
            for t, state in zip(_STATUS, STATE_ORDER, strict=True)
        )
        excluded: list[Interval] = []
        in_maintenance = False
        if maintenance.windows:
            ahead = maintenance.intervals(name, now - _LONGEST, now + _REFRESH)
            excluded = [(lo, min(hi, now)) for lo, hi in ahead if lo < now]
            in_maintenance = any(lo < now <= hi for lo, hi in ahead)
            for edge in (edge for span in ahead for edge in span if edge > now):
                fresh_until = min(fresh_until, edge)
        ratios_at = entry.ratios_at
        if (
            ratios_at is None
            or entry.revision != revision
            or not ratios_at <= now < ratios_at + prefixes.refresh
        ):
            availability, uptime = _ratios(prefixes, service, now, excluded)
            ratios_at = entry.ratios_at = now
        else:
            availability, uptime = entry.block[3], entry.block[4]
        fresh_until = min(fresh_until, ratios_at + prefixes.refresh)
        reported = tuple(
            max(total, last)
            for total, last in zip(state_totals(service, now), entry.reported, strict=True)
        )
        seconds = "".join(
            t.line(prefixes.name, number(value))
            for t, value in zip(_SECONDS, reported, strict=True)
        )
        entry.block = (
            _UP.line(prefixes.name, number(_up(current))).encode(),
            location_up.encode(),
            status.encode(),
            availability,
            uptime,
            seconds.encode(),
            _IN_MAINTENANCE.line(prefixes.name, number(float(in_maintenance))).encode(),
        )
        entry.signature = signature
        entry.revision = revision
        entry.fresh_until = fresh_until
        entry.reported = reported


def _ratios(
    prefixes: _Prefixes, service: ServiceProjection, now: datetime, excluded: list[Interval]
) -> tuple[bytes, bytes]:
    """Availability and uptime lines over every window (none for a window with no known time)."""
    availability, uptime = [], []
    for index, (_, hours) in enumerate(WINDOWS):
        start = now - timedelta(hours=hours)
        clipped = [(max(lo, start), hi) for lo, hi in excluded if hi > start]
        window = seconds_in_window(service, start, now, clipped)
        known = window[Status.UP] + window[Status.DEGRADED] + window[Status.DOWN]
        if known > 0:
            reachable = window[Status.UP] + window[Status.DEGRADED]
            availability.append(_AVAILABILITY[index].line(prefixes.name, number(reachable / known)))
            uptime.append(_UPTIME[index].line(prefixes.name, number(window[Status.UP] / known)))
    return "".join(availability).encode(), "".join(uptime).encode()


def _up(status: Status) -> float:
    return math.nan if status is Status.UNKNOWN else float(status is not Status.DOWN)
