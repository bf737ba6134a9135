"""Rollups: what the raw checks of a stretch of history did to the projection, kept when they go.

An event per check is what makes the figures exact, and what makes the log grow. Past
``[store] raw_retention_days`` the compactor (``history.compactor``) folds a service's oldest raw
checks, exactly as the projector folds them, and writes what they changed as one
``ServiceUptimeRolledUp`` event to ``system-uptime-rollup-{service}``; then the raw events are
removed. The event holds the hourly buckets the stretch touched (time-weighted seconds per state,
check counts, response-time histogram), every transition (status period) and incident it made
whole, and the record's state at its end (status, last check, totals, the recent slots that
recognise a repeated check, the quorum) — for the service and for each of its locations.

Applying it to the record as it stood before the stretch gives, bit for bit, the record the raw
checks gave: buckets are set (never added to), periods and incidents from the stretch's first one
on are replaced, the state is set, and retention is measured from the same hour. So a replay from
zero over rollups and the raw events left equals the replay of the raw log, for every window —
not an approximation (``tests/projector/test_rollup.py`` holds it as a property).

Two rules keep it exact whatever order the log is read in:

* A rollup cuts the service's stream cleanly: every check in it is older than every check after
  it (the compactor picks such a cut). Its ``rolled_through`` is its newest check time; a raw
  check at or before it is skipped by ``fold.apply`` (it is in the rollup already, waiting to be
  removed — KurrentDB's ``$all`` shows truncated events until a scavenge).
* The projector folds rollups first (``Projector.fold_rollups``), then the log: a rollup is
  appended after raw events newer than it. One whose checks the record has folded already (the
  live projection saw them) changes nothing but ``rolled_through``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import orjson

from uptime_daemon.clock import parse_iso, to_iso_micros
from uptime_daemon.projector import snapshot
from uptime_daemon.projector.fold import (
    HOUR_SECONDS,
    Inconclusive,
    Observation,
    ProjectionState,
    ServiceProjection,
    fold_check,
    prune,
    split,
)
from uptime_daemon.projector.periods import Incidents, Periods

ROLLUP_STREAM_PREFIX: Final = "system-uptime-rollup-"
EVENT_TYPE_ROLLUP: Final = "ServiceUptimeRolledUp"
SCHEMA_VERSION: Final = 1
KEEP_EVERYTHING: Final = 50 * 365 * 86_400.0
"""The compactor's retention: longer than any stretch it folds, so it prunes nothing."""

_STATE_FIELDS: Final = (
    "status",
    "since",
    "last_check",
    "gap_seconds",
    "first_check",
    "open_state",
    "open_start",
    "last_response_seconds",
    "totals",
    "recent_slots",
    "repeated_checks",
    "location",
    "quorum",
    "quorum_of",
    "pruned_hour",
    "folded",
    "rolled_through",
)
"""A record's state apart from its history (buckets, periods, incidents, locations)."""


class RollupDecodeError(ValueError):
    """A rollup event that cannot be used."""


@dataclass(frozen=True, slots=True)
class Rollup:
    """One ``ServiceUptimeRolledUp`` event."""

    service: str
    rolled_through: datetime | None
    """The newest check time folded in (``None``: the stretch held no check with a verdict)."""
    from_revision: int
    through_revision: int
    """The raw stream's revisions the stretch covered, at the time it was rolled up (an import
    into another store renumbers them; nothing depends on them but the operator's eye)."""
    record: ServiceProjection
    """The changes: the stretch's buckets, periods and incidents, and the state at its end."""


def rollup_stream(service: str) -> str:
    """The stream a service's rollups go to."""
    return f"{ROLLUP_STREAM_PREFIX}{service}"


def encode(rollup: Rollup) -> bytes:
    """The event's data: JSON, with times and seconds exactly as the fold holds them."""
    return orjson.dumps(
        {
            "serviceName": rollup.service,
            "schemaVersion": SCHEMA_VERSION,
            "rolledThrough": None
            if rollup.rolled_through is None
            else to_iso_micros(rollup.rolled_through),
            "fromRevision": rollup.from_revision,
            "throughRevision": rollup.through_revision,
            "record": snapshot.encode_record(rollup.record),
        }
    )


