"""The fold's fast paths give exactly what the definitions give: bucket indices, credited seconds."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uptime_daemon.projector import fold, snapshot
from uptime_daemon.projector.fold import (
    HISTOGRAM_BASE_SECONDS,
    HISTOGRAM_BOUNDS,
    HISTOGRAM_BUCKETS,
    HISTOGRAM_GROWTH,
    Observation,
    ProjectionState,
    apply,
    apply_check,
    histogram_index,
    histogram_index_by_log,
)
from uptime_daemon.status import Status

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
UP, DEG, DOWN = Status.UP, Status.DEGRADED, Status.DOWN


def _outcome(index_of: Callable[[float], int], seconds: float) -> int | str:
    """The index, or the name of the error raised (the definition raises for inf and NaN)."""
    try:
        return index_of(seconds)
    except (ValueError, OverflowError) as exc:
        return type(exc).__name__


def _around(value: float, steps: int = 3) -> list[float]:
    """``value`` and its ``steps`` float neighbours on either side."""
    found = [value]
    below = above = value
    for _ in range(steps):
        below, above = math.nextafter(below, -math.inf), math.nextafter(above, math.inf)
        found += [below, above]
    return found


EDGES = sorted(
    {
        edge
        for bound in (
            *HISTOGRAM_BOUNDS,
            *(HISTOGRAM_BASE_SECONDS * HISTOGRAM_GROWTH**k for k in range(HISTOGRAM_BUCKETS + 2)),
            0.0,
            HISTOGRAM_BASE_SECONDS,
        )
        for edge in _around(bound)
    }
)


def test_histogram_bounds_sit_exactly_where_the_definition_changes_bucket() -> None:
    """Each bound is in its bucket; the float just below it is in the bucket before."""
    for index, bound in enumerate(HISTOGRAM_BOUNDS, start=1):
        assert histogram_index_by_log(bound) == index
        assert histogram_index_by_log(math.nextafter(bound, 0.0)) == index - 1


def test_histogram_index_equals_the_definition_on_every_bucket_edge() -> None:
    """Every bound and nominal bound ``base·g^k``, three floats either side: the same index."""
    mismatches = [
        (x, histogram_index(x), histogram_index_by_log(x))
        for x in EDGES
        if histogram_index(x) != histogram_index_by_log(x)
    ]
    assert mismatches == []


@pytest.mark.parametrize(
    "seconds",
    [
        pytest.param(-1.0, id="negative"),
        pytest.param(-0.0, id="minus-zero"),
        pytest.param(5e-324, id="least-subnormal"),
        pytest.param(1e6, id="past-the-last-bound"),
        pytest.param(math.inf, id="infinity"),
        pytest.param(math.nan, id="nan"),
    ],
)
def test_histogram_index_equals_the_definition_off_the_scale(seconds: float) -> None:
    """Out of range too, errors included (NaN and infinity are refused as the definition does)."""
    assert _outcome(histogram_index, seconds) == _outcome(histogram_index_by_log, seconds)


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_histogram_index_equals_the_definition_for_any_float(seconds: float) -> None:
    assert _outcome(histogram_index, seconds) == _outcome(histogram_index_by_log, seconds)


# --- crediting time: float comparisons against the datetime arithmetic ---------------------------

STEPS = st.lists(
    st.tuples(
        # Time since the previous check, in milliseconds as events state it: around the credibility
        # window's edge (gap ± a few ms) as often as well inside it or well past it.
        st.one_of(
            st.integers(min_value=0, max_value=200_000),
            st.integers(min_value=-3, max_value=3).map(lambda ms: 70_000 + ms),
            st.integers(min_value=-3, max_value=3).map(lambda ms: 3_600_000 + ms),
        ),
        st.sampled_from([UP, UP, UP, DEG, DOWN]),
        st.sampled_from(["default", "default", "default", "eu"]),
        st.floats(min_value=0, max_value=5),
        st.sampled_from([70.0, 0.07, 2 * 0.03 + 0.01, 1e8]),  # policies', and one never reached
    ),
    min_size=1,
    max_size=60,
)


def _observations(steps: list[tuple[int, Status, str, float, float]]) -> list[Observation]:
    at, found = T0, []
    for n, (delta_ms, status, location, response, gap) in enumerate(steps):
        at += timedelta(milliseconds=delta_ms)
        found.append(
            Observation("svc", at, status, response, gap, location, T0 + timedelta(seconds=n))
        )
    return found


def _encoded(observations: list[Observation]) -> bytes:
    state = ProjectionState()
    for obs in observations:
        apply(state, obs)
    return snapshot.encode(snapshot.Snapshot(position=None, state=state))


@settings(max_examples=300, deadline=None)
@given(STEPS)
def test_the_fast_credit_paths_fold_exactly_what_the_datetime_arithmetic_folds(
    steps: list[tuple[int, Status, str, float, float]],
) -> None:
    """Byte for byte the projection with the float shortcuts turned off.

    Every check then takes ``last_check + timedelta(gap)``; checks at the credibility window's
    edge included.
    """
    observations = _observations(steps)
    fast = _encoded(observations)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fold, "_SURELY_BEFORE_SECONDS", math.inf)  # no check is "surely before"
        slow = _encoded(observations)
    assert fast == slow


def test_a_check_at_the_edge_of_credibility_is_credited_by_the_datetime_arithmetic() -> None:
    """70 s gap: a check 70 s later is all up; one 70.001 s later leaves 1 ms unknown."""
    until = (T0 + timedelta(seconds=70)).timestamp()
    for late_ms, unknown in (
        (70_000, 0.0),
        (70_001, (T0 + timedelta(seconds=70.001)).timestamp() - until),
    ):
        state = ProjectionState()
        apply(state, Observation("svc", T0, UP, 0.1, 70.0))
        apply(state, Observation("svc", T0 + timedelta(milliseconds=late_ms), UP, 0.1, 70.0))
        totals = state.services["svc"].totals
        assert totals[0] == until - T0.timestamp()
        assert totals[3] == unknown


def test_apply_check_is_apply_of_the_observation() -> None:
    observations = _observations(
        [(30_000 if n else 0, UP, "default", 0.05, 70.0) for n in range(50)]
    )
    by_fields = ProjectionState()
    for obs in observations:
        apply_check(
            by_fields,
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
    by_observation = ProjectionState()
    for obs in observations:
        apply(by_observation, obs)
    assert by_fields == by_observation
    assert by_fields.services["svc"].totals[0] == 49 * 30.0


@pytest.mark.parametrize(
    ("gap_seconds", "refused"),
    [
        pytest.param(1e8, True, id="past-year-9999"),
        pytest.param(math.nan, True, id="nan"),
        pytest.param(math.inf, True, id="infinite"),
        pytest.param(1e6, False, id="within-the-calendar"),
    ],
)
def test_a_gap_the_datetime_sum_cannot_hold_is_refused_as_the_datetime_arithmetic_refuses(
    gap_seconds: float, refused: bool
) -> None:
    """Near the end of the calendar (or a gap no ``timedelta`` holds) the floats do not answer."""
    late = datetime(9998, 6, 1, tzinfo=UTC)
    outcomes: list[str | bytes] = []
    for surely_before in (fold._SURELY_BEFORE_SECONDS, math.inf):  # the fast paths, then none
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(fold, "_SURELY_BEFORE_SECONDS", surely_before)
            state = ProjectionState()
            apply(state, Observation("svc", late, UP, 0.1, gap_seconds))
            try:
                apply(state, Observation("svc", late + timedelta(seconds=30), UP, 0.1, 70.0))
            except (OverflowError, ValueError) as exc:
                outcomes.append(type(exc).__name__)
            else:
                outcomes.append(snapshot.encode(snapshot.Snapshot(position=None, state=state)))
    assert outcomes[0] == outcomes[1]
    assert isinstance(outcomes[0], str) is refused


@pytest.mark.parametrize(
    "status",
    [
        pytest.param(UP, id="continued-verdict"),
        pytest.param(DOWN, id="changed-verdict"),
    ],
)
def test_the_last_check_cache_is_not_used_once_last_check_is_another_datetime(
    status: Status,
) -> None:
    """A record whose ``last_check`` was set by other code (a rollup, a snapshot) credits from it."""
    state = ProjectionState()
    apply(state, Observation("svc", T0, UP, 0.1, 70.0))
    record = state.services["svc"]
    assert record.last_check_seconds == (T0, T0.timestamp())
    record.last_check = T0 - timedelta(seconds=10)  # what a merged rollup could leave
    apply(state, Observation("svc", T0 + timedelta(seconds=30), status, 0.1, 70.0))
    assert record.totals[0] == 40.0
