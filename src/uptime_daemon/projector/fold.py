"""The projection as a deterministic fold: ``apply(state, observation) -> state``, and queries over it.

No I/O and no clock reads: every query takes ``now``. For speed ``apply`` updates the state it is
given and returns it; the result depends only on the sequence of observations, so a replay from zero
equals the live fold (tested with Hypothesis).

Time accounting. A check at ``t`` with status ``s`` means ``s`` holds from ``t`` until the next check.
A status is credible for ``gap_seconds`` (2 × interval + timeout) after the check that established
it; past that, until the next check, the time is ``unknown`` — the daemon was not looking, which is
neither up nor down. The same rule applies to the open interval up to ``now``.

Memory per service is bounded: status periods (transitions only), hourly buckets and incidents, all
pruned to ``retention_seconds`` behind the newest observation — never raw samples.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from uptime_daemon.status import Status

HOUR_SECONDS: Final = 3600
HISTOGRAM_BASE_SECONDS: Final = 0.001
HISTOGRAM_GROWTH: Final = 2**0.25
HISTOGRAM_BUCKETS: Final = 72
"""Bucket ``k`` holds response times in ``[base·g^(k-1), base·g^k)``; the last one is open-ended."""
HISTOGRAM_RELATIVE_ERROR: Final = 2**0.125 - 1
"""A percentile is reported as its bucket's geometric midpoint: at most ~9.05 % off (1 ms .. 4.3 min)."""
DEFAULT_RETENTION_SECONDS: Final = 90 * 86_400.0


STATE_ORDER: Final = tuple(Status)
"""Seconds and totals are kept in this order: up, degraded, down, unknown."""
_INDEX: Final = {state: index for index, state in enumerate(STATE_ORDER)}


@dataclass(frozen=True, slots=True)
class Observation:
    """One completed check, as the projection needs it (decoded from ``ServiceStatusChanged``)."""

    service: str
    at: datetime
    status: Status
    """``up``, ``degraded`` or ``down`` (never ``unknown``)."""
    response_seconds: float
    gap_seconds: float
    """How long this check's verdict stays credible: 2 × interval + timeout."""


@dataclass(slots=True)
class HourBucket:
    """One hour of one service: check counts, seconds per state, response-time histogram."""

    checks: list[int] = field(default_factory=lambda: [0, 0, 0])
    """Checks whose verdict was up, degraded, down."""
    seconds: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0])
    """Seconds up, degraded, down, unknown (time-weighted)."""
    response_sum_seconds: float = 0.0
    histogram: dict[int, int] = field(default_factory=dict)
    """Sparse: bucket index → count."""


@dataclass(frozen=True, slots=True)
class Period:
    """A closed span of one state."""

    state: Status
    start: datetime
    end: datetime


@dataclass(slots=True)
class Incident:
    """From the check that turned a service down to the check that brought it back."""

    start: datetime
    end: datetime | None = None


@dataclass(slots=True)
class ServiceProjection:
    """Everything the projection keeps for one service."""

    name: str
    status: Status | None = None
    since: datetime | None = None
    """When the current status began (the check that established it)."""
    last_check: datetime | None = None
    gap_seconds: float = 0.0
    first_check: datetime | None = None
    periods: list[Period] = field(default_factory=list)
    open_state: Status | None = None
    open_start: datetime | None = None
    buckets: dict[int, HourBucket] = field(default_factory=dict)
    incidents: list[Incident] = field(default_factory=list)
    last_response_seconds: float | None = None
    totals: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0])
    """Seconds ever credited per state (up, degraded, down, unknown): never pruned, never
    decreasing — the source of the ``uptime_service_state_seconds_total`` counter."""


@dataclass(slots=True)
class ProjectionState:
    """All services, plus the retention that bounds them."""

    services: dict[str, ServiceProjection] = field(default_factory=dict)
    retention_seconds: float = DEFAULT_RETENTION_SECONDS


