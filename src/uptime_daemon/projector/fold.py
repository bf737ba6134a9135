"""The projection as a deterministic fold: ``apply(state, observation) -> state``, and queries over it.

No I/O and no clock reads: every query takes ``now``. For speed ``apply`` updates the state it is
given and returns it; the result depends only on the sequence of observations, so a replay from zero
equals the live fold (tested with Hypothesis). A replay calls ``apply_check`` with the fields, so no
``Observation`` is built per event; the usual check (the last verdict continued, still credible)
is credited with float seconds computed once per check, the same float operations the datetime
path performs, and anything near an edge takes the datetime path (``test_fold_fast_paths``).

Time accounting. A check at ``t`` with status ``s`` means ``s`` holds from ``t`` until the next check.
A status is credible for ``gap_seconds`` (2 × interval + timeout) after the check that established
it; past that, until the next check, the time is ``unknown`` — the daemon was not looking, which is
neither up nor down. The same rule applies to the open interval up to ``now``.

Per location and per service. Each location of a service has its own record (status machine
verdicts, timeline, checks, response times); the service's own record is its k-of-n quorum
timeline (``quorum.verdict``), evaluated at every instant a location's verdict arrives or stops
being credible: its seconds, incidents and counters are exact and identical on every replica. A
service watched from one location keeps a single record, which is that location's: one location
behaves exactly as before, at no extra cost. The first check from a second location, or an event
naming several, splits it (the history so far is the same for both).

Each check counts once. A check is identified by ``(service, location, slot)`` (its scheduled
time); KurrentDB's id dedupe is only a cache, so the same check can reach the log twice (a retried
append, two replicas of one location probing one slot). The fold remembers the newest
``RECENT_SLOTS`` slots of each (service, location) and skips a check whose slot is among them, or
older than all of them once that many are known: a log with every event written twice folds to
exactly the projection of the log written once, and the skip depends only on the log's order, so
every replica and every replay agree.

Memory per service is bounded: status periods (transitions only), hourly buckets and incidents, all
pruned to ``retention_seconds`` behind the newest observation — never raw samples. Hours the fold no
longer writes to are packed into arrays (``hours.Hours``) as the record's hour moves on (``prune``).
"""

from __future__ import annotations

import bisect
import copy
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from uptime_daemon.clock import from_micros, to_micros
from uptime_daemon.maintenance import Interval, Maintenance, outside
from uptime_daemon.projector.hours import HourBucket, Hours
from uptime_daemon.projector.periods import Incident, Incidents, Period, Periods
from uptime_daemon.projector.quorum import verdict
from uptime_daemon.status import Status

HOUR_SECONDS: Final = 3600
HISTOGRAM_BASE_SECONDS: Final = 0.001
HISTOGRAM_GROWTH: Final = 2**0.25
HISTOGRAM_BUCKETS: Final = 72
"""Bucket ``k`` holds response times in ``[base·g^(k-1), base·g^k)``; the last one is open-ended."""
HISTOGRAM_RELATIVE_ERROR: Final = 2**0.125 - 1
"""A percentile is reported as its bucket's geometric midpoint: at most ~9.05 % off (1 ms .. 4.3 min)."""
DEFAULT_RETENTION_SECONDS: Final = 90 * 86_400.0
_NEVER: Final = -1
RECENT_SLOTS: Final = 8
"""Slots remembered per (service, location) to recognise a check already counted. A late check of
an older slot still counts while fewer than this many newer ones have arrived."""


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
    location: str = "default"
    slot: datetime | None = None
    """The check's scheduled time: with ``service`` and ``location`` it names the check. ``None``
    only for folds that feed observations by hand; such a check is never recognised as repeated."""
    quorum: int = 1
    """k: locations that must say down for the service to be down (as the event states it)."""
    locations: tuple[str, ...] = ()
    """The service's locations as the event states them; empty means only ``location``."""


