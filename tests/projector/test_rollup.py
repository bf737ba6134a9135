"""Rollups: a replay over rollups and the raw checks left equals the replay of the raw log, exactly.

The property is checked on the whole record (the snapshot encoding: every bucket, period, incident,
counter, recent slot), so every figure any window can show is equal — not only windows on hours.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from uptime_daemon.projector import rollup, snapshot
from uptime_daemon.projector.fold import (
    Inconclusive,
    Observation,
    ProjectionState,
    fold_check,
    seconds_in_window,
)
from uptime_daemon.projector.rollup import Rollup, apply_rollup, roll_up
from uptime_daemon.projector.summary import service_timeline
from uptime_daemon.status import Status

T0 = datetime(2026, 3, 2, 7, 40, 12, 345000, tzinfo=UTC)
RETENTION = 5 * 3600.0
"""Short, so the records prune inside the generated histories."""
STATUSES = (Status.UP, Status.UP, Status.UP, Status.DEGRADED, Status.DOWN)


@dataclass(frozen=True, slots=True)
class Log:
    """Checks of several services in log order, and for each service where its stream is cut."""

    checks: list[Observation | Inconclusive]
    cuts: dict[str, list[int]]
    """Service → indexes into its own checks after which a rollup ends (clean cuts only)."""


@st.composite
def logs(draw: st.DrawFn) -> Log:
    """Services with one to three locations, quorum changes, repeats, gaps, downs; then clean cuts."""
    services = draw(
        st.lists(st.sampled_from(["api", "db", "web"]), min_size=1, max_size=3, unique=True)
    )
    places = {
        name: draw(st.sampled_from([("eu",), ("eu", "us"), ("eu", "us", "ap")]))
        for name in services
    }
    at = T0
    checks: list[Observation | Inconclusive] = []
    for _ in range(draw(st.integers(min_value=1, max_value=160))):
        name = draw(st.sampled_from(services))
        where = draw(st.sampled_from(places[name]))
        step = draw(st.sampled_from([0.0, 0.4, 7.5, 20.0, 41.0, 300.0, 1900.0, 5400.0]))
        at = at + timedelta(seconds=step)
        slot = at - timedelta(seconds=draw(st.sampled_from([0.0, 0.25, 30.0])))
        if draw(st.integers(0, 14)) == 0:  # a check that concluded nothing
            checks.append(Inconclusive(name, at))
            continue
        twin = checks[-1] if checks else None
        if isinstance(twin, Observation) and draw(st.integers(0, 9)) == 0:  # a replica's copy
            checks.append(
                Observation(
                    twin.service,
                    at,
                    twin.status,
                    0.2,
                    twin.gap_seconds,
                    twin.location,
                    twin.slot,
                    twin.quorum,
                    twin.locations,
                )
            )
            continue
        of = places[name]
        if len(of) > 1 and draw(st.integers(0, 19)) == 0:
            of = of[:-1]  # a location removed from the placement
        k = draw(st.integers(min_value=1, max_value=len(of)))
        checks.append(
            Observation(
                name,
                at,
                draw(st.sampled_from(STATUSES)),
                draw(st.sampled_from([0.0004, 0.012, 0.25, 3.0])),
                draw(st.sampled_from([90.0, 150.0])),
                where,
                slot,
                k,
                of if len(of) > 1 else (),
            )
        )
    cuts = {}
    for name in services:
        own = [c for c in checks if c.service == name]
        clean = [
            i
            for i in range(len(own))
            if i + 1 == len(own)
            or max(c.at for c in own[: i + 1]) < min(c.at for c in own[i + 1 :])
        ]
        cuts[name] = (
            sorted(draw(st.lists(st.sampled_from(clean), max_size=4, unique=True))) if clean else []
        )
    return Log(checks, cuts)


def fold(
    checks: Sequence[Observation | Inconclusive], state: ProjectionState | None = None
) -> ProjectionState:
    state = state or ProjectionState(retention_seconds=RETENTION)
    for check in checks:
        fold_check(state, check)
    return state


def compact(log: Log) -> tuple[list[Rollup], dict[str, int]]:
    """What the compactor writes: each service's rollups in order, and how many checks each left out."""
    written: list[Rollup] = []
    rolled: dict[str, int] = {}
    for name, cuts in log.cuts.items():
        own = [c for c in log.checks if c.service == name]
        previous, start = None, 0
        for cut in cuts:
            previous = roll_up(
                previous,
                name,
                own[start : cut + 1],
                from_revision=start,
                through_revision=cut,
            )
            written.append(rollup.decode(rollup.encode(previous)))  # through the event's bytes
            start = cut + 1
        rolled[name] = start
    return written, rolled


def record_bytes(state: ProjectionState) -> dict[str, dict[str, object]]:
    """Each record as the snapshot stores it, less the marker of what rollups covered."""
    found = {}
    for name, service in state.services.items():
        encoded = snapshot.encode_record(service)
        encoded.pop("rolledThrough")
        found[name] = encoded
    return found


def left_after(log: Log, rolled: dict[str, int]) -> list[Observation | Inconclusive]:
    """The raw checks the compactor leaves (in log order)."""
    seen: dict[str, int] = {}
    left = []
    for check in log.checks:
        index = seen.get(check.service, 0)
        seen[check.service] = index + 1
        if index >= rolled.get(check.service, 0):
            left.append(check)
    return left


