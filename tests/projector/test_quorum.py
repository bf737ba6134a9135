"""k-of-n quorum: the rule as a table, then the fold's quorum timeline, exact and replayable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uptime_daemon.projector.fold import (
    Observation,
    ProjectionState,
    apply,
    seconds_in_window,
    state_totals,
    status_at,
)
from uptime_daemon.projector.quorum import verdict
from uptime_daemon.projector.summary import service_timeline, summarize
from uptime_daemon.status import Status

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
UP, DEG, DOWN, UNK = Status.UP, Status.DEGRADED, Status.DOWN, Status.UNKNOWN
TWO = ("eu", "us")
GAP = 25.0  # 2 × 10 s + 5 s


@pytest.mark.parametrize(
    ("credible", "k", "expected"),
    [
        pytest.param([UP, UP], 2, UP, id="all-up"),
        pytest.param([DOWN, UP], 2, DEG, id="one-down-below-quorum-is-degraded"),
        pytest.param([DOWN, DOWN], 2, DOWN, id="quorum-down"),
        pytest.param([DOWN, UP], 1, DOWN, id="one-of-two-is-enough"),
        pytest.param([DOWN, None], 2, DEG, id="one-down-one-silent"),
        pytest.param([None, None], 1, UNK, id="nobody-credible"),
        pytest.param([UP, None], 2, UP, id="one-credible-up-is-up"),
        pytest.param([DEG, UP, UP], 2, DEG, id="degraded-anywhere-shows"),
        pytest.param([DOWN, DOWN, UP], 2, DOWN, id="two-of-three"),
        pytest.param([DOWN, DEG, UP], 2, DEG, id="down-and-degraded-below-quorum"),
        pytest.param([DOWN], 1, DOWN, id="single-location-down"),
        pytest.param([UP], 1, UP, id="single-location-up"),
        pytest.param([None], 1, UNK, id="single-location-stale"),
    ],
)
def test_the_rule(credible: list[Status | None], k: int, expected: Status) -> None:
    """Down at k; unknown only when nobody is credible; any trouble below quorum is degraded."""
    assert verdict(credible, k) is expected


def check(
    state: ProjectionState,
    seconds: float,
    location: str,
    status: Status,
    *,
    k: int = 2,
    of: tuple[str, ...] = TWO,
) -> None:
    at = T0 + timedelta(seconds=seconds)
    apply(state, Observation("api", at, status, 0.05, GAP, location, at, k, of))


def test_a_partial_outage_is_degraded_and_a_quorum_outage_is_one_incident() -> None:
    """Eu fails from 100 s, us from 200 s, us recovers at 300 s, eu at 400 s (k = 2 of 2)."""
    state = ProjectionState()
    for t in range(0, 500, 10):
        check(state, t, "eu", DOWN if 100 <= t < 400 else UP)
        check(state, t + 5, "us", DOWN if 200 <= t < 300 else UP)
    service = state.services["api"]
    now = T0 + timedelta(seconds=500)
    got = seconds_in_window(service, T0, now)
    assert got[DOWN] == pytest.approx(100)  # from us's first down (205) to its first up (305)
    assert got[DEG] == pytest.approx((205 - 100) + (400 - 305))
    assert got[UP] == pytest.approx(100 + 100)  # until eu's first down; from its first up
    assert got[UNK] == pytest.approx(0)
    assert [(i.start, i.end) for i in service.incidents] == [
        (T0 + timedelta(seconds=205), T0 + timedelta(seconds=305))
    ]
    eu, us = service.locations["eu"], service.locations["us"]
    assert seconds_in_window(eu, T0, now)[DOWN] == pytest.approx(300)
    assert seconds_in_window(us, T0, now)[DOWN] == pytest.approx(100)
    assert summarize(service, now=now, hours=1).checks.total == 100


def test_one_of_two_is_enough_when_k_is_one() -> None:
    """With k = 1 the first location to say down takes the service down."""
    state = ProjectionState()
    for t in range(0, 300, 10):
        check(state, t, "eu", DOWN if t >= 100 else UP, k=1)
        check(state, t + 5, "us", UP, k=1)
    got = seconds_in_window(state.services["api"], T0, T0 + timedelta(seconds=300))
    assert got[DOWN] == pytest.approx(200)


def test_a_silent_location_stops_counting_once_its_verdict_is_stale() -> None:
    """Eu goes silent (cut off from the store) saying down: degraded while credible, then up."""
    state = ProjectionState()
    for t in range(0, 100, 10):
        check(state, t, "eu", UP)
        check(state, t + 5, "us", UP)
    check(state, 100, "eu", DOWN)
    for t in range(105, 200, 10):
        check(state, t, "us", UP)
    service = state.services["api"]
    timeline = service_timeline(service, now=T0 + timedelta(seconds=200), hours=1)
    tail = [(p.state, (p.start - T0).total_seconds()) for p in timeline if p.end > T0]
    assert tail[-3:] == [(UP, 0.0), (DEG, 100.0), (UP, 125.0)]
    assert status_at(service, T0 + timedelta(seconds=200)) is UP


def test_without_checks_the_status_ages_location_by_location() -> None:
    """The open stretch after the last check follows each location's credibility, then unknown."""
    state = ProjectionState()
    check(state, 0, "eu", DOWN, k=2)
    check(state, 10, "us", DOWN, k=2)
    service = state.services["api"]
    assert status_at(service, T0 + timedelta(seconds=20)) is DOWN
    assert status_at(service, T0 + timedelta(seconds=30)) is DEG  # eu stale at 25 s
    assert status_at(service, T0 + timedelta(seconds=40)) is UNK  # us stale at 35 s
    periods = service_timeline(service, now=T0 + timedelta(seconds=60), hours=1)
    tail = [(p.state, (p.start - T0).total_seconds()) for p in periods if p.end > T0]
    assert tail[-3:] == [(DOWN, 10.0), (DEG, 25.0), (UNK, 35.0)]