@dataclass(frozen=True, slots=True)
class Inconclusive:
    """A check that concluded nothing (``ServiceCheckInconclusive``): counted, never a verdict."""

    service: str
    at: datetime


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
    periods: Periods = field(default_factory=Periods)
    """Closed periods, packed (``projector.periods``); a list given here is packed."""
    open_state: Status | None = None
    open_start: datetime | None = None
    buckets: Hours = field(default_factory=Hours)
    """Hourly buckets: the open hours as objects, older ones packed (``hours``)."""
    incidents: Incidents = field(default_factory=Incidents)
    """Packed but the last (``projector.periods``); a list given here is packed."""
    last_response_seconds: float | None = None
    totals: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0])
    """Seconds ever credited per state (up, degraded, down, unknown): never pruned, never
    decreasing — the source of the ``uptime_service_state_seconds_total`` counter."""
    recent_slots: dict[str, list[int]] = field(default_factory=dict)
    """Location → the newest ``RECENT_SLOTS`` slots counted, in epoch milliseconds, ascending."""
    repeated_checks: int = 0
    """Checks skipped because their slot was already counted (or too old to tell)."""
    location: str | None = None
    """While ``locations`` is empty: the one location this record is the record of."""
    quorum: int = 1
    quorum_of: tuple[str, ...] = ()
    """The locations the quorum counts (from the newest event); others are shown, not counted."""
    locations: dict[str, ServiceProjection] = field(default_factory=dict)
    """Per-location records once the service is watched from more than one location; empty while
    this record is its only location's (then ``status``/``gap_seconds`` are that location's)."""
    pruned_hour: int = _NEVER
    """The newest hour (since the epoch) a check was counted in: retention is measured back from
    its start (``prune``)."""
    folded: int = 0
    """Checks of the service folded so far, repeated ones included (what a rollup's record is
    compared by: one that has folded as many holds the rollup's checks already)."""
    rolled_through: datetime | None = None
    """The newest check time a rollup (``projector.rollup``) folded in for this service: a raw check
    at or before it is in the record already, whether or not the raw event is still stored."""
    last_check_seconds: tuple[datetime, float] | None = field(
        default=None, compare=False, repr=False
    )
    """``last_check`` and its Unix seconds, as the fold last set them: a cache, not state (never
    stored, not compared), used while its datetime *is* ``last_check`` (``_last_seconds``)."""

    def __post_init__(self) -> None:
        """Pack periods and incidents given as lists."""
        if not isinstance(self.periods, Periods):
            self.periods = Periods(self.periods)
        if not isinstance(self.incidents, Incidents):
            self.incidents = Incidents(self.incidents)

    @property
    def by_quorum(self) -> bool:
        """Whether this record's timeline is a quorum over ``locations``."""
        return bool(self.locations)

    def location_records(self) -> dict[str, ServiceProjection]:
        """Location → its record (this one, while there is only one)."""
        if self.locations:
            return self.locations
        return {} if self.location is None else {self.location: self}


@dataclass(slots=True)
class ProjectionState:
    """All services, plus the retention that bounds them."""

    services: dict[str, ServiceProjection] = field(default_factory=dict)
    retention_seconds: float = DEFAULT_RETENTION_SECONDS
    maintenance: Maintenance = field(default_factory=Maintenance)
    """The maintenance windows the log declares (applied by the queries, never to the record)."""


def histogram_index_by_log(seconds: float) -> int:
    """The histogram bucket for a response time, by its definition (``histogram_index`` is faster)."""
    if seconds < HISTOGRAM_BASE_SECONDS:
        return 0
    index = int(math.log(seconds / HISTOGRAM_BASE_SECONDS, HISTOGRAM_GROWTH)) + 1
    return min(index, HISTOGRAM_BUCKETS - 1)


def _lowest_of(index: int) -> float:
    """The least float ``histogram_index_by_log`` puts in bucket ``index`` or above.

    Searched float by float from the bucket's nominal bound, so the float rounding in ``math.log``
    is reproduced exactly, not approximated.
    """
    bound = HISTOGRAM_BASE_SECONDS * HISTOGRAM_GROWTH ** (index - 1)
    while histogram_index_by_log(bound) < index:
        bound = math.nextafter(bound, math.inf)
    while histogram_index_by_log(below := math.nextafter(bound, 0.0)) >= index:
        bound = below
    return bound


HISTOGRAM_BOUNDS: Final = tuple(_lowest_of(index) for index in range(1, HISTOGRAM_BUCKETS))
"""``HISTOGRAM_BOUNDS[k - 1]``: the least response time in bucket ``k`` (or above), exactly."""
_TOP_BOUND: Final = HISTOGRAM_BOUNDS[-1]


def histogram_index(seconds: float) -> int:
    """The histogram bucket for a response time: ``histogram_index_by_log``'s, by bisection.

    At or past the last bound (and for NaN) the definition answers, errors included.
    """
    if seconds < _TOP_BOUND:
        return bisect.bisect_right(HISTOGRAM_BOUNDS, seconds)
    return histogram_index_by_log(seconds)


def histogram_value(index: int) -> float:
    """Representative value of a bucket: its geometric midpoint (bucket 0: half the base)."""
    if index == 0:
        return HISTOGRAM_BASE_SECONDS / 2
    return float(HISTOGRAM_BASE_SECONDS * HISTOGRAM_GROWTH ** (index - 0.5))


def _hour(moment: datetime) -> int:
    return int(moment.timestamp()) // HOUR_SECONDS


def _bucket(service: ServiceProjection, hour: int) -> HourBucket:
    bucket = service.buckets.open.get(hour)
    if bucket is None:
        bucket = service.buckets.bucket(hour)
    return bucket


def _last_seconds(service: ServiceProjection) -> float:
    """``service.last_check.timestamp()``, from the fold's cache while it is that datetime's."""
    last_check = service.last_check
    assert last_check is not None  # noqa: S101 - only called after a first check
    cached = service.last_check_seconds
    if cached is not None and cached[0] is last_check:
        return cached[1]
    return last_check.timestamp()