def decode(data: bytes) -> Rollup:
    """Parse a rollup event's data; ``RollupDecodeError`` when it cannot be trusted."""
    try:
        raw: dict[str, Any] = orjson.loads(data)
        version = raw["schemaVersion"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise RollupDecodeError(f"corrupt rollup: {type(exc).__name__}: {exc}") from exc
    if version != SCHEMA_VERSION:
        raise RollupDecodeError(f"rollup schemaVersion {version!r} unknown")
    try:
        service = str(raw["serviceName"])
        through = raw["rolledThrough"]
        return Rollup(
            service=service,
            rolled_through=None if through is None else parse_iso(str(through)),
            from_revision=int(raw["fromRevision"]),
            through_revision=int(raw["throughRevision"]),
            record=snapshot.decode_record(service, raw["record"]),
        )
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise RollupDecodeError(f"corrupt rollup: {type(exc).__name__}: {exc}") from exc


# --- computing a rollup (the compactor) ----------------------------------------------------------


def roll_up(
    previous: Rollup | None,
    service: str,
    observations: Iterable[Observation | Inconclusive],
    *,
    from_revision: int,
    through_revision: int,
) -> Rollup:
    """Fold the next stretch of a service's checks (in log order) after ``previous``.

    The stretch must end at a clean cut: every check in it older than every check after it.
    Nothing is pruned here (``KEEP_EVERYTHING``): what the stretch made is all in the rollup, and
    the projector prunes it by its own retention when it applies it, as the raw fold would have.
    """
    before = None if previous is None else tail(previous.record)
    record = ServiceProjection(service) if before is None else copy.deepcopy(before)
    record.rolled_through = None if previous is None else previous.rolled_through
    state = ProjectionState(services={service: record}, retention_seconds=KEEP_EVERYTHING)
    through = record.rolled_through
    for observation in observations:
        fold_check(state, observation)
        if through is None or observation.at > through:
            through = observation.at
    after = state.services[service]
    after.rolled_through = through
    return Rollup(service, through, from_revision, through_revision, changes(before, after))


def changes(before: ServiceProjection | None, after: ServiceProjection) -> ServiceProjection:
    """What folding a stretch of checks onto ``before`` made of it (``after``), as a record.

    ``before`` is a ``tail`` (or ``None``: nothing folded yet), so every period and incident of
    ``after`` came from the stretch or is the one still open. Buckets: those the stretch changed,
    plus those the next stretch can touch (``_tail_hour`` on: it continues there).
    """
    found = ServiceProjection(after.name)
    _copy_state(after, found)
    tail_hour = _tail_hour(after)
    for hour, bucket in after.buckets.items():
        if (before is None or before.buckets.get(hour) != bucket) or (
            tail_hour is not None and hour >= tail_hour
        ):
            found.buckets[hour] = copy.deepcopy(bucket)
    found.periods = copy.deepcopy(after.periods)
    found.incidents = copy.deepcopy(after.incidents)
    for where, record in after.locations.items():
        found.locations[where] = changes(_location_before(before, where), record)
    return found


def tail(record: ServiceProjection) -> ServiceProjection:
    """The least of a record the fold needs to go on folding checks after its last one.

    Its state, the buckets the next stretch can touch (``_tail_hour`` on) and
    its open incident (down and unknown time go to it); no periods (only appended to).
    """
    light = ServiceProjection(record.name)
    _copy_state(record, light)
    tail_hour = _tail_hour(record)
    if tail_hour is not None:
        for hour, bucket in record.buckets.items():
            if hour >= tail_hour:
                light.buckets[hour] = copy.deepcopy(bucket)
    light.incidents = Incidents(copy.deepcopy(i) for i in record.incidents if i.end is None)
    light.locations = {where: tail(each) for where, each in record.locations.items()}
    return light


def _location_before(before: ServiceProjection | None, where: str) -> ServiceProjection | None:
    """A location's record before the stretch; a single record is its location's (``_split``)."""
    if before is None:
        return None
    if before.locations:
        return before.locations.get(where)
    return before if before.location == where else None


def _tail_hour(record: ServiceProjection) -> int | None:
    """The first hour the next stretch can touch.

    Its first check credits time from the last check on, and its checks are newer than the newest
    folded (an inconclusive one counts in its own hour).
    """
    moments = [m for m in (record.last_check, record.rolled_through) if m is not None]
    if not moments:
        return None
    return int(min(moments).timestamp()) // HOUR_SECONDS


def _copy_state(source: ServiceProjection, target: ServiceProjection) -> None:
    for name in _STATE_FIELDS:
        setattr(target, name, copy.copy(getattr(source, name)))
    target.totals = list(source.totals)
    target.recent_slots = {where: list(keys) for where, keys in source.recent_slots.items()}


# --- applying a rollup (the projector) -----------------------------------------------------------


def apply_rollup(state: ProjectionState, rollup: Rollup) -> bool:
    """Fold a rollup into the projection; whether it changed the record's history.

    Skipped when the record holds its checks already (the live projection folded them as raw
    events, or the rollup was applied before): then only ``rolled_through`` moves, so a raw check
    of the stretch still in the log is skipped, as a replay would skip it.
    """
    record = state.services.get(rollup.service)
    if record is None:
        record = state.services[rollup.service] = ServiceProjection(rollup.service)
    through = rollup.rolled_through
    if through is None or (record.rolled_through is not None and record.rolled_through >= through):
        return False
    changed = rollup.record
    if record.folded >= changed.folded:
        record.rolled_through = through
        return False
    _merge(record, changed, state.retention_seconds)
    record.rolled_through = through
    return True


def _merge(record: ServiceProjection, changed: ServiceProjection, horizon_seconds: float) -> None:
    """Make ``record`` what the stretch made of it.

    ``record`` is the record before the stretch, or part-way through it (a snapshot taken inside).
    """
    if changed.locations and not record.locations and record.location is not None:
        split(record)  # the stretch saw a second location: the single record's history is its
    _copy_state(changed, record)
    for hour, bucket in changed.buckets.items():
        record.buckets[hour] = copy.deepcopy(bucket)
    if changed.periods:
        first = changed.periods[0].start
        kept_periods = [p for p in record.periods if p.start < first]
        record.periods = Periods([*kept_periods, *changed.periods])
    if changed.incidents:
        first = min(incident.start for incident in changed.incidents)
        kept = [incident for incident in record.incidents if incident.start < first]
        record.incidents = Incidents([*kept, *copy.deepcopy(changed.incidents)])
    for where, each in changed.locations.items():
        target = record.locations.get(where)
        if target is None:
            target = record.locations[where] = ServiceProjection(record.name)
        _merge(target, each, horizon_seconds)
    prune(record, horizon_seconds)