def test_a_single_location_service_keeps_one_record() -> None:
    """One location (n = 1): no per-location copy, exactly the single-daemon fold."""
    state = ProjectionState()
    for t in range(0, 100, 10):
        check(state, t, "eu", UP, k=1, of=("eu",))
    service = state.services["api"]
    assert service.locations == {}
    assert service.location_records() == {"eu": service}


CHECKS = st.lists(
    st.tuples(
        st.floats(min_value=0.5, max_value=60),
        st.sampled_from(["eu", "us", "ap"]),
        st.sampled_from([UP, DEG, DOWN]),
    ),
    min_size=1,
    max_size=50,
)


def _fold(steps: list[tuple[float, str, Status]], k: int) -> tuple[ProjectionState, datetime]:
    state, at = ProjectionState(), T0
    for delta, location, status in steps:
        at += timedelta(seconds=delta)
        obs = Observation("api", at, status, 0.05, GAP, location, at, k, ("eu", "us", "ap"))
        apply(state, obs)
    return state, at


@settings(max_examples=150, deadline=None)
@given(CHECKS, st.integers(1, 3), st.floats(min_value=0, max_value=300))
def test_quorum_time_is_conserved_and_totals_only_grow(
    steps: list[tuple[float, str, Status]], k: int, extra: float
) -> None:
    """Seconds add up to the observed span; the counters never go down, before or after a check."""
    state, last = _fold(steps, k)
    service = state.services["api"]
    assert service.first_check is not None
    now = last + timedelta(seconds=extra)
    got = seconds_in_window(service, service.first_check, now)
    assert sum(got.values()) == pytest.approx((now - service.first_check).total_seconds(), abs=1e-6)
    earlier = state_totals(service, last)
    later = state_totals(service, now)
    assert all(b >= a - 1e-9 for a, b in zip(earlier, later, strict=True))


@settings(max_examples=100, deadline=None)
@given(CHECKS, st.integers(1, 3))
def test_each_location_record_is_that_location_alone(
    steps: list[tuple[float, str, Status]], k: int
) -> None:
    """A location's figures are what folding its checks alone gives: others never leak in."""
    state, last = _fold(steps, k)
    now = last + timedelta(seconds=30)
    for location, record in state.services["api"].location_records().items():
        alone = ProjectionState()
        at = T0
        for delta, where, status in steps:
            at += timedelta(seconds=delta)
            if where == location:
                apply(alone, Observation("api", at, status, 0.05, GAP, where, at, 1, (where,)))
        expected = alone.services["api"]
        assert summarize(record, now=now, hours=1) == summarize(expected, now=now, hours=1)
        assert service_timeline(record, now=now, hours=1) == service_timeline(
            expected, now=now, hours=1
        )