def _credit(service: ServiceProjection, state: Status, start: datetime, end: datetime) -> None:
    """Add ``[start, end)`` of ``state`` to the hourly buckets, split at hour boundaries."""
    _credit_seconds(service, state, start, end, start.timestamp(), end.timestamp())


def _credit_seconds(  # noqa: PLR0917 - hot: positional is the cheapest call
    service: ServiceProjection,
    state: Status,
    start: datetime,
    end: datetime,
    cursor: float,
    stop: float,
) -> None:
    """``_credit`` given ``start`` and ``end`` as Unix seconds too (``cursor`` and ``stop``)."""
    index = _INDEX[state]
    if stop > cursor:
        service.totals[index] += stop - cursor
        if state is Status.DOWN or state is Status.UNKNOWN:
            _credit_incident(service, state, end - start)
    _credit_hours(service, index, cursor, stop)


def _credit_hours(service: ServiceProjection, index: int, cursor: float, stop: float) -> None:
    """Add ``[cursor, stop)`` (Unix seconds) to the state ``index`` of the hours it spans."""
    while cursor < stop:
        hour = int(cursor) // HOUR_SECONDS
        boundary = min(stop, (hour + 1) * HOUR_SECONDS)
        _bucket(service, hour).seconds[index] += boundary - cursor
        cursor = boundary


def _credit_incident(service: ServiceProjection, state: Status, span: timedelta) -> None:
    """Down or unknown time while an incident is open is that incident's (other time is no one's)."""
    incidents = service.incidents
    if not incidents or incidents[-1].end is not None:
        return
    incident = incidents[-1]
    if state is Status.DOWN:
        incident.down += span
    else:
        incident.unknown += span


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


_SURELY_BEFORE_SECONDS: Final = 0.001
"""Times this far apart in float seconds are ordered the same as datetimes: a float of Unix seconds
is within 2^-15 s of its datetime up to year 9999, and ``timedelta(seconds=gap)`` within 0.5 µs."""
_FLOAT_PATH_UNTIL_SECONDS: Final = datetime(9999, 1, 1, tzinfo=UTC).timestamp()
"""The float comparison is used while the last check plus its gap is before this (so the datetime
sum it stands for exists); past it, or for a NaN gap, the datetime arithmetic answers."""


def _credit_until(service: ServiceProjection, at: datetime, at_seconds: float) -> None:
    """Credit the time since the last check: its status while credible, then ``unknown``.

    ``at_seconds`` is ``at.timestamp()``. A check well inside the last one's credibility window
    (nearly every check) is told by comparing floats, with no datetime arithmetic.
    """
    last_check, status = service.last_check, service.status
    if last_check is None or status is None:
        service.first_check = at
        return
    last_seconds = _last_seconds(service)
    gap = service.gap_seconds
    if (
        at_seconds + gap < _FLOAT_PATH_UNTIL_SECONDS
        and at_seconds - last_seconds < gap - _SURELY_BEFORE_SECONDS
    ):
        _credit_seconds(service, status, last_check, at, last_seconds, at_seconds)
        return
    credible_until = min(at, last_check + timedelta(seconds=gap))
    until_seconds = credible_until.timestamp()
    _credit_seconds(service, status, last_check, credible_until, last_seconds, until_seconds)
    if credible_until < at:
        _enter(service, Status.UNKNOWN, credible_until)
        _credit_seconds(service, Status.UNKNOWN, credible_until, at, until_seconds, at_seconds)


def _first_count(service: ServiceProjection, location: str, slot: datetime) -> bool:
    """Remember ``slot``; ``False`` when that check was counted already (or is too old)."""
    key = round(slot.timestamp() * 1000)  # slots have millisecond precision: exact
    recent = service.recent_slots.get(location)
    if recent is None:
        service.recent_slots[location] = [key]
        return True
    if key > recent[-1]:  # the usual case: the newest slot yet
        recent.append(key)
        if len(recent) > RECENT_SLOTS:
            del recent[0]
        return True
    if len(recent) >= RECENT_SLOTS and key < recent[0]:
        return False
    index = bisect.bisect_left(recent, key)
    if index < len(recent) and recent[index] == key:
        return False
    recent.insert(index, key)
    if len(recent) > RECENT_SLOTS:
        del recent[0]
    return True


def apply(state: ProjectionState, obs: Observation) -> ProjectionState:
    """Fold one observation into the projection (a check already counted changes nothing)."""
    return apply_check(
        state,
        obs.service,
        obs.at,
        obs.status,
        obs.response_seconds,
        obs.gap_seconds,
        obs.location,
        obs.slot,
        obs.quorum,
        obs.locations,
    )