def histogram_index(seconds: float) -> int:
    """The histogram bucket for a response time."""
    if seconds < HISTOGRAM_BASE_SECONDS:
        return 0
    index = int(math.log(seconds / HISTOGRAM_BASE_SECONDS, HISTOGRAM_GROWTH)) + 1
    return min(index, HISTOGRAM_BUCKETS - 1)


def histogram_value(index: int) -> float:
    """Representative value of a bucket: its geometric midpoint (bucket 0: half the base)."""
    if index == 0:
        return HISTOGRAM_BASE_SECONDS / 2
    return float(HISTOGRAM_BASE_SECONDS * HISTOGRAM_GROWTH ** (index - 0.5))


def _period_end(period: Period) -> datetime:
    return period.end


def _hour(moment: datetime) -> int:
    return int(moment.timestamp()) // HOUR_SECONDS


def _bucket(service: ServiceProjection, hour: int) -> HourBucket:
    bucket = service.buckets.get(hour)
    if bucket is None:
        bucket = service.buckets[hour] = HourBucket()
    return bucket


def _credit(service: ServiceProjection, state: Status, start: datetime, end: datetime) -> None:
    """Add ``[start, end)`` of ``state`` to the hourly buckets, split at hour boundaries."""
    index = _INDEX[state]
    cursor = start.timestamp()
    stop = end.timestamp()
    if stop > cursor:
        service.totals[index] += stop - cursor
    while cursor < stop:
        hour = int(cursor) // HOUR_SECONDS
        boundary = min(stop, (hour + 1) * HOUR_SECONDS)
        _bucket(service, hour).seconds[index] += boundary - cursor
        cursor = boundary


def _enter(service: ServiceProjection, state: Status, at: datetime) -> None:
    """Close the open period if the state changes, and open one for ``state`` at ``at``."""
    if service.open_state is state:
        return
    if (
        service.open_state is not None
        and service.open_start is not None
        and service.open_start < at
    ):
        service.periods.append(Period(service.open_state, service.open_start, at))
    service.open_state = state
    service.open_start = at


def apply(state: ProjectionState, obs: Observation) -> ProjectionState:
    """Fold one observation into the projection."""
    service = state.services.get(obs.service)
    if service is None:
        service = state.services[obs.service] = ServiceProjection(obs.service)
    at = obs.at
    if service.last_check is not None and at < service.last_check:
        at = service.last_check  # clocks stepped back: never count negative time
    if service.last_check is not None and service.status is not None:
        credible_until = min(at, service.last_check + timedelta(seconds=service.gap_seconds))
        _credit(service, service.status, service.last_check, credible_until)
        if credible_until < at:
            _enter(service, Status.UNKNOWN, credible_until)
            _credit(service, Status.UNKNOWN, credible_until, at)
    else:
        service.first_check = at
    previous = service.status
    if obs.status is not previous:
        service.since = at
        if obs.status is Status.DOWN:
            service.incidents.append(Incident(start=at))
        elif previous is Status.DOWN and service.incidents:
            service.incidents[-1].end = at
    _enter(service, obs.status, at)
    service.status = obs.status
    service.last_check = at
    service.gap_seconds = obs.gap_seconds
    service.last_response_seconds = obs.response_seconds
    hour = _hour(at)
    bucket = service.buckets.get(hour)
    if bucket is None:
        # Once per service-hour: cheap enough to prune here, and retention is days, not minutes.
        _prune(service, at - timedelta(seconds=state.retention_seconds))
        bucket = service.buckets[hour] = HourBucket()
    bucket.checks[_INDEX[obs.status]] += 1
    if obs.status is not Status.DOWN:
        bucket.response_sum_seconds += obs.response_seconds
        index = histogram_index(obs.response_seconds)
        bucket.histogram[index] = bucket.histogram.get(index, 0) + 1
    return state