@settings(max_examples=300, deadline=None)
@given(logs())
def test_replay_over_rollups_equals_the_raw_replay(log: Log) -> None:
    """Rollups first, then the raw checks left: the very records the raw log gives."""
    expected = record_bytes(fold(log.checks))
    written, rolled = compact(log)
    state = ProjectionState(retention_seconds=RETENTION)
    for each in written:
        apply_rollup(state, each)
    assert record_bytes(fold(left_after(log, rolled), state)) == expected


def test_an_outage_across_a_quorum_change_at_one_instant_is_one_incident() -> None:
    """An outage across a quorum change at one instant: found by the property above.

    A down check, then at the same instant one that makes the service a two-location quorum (the
    outage ends there and then), then up. The raw replay had made a zero-length incident and a second one from the same instant; the
    replay over rollups, one. There is one outage: an incident that ended at the instant another
    begins goes on.
    """
    later = T0 + timedelta(seconds=0.4)
    down = Observation("api", T0, Status.DOWN, 0.0004, 90.0, "eu", T0, 1, ())
    log = Log(
        [
            down,
            Observation(
                "api",
                T0,
                Status.DOWN,
                0.0004,
                90.0,
                "eu",
                T0 - timedelta(seconds=0.25),
                2,
                ("eu", "us"),
            ),
            Observation("api", later, Status.UP, 0.0004, 90.0, "eu", later, 1, ()),
            Inconclusive("api", later),
        ],
        {"api": [1, 3]},
    )
    state = fold(log.checks)
    assert [(i.start, i.end) for i in state.services["api"].incidents] == [(T0, later)]
    written, rolled = compact(log)
    rolled_state = ProjectionState(retention_seconds=RETENTION)
    for each in written:
        apply_rollup(rolled_state, each)
    assert record_bytes(fold(left_after(log, rolled), rolled_state)) == record_bytes(state)


@settings(max_examples=200, deadline=None)
@given(logs(), st.data())
def test_raw_checks_not_yet_removed_are_skipped(log: Log, data: st.DataObject) -> None:
    """Raw checks folded after their rollups change nothing, wherever the replay resumed.

    KurrentDB's $all shows truncated events until a scavenge; a projection resumes from a snapshot
    taken anywhere — before, inside or after a rolled stretch.
    """
    expected = record_bytes(fold(log.checks))
    written, _ = compact(log)
    resumed_at = data.draw(st.integers(min_value=0, max_value=len(log.checks)))
    state = fold(log.checks[:resumed_at])
    state = snapshot.decode(snapshot.encode(snapshot.Snapshot(None, state))).state
    for each in written:
        apply_rollup(state, each)
    assert record_bytes(fold(log.checks[resumed_at:], state)) == expected


@settings(max_examples=100, deadline=None)
@given(logs())
def test_rollups_met_again_in_the_log_change_nothing(log: Log) -> None:
    """The live projection folds the raw checks, then meets their rollups: nothing changes."""
    state = fold(log.checks)
    expected = record_bytes(state)
    written, _ = compact(log)
    for each in written + written:
        assert not apply_rollup(state, each)
    assert record_bytes(state) == expected


def test_the_figures_of_a_ninety_day_window_are_unchanged() -> None:
    """A service checked every minute for five days, two outages; four days rolled up."""
    checks = []
    for minute in range(5 * 24 * 60):
        at = T0 + timedelta(minutes=minute, seconds=(minute * 7) % 3 / 10)
        down = 1000 <= minute < 1013 or 4000 <= minute < 4100
        checks.append(
            Observation(
                "api",
                at,
                Status.DOWN if down else Status.UP,
                0.05 + minute % 5 / 100,
                150.0,
                "eu",
                at,
            )
        )
    whole = fold(checks, ProjectionState())
    first = roll_up(None, "api", checks[:3000], from_revision=0, through_revision=2999)
    second = roll_up(first, "api", checks[3000:5760], from_revision=3000, through_revision=5759)
    state = ProjectionState()
    for each in (first, second):
        assert apply_rollup(state, rollup.decode(rollup.encode(each)))
    fold(checks[5760:], state)
    now = checks[-1].at + timedelta(minutes=3)
    for hours in (1, 24, 24 * 90):
        start = now - timedelta(hours=hours)
        assert seconds_in_window(state.services["api"], start, now) == seconds_in_window(
            whole.services["api"], start, now
        )
    assert service_timeline(state.services["api"], now=now, hours=24 * 90) == service_timeline(
        whole.services["api"], now=now, hours=24 * 90
    )
    assert len(rollup.encode(second)) < 20_000  # four days in ~a few KB, not 2,760 events


def test_a_rollup_is_small_per_hour() -> None:
    """An hour of a healthy service checked every minute rolls up into a few hundred bytes."""
    checks = [
        Observation(
            "api",
            T0 + timedelta(minutes=m),
            Status.UP,
            0.05,
            150.0,
            "eu",
            T0 + timedelta(minutes=m),
        )
        for m in range(24 * 60)
    ]
    day = roll_up(None, "api", checks, from_revision=0, through_revision=len(checks) - 1)
    hour = roll_up(
        day,
        "api",
        [
            Observation(
                "api",
                checks[-1].at + timedelta(minutes=m),
                Status.UP,
                0.05,
                150.0,
                "eu",
                checks[-1].at + timedelta(minutes=m),
            )
            for m in range(1, 61)
        ],
        from_revision=len(checks),
        through_revision=len(checks) + 59,
    )
    assert len(rollup.encode(hour)) < 1500
    assert rollup.decode(rollup.encode(hour)) == hour  # the event holds it exactly