def apply_check(  # noqa: PLR0917 - an Observation's fields in its order: a replay builds none
    state: ProjectionState,
    name: str,
    at: datetime,
    status: Status,
    response_seconds: float,
    gap_seconds: float,
    location: str = "default",
    slot: datetime | None = None,
    quorum: int = 1,
    locations: tuple[str, ...] = (),
) -> ProjectionState:
    """``apply`` of ``Observation(name, at, …)``, given its fields in the same order.

    What a replay calls for each decoded check: the fold without an object per check.
    """
    service = state.services.get(name)
    if service is None:
        service = state.services[name] = ServiceProjection(name)
    if service.rolled_through is not None and at <= service.rolled_through:
        return state  # folded in already, by a rollup: the raw event is awaiting its removal
    service.folded += 1
    if slot is not None and not _first_count(service, location, slot):
        service.repeated_checks += 1
        return state
    quorum_of = locations or (location,)
    horizon_seconds = state.retention_seconds
    if not service.locations:
        if service.location is None:
            service.location = location
        if service.location == location and len(quorum_of) == 1 and quorum_of[0] == location:
            service.quorum, service.quorum_of = quorum, quorum_of
            _check(service, at, status, response_seconds, gap_seconds, horizon_seconds)
            return state
        split(service)
    service.quorum, service.quorum_of = quorum, quorum_of
    checked_at = at  # the location's own record clamps it to its own last check
    if service.last_check is not None and at < service.last_check:
        at = service.last_check  # the service's timeline never runs backwards
    if service.last_check is None:
        service.first_check = at
    else:
        _advance(service, at)
    record = service.locations.get(location)
    if record is None:
        record = service.locations[location] = ServiceProjection(name)
    _check(record, checked_at, status, response_seconds, gap_seconds, horizon_seconds)
    _transition(service, _status_at(service, at), at)
    at_seconds = at.timestamp()
    service.last_check = at
    service.last_check_seconds = (at, at_seconds)
    service.last_response_seconds = response_seconds
    _count(service, at_seconds, status, response_seconds, horizon_seconds)
    return state


@dataclass(slots=True)
class _Lane:
    """A single-location service folded in integer microseconds: its last check is ``last_us``."""

    service: ServiceProjection
    location: str
    quorum_of: tuple[str, ...]
    recent: list[int]
    last_us: int
    last_seconds: float
    moved: bool = False
    """``service.last_check`` is behind ``last_us`` (``Lanes.flush`` sets it)."""


class Lanes:
    """``apply_check`` for a bulk replay, in integer microseconds while a service's checks continue.

    Nearly every check of a replay continues its service's last verdict: the same status, up or
    degraded, within its credibility, of a newer slot, in the same hour. ``digest`` folds such a
    check from the digest's integers (``events.unpack_digest``) — the same float operations as
    ``apply_check``'s ``_continued``, in the same order — without making its two datetimes; only
    ``last_check`` is left behind, and ``flush`` makes it once for the whole run of checks. Any other
    check flushes its service's lane and goes through ``apply_check``. The record after ``flush``
    is exactly ``apply_check``'s (``tests/projector/test_lanes.py``); until then only the folding
    code may look at it, so a caller flushes before anything else reads or changes the state.
    """

    __slots__ = ("_lanes", "_state")

    def __init__(self, state: ProjectionState) -> None:
        """Lanes over ``state``; none open."""
        self._state = state
        self._lanes: dict[str, _Lane] = {}

    def digest(  # noqa: PLR0917 - a digest's fields: a replay builds nothing per check
        self,
        name: str,
        status: Status,
        at_us: int,
        lead_us: int,
        response_seconds: float,
        gap_seconds: float,
        location: str,
        quorum: int,
        quorum_of: tuple[str, ...],
    ) -> None:
        """``apply_check`` of a check at ``at_us`` µs since the epoch, scheduled ``lead_us`` before."""
        lane = self._lanes.get(name)
        if lane is not None and _continue(
            lane, status, at_us, lead_us, response_seconds, gap_seconds, location, quorum, quorum_of
        ):
            return
        at = from_micros(at_us)  # OverflowError for a time out of range, as before
        slot = at - timedelta(0, 0, lead_us)
        self.check(
            name, at, status, response_seconds, gap_seconds, location, slot, quorum, quorum_of
        )

    def check(  # noqa: PLR0917 - apply_check's arguments
        self,
        name: str,
        at: datetime,
        status: Status,
        response_seconds: float,
        gap_seconds: float,
        location: str,
        slot: datetime | None,
        quorum: int,
        quorum_of: tuple[str, ...],
    ) -> None:
        """``apply_check`` itself, after the service's lane is flushed; then its lane reopens."""
        lane = self._lanes.pop(name, None)
        if lane is not None:
            _flush(lane)
        apply_check(
            self._state,
            name,
            at,
            status,
            response_seconds,
            gap_seconds,
            location,
            slot,
            quorum,
            quorum_of,
        )
        service = self._state.services[name]
        last_check = service.last_check
        if (
            service.locations
            or service.location is None
            or service.rolled_through is not None
            or last_check is None
            or (recent := service.recent_slots.get(service.location)) is None
        ):
            return
        self._lanes[name] = _Lane(
            service,
            service.location,
            service.quorum_of,
            recent,
            to_micros(last_check),
            _last_seconds(service),
        )

    def flush(self) -> None:
        """Every record whole again (each ``last_check`` made); the lanes stay open."""
        for lane in self._lanes.values():
            _flush(lane)

    def close(self) -> None:
        """``flush``, and forget every lane (before anything but ``Lanes`` changes the state)."""
        self.flush()
        self._lanes.clear()