def _prune(service: ServiceProjection, horizon: datetime) -> None:
    """Drop what is entirely older than the retention horizon (cheap: only when there is some)."""
    while service.periods and service.periods[0].end < horizon:
        service.periods.pop(0)
    oldest_hour = _hour(horizon)
    for hour in [h for h in service.buckets if h < oldest_hour]:
        del service.buckets[hour]
    while (
        service.incidents
        and service.incidents[0].end is not None
        and service.incidents[0].end < horizon
    ):
        service.incidents.pop(0)


# --- queries -------------------------------------------------------------------------------------


def spans(
    service: ServiceProjection, now: datetime, since: datetime | None = None
) -> Iterator[Period]:
    """State spans up to ``now``, oldest first, including the open one and a trailing unknown.

    With ``since``, closed periods that ended at or before it are skipped (found by bisection: they
    are in time order), so a 24-hour query on a long-flapping service does not walk 90 days.
    """
    periods = service.periods
    first = 0 if since is None else bisect.bisect_right(periods, since, key=_period_end)
    yield from itertools.islice(periods, first, None)
    if service.open_state is None or service.open_start is None or service.last_check is None:
        return
    credible_until = service.last_check + timedelta(seconds=service.gap_seconds)
    if service.open_state is Status.UNKNOWN:
        yield Period(Status.UNKNOWN, service.open_start, max(now, service.open_start))
        return
    end = min(now, credible_until)
    if end > service.open_start:
        yield Period(service.open_state, service.open_start, end)
    if now > credible_until:
        yield Period(Status.UNKNOWN, max(credible_until, service.open_start), now)


def seconds_in_window(
    service: ServiceProjection, start: datetime, now: datetime
) -> dict[Status, float]:
    """Exact time-weighted seconds per state within ``[start, now)``.

    Whatever no credible check covers — before the first check, silent gaps, the stale tail — is
    ``unknown``, so the four figures always add up to the window's length.
    """
    totals = dict.fromkeys(STATE_ORDER, 0.0)
    for period in spans(service, now, since=start):
        if period.state is Status.UNKNOWN:
            continue
        lo = max(period.start, start)
        hi = min(period.end, now)
        if hi > lo:
            totals[period.state] += (hi - lo).total_seconds()
    known = totals[Status.UP] + totals[Status.DEGRADED] + totals[Status.DOWN]
    totals[Status.UNKNOWN] = max(0.0, (now - start).total_seconds() - known)
    return totals


def timeline(service: ServiceProjection, start: datetime, now: datetime) -> list[Period]:
    """Contiguous state periods covering ``[start, now)``, adjacent equal states merged.

    Any stretch no period covers (before the first check, or pruned) is ``unknown``, so the timeline
    always spans the whole window.
    """
    out: list[Period] = []

    def extend(state: Status, lo: datetime, hi: datetime) -> None:
        if out and out[-1].state is state and out[-1].end == lo:
            out[-1] = Period(state, out[-1].start, hi)
        else:
            out.append(Period(state, lo, hi))

    cursor = start
    for period in spans(service, now, since=start):
        lo, hi = max(period.start, start), min(period.end, now)
        if hi <= lo:
            continue
        if lo > cursor:
            extend(Status.UNKNOWN, cursor, lo)
        extend(period.state, lo, hi)
        cursor = max(cursor, hi)
    if cursor < now:
        extend(Status.UNKNOWN, cursor, now)
    return out


def state_totals(service: ServiceProjection, now: datetime) -> list[float]:
    """Seconds per state ever, including the open stretch up to ``now``.

    The open stretch is credited by the same rule the next check will apply, so the values only
    ever grow: a valid, restart-safe counter.
    """
    totals = list(service.totals)
    if service.last_check is None or service.status is None or now <= service.last_check:
        return totals
    credible_until = min(now, service.last_check + timedelta(seconds=service.gap_seconds))
    totals[_INDEX[service.status]] += (credible_until - service.last_check).total_seconds()
    if now > credible_until:
        totals[_INDEX[Status.UNKNOWN]] += (now - credible_until).total_seconds()
    return totals


def epoch(seconds: float) -> datetime:
    """UTC datetime from a Unix timestamp."""
    return datetime.fromtimestamp(seconds, UTC)