def _flush(lane: _Lane) -> None:
    if lane.moved:
        at = from_micros(lane.last_us)
        lane.service.last_check = at
        lane.service.last_check_seconds = (at, lane.last_seconds)
        lane.moved = False


def _continue(  # noqa: PLR0917 - Lanes.digest's arguments
    lane: _Lane,
    status: Status,
    at_us: int,
    lead_us: int,
    response_seconds: float,
    gap_seconds: float,
    location: str,
    quorum: int,
    quorum_of: tuple[str, ...],
) -> bool:
    """``apply_check`` of a check that continues the lane's last verdict, if it does.

    ``False``, having changed nothing, for any other check (see ``Lanes``).
    """
    service = lane.service
    if (
        status is not service.status
        or status is not service.open_state
        or status is Status.DOWN
        or at_us < lane.last_us
        or location != lane.location
        or quorum != service.quorum
        or quorum_of != lane.quorum_of
        or service.rolled_through is not None
    ):
        return False
    at_seconds = at_us / 1_000_000  # datetime.timestamp(): the same division, so the same float
    key = round((at_us - lead_us) / 1_000_000 * 1000)  # _first_count's, of the same float
    recent = lane.recent
    if key <= recent[-1]:
        return False
    last_seconds, gap = lane.last_seconds, service.gap_seconds
    span = at_seconds - last_seconds
    hour = int(at_seconds) // HOUR_SECONDS
    if not (
        at_seconds + gap < _FLOAT_PATH_UNTIL_SECONDS
        and span < gap - _SURELY_BEFORE_SECONDS
        and hour <= service.pruned_hour
    ):
        return False
    # apply_check from here, as it goes for such a check (_first_count, _check, _continued, _tally).
    service.folded += 1
    recent.append(key)
    if len(recent) > RECENT_SLOTS:
        del recent[0]
    service.quorum_of = quorum_of
    index = _INDEX[status]
    if span > 0:
        service.totals[index] += span
        last_hour = int(last_seconds) // HOUR_SECONDS
        if at_seconds <= (last_hour + 1) * HOUR_SECONDS:
            _bucket(service, last_hour).seconds[index] += span
        else:
            _credit_hours(service, index, last_seconds, at_seconds)
    lane.last_us, lane.last_seconds, lane.moved = at_us, at_seconds, True
    service.gap_seconds = gap_seconds
    service.last_response_seconds = response_seconds
    _tally(service, hour, status, response_seconds)  # hour <= pruned_hour: nothing to prune
    return True


def apply_inconclusive(state: ProjectionState, check: Inconclusive) -> ProjectionState:
    """Count a check that concluded nothing in its hour; it changes no status and no time.

    Not recognised by slot when stored twice (each replica that gave up on a slot counts it):
    its slot may well get a verdict from another replica, which must count.
    """
    service = state.services.get(check.service)
    if service is None:
        service = state.services[check.service] = ServiceProjection(check.service)
    if service.rolled_through is not None and check.at <= service.rolled_through:
        return state  # in a rollup already
    service.folded += 1
    _bucket(service, _hour(check.at)).inconclusive += 1
    return state


def fold_check(state: ProjectionState, check: Observation | Inconclusive) -> ProjectionState:
    """``apply`` or ``apply_inconclusive``, whichever ``check`` is."""
    if isinstance(check, Observation):
        return apply(state, check)
    return apply_inconclusive(state, check)


def _check(  # noqa: PLR0917 - an observation's fields, as apply_check takes them
    service: ServiceProjection,
    at: datetime,
    status: Status,
    response_seconds: float,
    gap_seconds: float,
    horizon_seconds: float,
) -> None:
    """One location's check on its own record: credit the time since its last check, then step."""
    last_check = service.last_check
    if last_check is not None and at < last_check:
        at = last_check  # clocks stepped back: never count negative time
        at_seconds = _last_seconds(service)
    else:
        at_seconds = at.timestamp()
    if not _continued(service, status, at_seconds):
        _credit_until(service, at, at_seconds)
        _transition(service, status, at)
    service.last_check = at
    service.last_check_seconds = (at, at_seconds)
    service.gap_seconds = gap_seconds
    service.last_response_seconds = response_seconds
    _count(service, at_seconds, status, response_seconds, horizon_seconds)


def _continued(service: ServiceProjection, status: Status, at_seconds: float) -> bool:
    """Credit the time up to ``at_seconds`` if the check just continues the last verdict.

    The usual check: the same verdict, up or degraded, open since before, the last one still
    credible. Then ``_credit_until`` and ``_transition`` come down to adding the time since the
    last check to its state, which this does (the same float operations, in the same order).
    ``False``, having changed nothing, for any other check.
    """
    last_check = service.last_check
    if (
        status is not service.status
        or status is not service.open_state
        or status is Status.DOWN
        or last_check is None
    ):
        return False
    cached = service.last_check_seconds  # _last_seconds, inlined
    last_seconds = (
        cached[1] if cached is not None and cached[0] is last_check else last_check.timestamp()
    )
    gap = service.gap_seconds
    span = at_seconds - last_seconds
    if not (at_seconds + gap < _FLOAT_PATH_UNTIL_SECONDS and span < gap - _SURELY_BEFORE_SECONDS):
        return False
    if span > 0:
        index = _INDEX[status]
        service.totals[index] += span
        hour = int(last_seconds) // HOUR_SECONDS
        if at_seconds <= (hour + 1) * HOUR_SECONDS:
            bucket = service.buckets.open.get(hour)
            if bucket is None:
                bucket = service.buckets.bucket(hour)
            bucket.seconds[index] += span
        else:
            _credit_hours(service, index, last_seconds, at_seconds)
    return True


def _transition(service: ServiceProjection, status: Status, at: datetime) -> None:
    """``status`` holds from ``at``: a new period, and an incident opened or closed on a change.

    ``unknown`` is the absence of a verdict, not a verdict: it opens a period of its own but leaves
    the last status, its ``since`` and any open incident as they are.
    """
    _enter(service, status, at)
    if status is Status.UNKNOWN:
        return
    previous = service.status
    if status is not previous:
        service.since = at
        if status is Status.DOWN:
            incidents = service.incidents
            if incidents and incidents[-1].end == at:  # it ended this instant: still the same one
                incidents[-1].end = None
            else:
                incidents.append(Incident(start=at))
        elif previous is Status.DOWN and service.incidents:
            service.incidents[-1].end = at
    service.status = status


def _count(
    service: ServiceProjection,
    at_seconds: float,
    status: Status,
    response_seconds: float,
    horizon_seconds: float,
) -> None:
    """The check (at ``at_seconds``, Unix) in its hour's counts and response-time histogram."""
    hour = int(at_seconds) // HOUR_SECONDS
    if hour > service.pruned_hour:
        # Once per service-hour: cheap enough to prune here, and retention is days, not minutes.
        service.pruned_hour = hour
        prune(service, horizon_seconds)
    _tally(service, hour, status, response_seconds)


def _tally(service: ServiceProjection, hour: int, status: Status, response_seconds: float) -> None:
    """The check in its hour's counts and response-time histogram (``_count`` without pruning)."""
    bucket = service.buckets.open.get(hour)
    if bucket is None:
        bucket = service.buckets.bucket(hour)
    bucket.checks[_INDEX[status]] += 1
    if status is not Status.DOWN:
        bucket.response_sum_seconds += response_seconds
        index = (  # histogram_index, inlined
            bisect.bisect_right(HISTOGRAM_BOUNDS, response_seconds)
            if response_seconds < _TOP_BOUND
            else histogram_index_by_log(response_seconds)
        )
        bucket.histogram[index] = bucket.histogram.get(index, 0) + 1


def split(service: ServiceProjection) -> None:
    """A second location appears: the single record's history becomes its location's too.

    Except the inconclusive counts: they are the service's (``apply_inconclusive``), so an hour
    that holds nothing else is not copied.
    """
    location = service.location or "default"
    service.locations[location] = ServiceProjection(
        name=service.name,
        status=service.status,
        since=service.since,
        last_check=service.last_check,
        gap_seconds=service.gap_seconds,
        first_check=service.first_check,
        periods=copy.deepcopy(service.periods),
        open_state=service.open_state,
        open_start=service.open_start,
        buckets=_without_inconclusive(service.buckets, service.pruned_hour),
        incidents=copy.deepcopy(service.incidents),
        last_response_seconds=service.last_response_seconds,
        totals=list(service.totals),
        location=location,
        pruned_hour=service.pruned_hour,
    )
    service.location = None


def _without_inconclusive(buckets: Hours, pruned_hour: int) -> Hours:
    """``buckets`` without their inconclusive counts, and without the hours that held only those."""
    copied = Hours()
    for hour, b in buckets.items():
        if b.histogram or any(b.checks) or any(b.seconds):
            copied[hour] = HourBucket(
                checks=list(b.checks),
                seconds=list(b.seconds),
                response_sum_seconds=b.response_sum_seconds,
                histogram=dict(b.histogram),
            )
    copied.pack(pruned_hour - 1)
    return copied


def credible(service: ServiceProjection) -> list[tuple[Status, datetime, datetime]]:
    """Each counted location's last verdict and the span it is credible for."""
    found = []
    for name in service.quorum_of:
        record = service.locations.get(name)
        if record is not None and record.status is not None and record.last_check is not None:
            until = record.last_check + timedelta(seconds=record.gap_seconds)
            found.append((record.status, record.last_check, until))
    return found


def _status_at(service: ServiceProjection, at: datetime) -> Status:
    verdicts = credible(service)
    return verdict(
        (s if start <= at < until else None for s, start, until in verdicts), service.quorum
    )


def quorum_spans(service: ServiceProjection, start: datetime, end: datetime) -> Iterator[Period]:
    """The quorum status over ``[start, end)`` with no new check.

    It changes only where a location's verdict stops being credible.
    """
    verdicts = credible(service)
    breaks = sorted({until for _, _, until in verdicts if start < until < end})
    cursor = start
    for point in (*breaks, end):
        if point <= cursor:
            continue
        status = verdict(
            (s if begun <= cursor < until else None for s, begun, until in verdicts),
            service.quorum,
        )
        yield Period(status, cursor, point)
        cursor = point


def _advance(service: ServiceProjection, at: datetime) -> None:
    """Credit the quorum timeline from the last check up to ``at`` (no check in between)."""
    assert service.last_check is not None  # noqa: S101 - only called after a first check
    for period in quorum_spans(service, service.last_check, at):
        if period.state is not service.open_state:
            _transition(service, period.state, period.start)
        _credit(service, period.state, period.start, period.end)


def prune(service: ServiceProjection, horizon_seconds: float) -> None:
    """Drop what lies entirely ``horizon_seconds`` before the start of ``pruned_hour``.

    The horizon moves in whole hours, so a record pruned at each new hour and one pruned once
    after many hours (a rollup applied) keep exactly the same.
    """
    if service.pruned_hour > _NEVER:
        _prune(service, epoch(service.pruned_hour * HOUR_SECONDS - horizon_seconds))
        pack(service)


def pack(service: ServiceProjection) -> None:
    """Pack the record's closed hours: all but the newest counted one and the one before it."""
    service.buckets.pack(service.pruned_hour - 1)


def _prune(service: ServiceProjection, horizon: datetime) -> None:
    """Drop what is entirely older than ``horizon`` (cheap: only when there is some)."""
    service.periods.drop_ended_before(horizon)
    service.buckets.prune(_hour(horizon))
    service.incidents.drop_ended_before(horizon)


# --- queries -------------------------------------------------------------------------------------


def spans(
    service: ServiceProjection, now: datetime, since: datetime | None = None
) -> Iterator[Period]:
    """State spans up to ``now``, oldest first, including the open one and what follows it.

    After the last check comes a trailing unknown once its verdict is stale; for a quorum, whatever
    the locations' verdicts still say.

    With ``since``, closed periods that ended at or before it are skipped (found by bisection: they
    are in time order), so a 24-hour query on a long-flapping service does not walk 90 days.
    """
    periods = service.periods
    yield from periods.since(0 if since is None else periods.ending_after(since))
    if service.open_state is None or service.open_start is None or service.last_check is None:
        return
    yield from _open_spans(service, now)


def _open_spans(service: ServiceProjection, now: datetime) -> Iterator[Period]:
    """The open period from its start, and what follows the last check up to ``now``."""
    open_state, open_start, last_check = service.open_state, service.open_start, service.last_check
    if open_state is None or open_start is None or last_check is None:
        return
    if service.by_quorum:
        pending = Period(open_state, open_start, max(open_start, min(now, last_check)))
        for period in quorum_spans(service, max(last_check, open_start), now):
            if period.state is pending.state:
                pending = Period(pending.state, pending.start, period.end)
                continue
            if pending.end > pending.start:
                yield pending
            pending = period
        if pending.end > pending.start:
            yield pending
        return
    credible_until = last_check + timedelta(seconds=service.gap_seconds)
    if open_state is Status.UNKNOWN:
        yield Period(Status.UNKNOWN, open_start, max(now, open_start))
        return
    end = min(now, credible_until)
    if end > open_start:
        yield Period(open_state, open_start, end)
    if now > credible_until:
        yield Period(Status.UNKNOWN, max(credible_until, open_start), now)


def seconds_in_window(
    service: ServiceProjection,
    start: datetime,
    now: datetime,
    excluded: Sequence[Interval] = (),
) -> dict[Status, float]:
    """Exact time-weighted seconds per state within ``[start, now)``, outside ``excluded``.

    Whatever no credible check covers — before the first check, silent gaps, the stale tail — is
    ``unknown``, so the four figures and the excluded time (maintenance: sorted, merged intervals)
    always add up to the window's length.
    """
    totals = dict.fromkeys(STATE_ORDER, 0.0)
    if excluded:
        periods: Iterator[Period] = spans(service, now, since=start)
    else:  # the closed periods straight from their arrays, the same sums in the same order
        service.periods.credit(totals, start, now)
        periods = _open_spans(service, now)
    for period in periods:
        if period.state is Status.UNKNOWN:
            continue
        lo = max(period.start, start)
        hi = min(period.end, now)
        if hi <= lo:
            continue
        if not excluded:
            totals[period.state] += (hi - lo).total_seconds()
            continue
        for part_lo, part_hi in outside(lo, hi, excluded):
            totals[period.state] += (part_hi - part_lo).total_seconds()
    known = totals[Status.UP] + totals[Status.DEGRADED] + totals[Status.DOWN]
    hidden = sum(max(0.0, (min(hi, now) - max(lo, start)).total_seconds()) for lo, hi in excluded)
    totals[Status.UNKNOWN] = max(0.0, (now - start).total_seconds() - known - hidden)
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
    for period in _uncredited(service, now):
        totals[_INDEX[period.state]] += (period.end - period.start).total_seconds()
    return totals


def _uncredited(service: ServiceProjection, now: datetime) -> Iterator[Period]:
    """The stretch from the last check to ``now``, as the next check will credit it.

    The last verdict while credible, then ``unknown``; for a quorum, the rule over the locations'
    verdicts as they go stale. Empty before the first check or when ``now`` is not after the last.
    """
    last_check = service.last_check
    if last_check is None or service.status is None or now <= last_check:
        return
    if service.by_quorum:
        yield from quorum_spans(service, last_check, now)
        return
    credible_until = min(now, last_check + timedelta(seconds=service.gap_seconds))
    yield Period(service.status, last_check, credible_until)
    if now > credible_until:
        yield Period(Status.UNKNOWN, credible_until, now)


@dataclass(frozen=True, slots=True)
class IncidentTime:
    """An incident's end and its split into observed down and unknown seconds, as of a query."""

    end: datetime | None
    """``None`` while it is still going on."""
    down_seconds: float
    unknown_seconds: float


def incident_time(service: ServiceProjection, incident: Incident, now: datetime) -> IncidentTime:
    """Where ``incident`` ends and how its time splits, to its end or to ``now`` while open.

    An open incident's stretch since the last check counts by the rule the next check will apply:
    down while the last verdict is credible, then unknown, so the two add up to ``now - start``.
    For a quorum, a location's verdict going stale can end the outage without a new check (two of
    three down, one of them goes quiet: degraded); the incident then ends there, as the next check
    will record. Should ``now`` precede the last check (clocks that disagree), the split is
    clipped to ``now - start``.
    """
    down, unknown = incident.down, incident.unknown
    if incident.end is not None:
        return IncidentTime(incident.end, down.total_seconds(), unknown.total_seconds())
    end = None
    for period in _uncredited(service, now):
        if period.state is Status.DOWN:
            down += period.end - period.start
        elif period.state is Status.UNKNOWN:
            unknown += period.end - period.start
        else:
            end = period.start
            break
    span = max(timedelta(0), (end or now) - incident.start)
    if down + unknown > span:
        down = min(down, span)
        unknown = span - down
    return IncidentTime(end, down.total_seconds(), unknown.total_seconds())


def status_at(service: ServiceProjection, now: datetime) -> Status:
    """The status at ``now`` (not before the last check).

    The last verdict while credible, else unknown; for a quorum, the rule over the locations'
    verdicts still credible at ``now``.
    """
    if service.status is None or service.last_check is None:
        return Status.UNKNOWN
    if service.by_quorum:
        return _status_at(service, now)
    if now > service.last_check + timedelta(seconds=service.gap_seconds):
        return Status.UNKNOWN
    return service.status


def last_verdict(service: ServiceProjection, at: datetime) -> Status | None:
    """The last verdict (up, degraded or down) in force at ``at``: a stale one still counts.

    What the service was last seen as — the rule dependencies use, so a parent whose checks went
    quiet while down still holds its children's alerts back.
    """
    if (
        service.open_state is not None
        and service.open_start is not None
        and service.open_start <= at
    ):
        if service.open_state is not Status.UNKNOWN:
            return service.open_state
        index = len(service.periods)
    else:
        index = service.periods.starting_after(at)
    periods = service.periods
    for back in range(index - 1, -1, -1):
        if periods[back].state is not Status.UNKNOWN:
            return periods[back].state
    return None


def next_change(service: ServiceProjection, now: datetime) -> datetime | None:
    """The next instant after ``now`` at which the status changes without a new check, if any."""
    if service.last_check is None:
        return None
    if service.by_quorum:
        later = [until for _, _, until in credible(service) if until > now]
        return min(later, default=None)
    until = service.last_check + timedelta(seconds=service.gap_seconds)
    return until if until > now else None


def epoch(seconds: float) -> datetime:
    """UTC datetime from a Unix timestamp."""
    return datetime.fromtimestamp(seconds, UTC)
