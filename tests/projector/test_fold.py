"""The projection fold: exact time accounting, incidents, percentiles, determinism, bounded memory."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uptime_daemon.projector import snapshot
from uptime_daemon.projector.fold import (
    HISTOGRAM_RELATIVE_ERROR,
    Observation,
    ProjectionState,
    apply,
    histogram_index,
    histogram_value,
    seconds_in_window,
    state_totals,
    timeline,
)
from uptime_daemon.projector.summary import current_status, service_timeline, summarize
from uptime_daemon.status import Status

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
UP, DEG, DOWN, UNK = Status.UP, Status.DEGRADED, Status.DOWN, Status.UNKNOWN


def fold(
    checks: list[tuple[float, Status]], gap: float = 30.0, response: float = 0.05
) -> ProjectionState:
    """Fold ``(seconds after T0, status)`` checks of one service ``svc``."""
    state = ProjectionState()
    for offset, status in checks:
        apply(state, Observation("svc", T0 + timedelta(seconds=offset), status, response, gap))
    return state


def every(
    start: float, stop: float, status: Status, step: float = 10.0
) -> list[tuple[float, Status]]:
    count = int((stop - start) / step)
    return [(start + i * step, status) for i in range(count)]


@pytest.mark.parametrize(
    ("checks", "now_offset", "expected"),
    [
        pytest.param(every(0, 3600, UP), 3600, {UP: 3600, DEG: 0, DOWN: 0, UNK: 0}, id="all-up"),
        pytest.param(
            every(0, 100, UP) + every(100, 200, DOWN) + every(200, 300, UP),
            300,
            {UP: 200, DEG: 0, DOWN: 100, UNK: 0},
            id="outage-100s",
        ),
        pytest.param(
            [(0, UP), (1000, UP)], 1000, {UP: 30, DEG: 0, DOWN: 0, UNK: 970}, id="gap-is-unknown"
        ),
        pytest.param(
            [(0, UP)], 100, {UP: 30, DEG: 0, DOWN: 0, UNK: 70}, id="trailing-silence-is-unknown"
        ),
        pytest.param(
            every(0, 60, UP) + every(60, 120, DEG),
            120,
            {UP: 60, DEG: 60, DOWN: 0, UNK: 0},
            id="degraded-apart",
        ),
        pytest.param(
            [(0, DOWN), (500, DOWN)],
            500,
            {UP: 0, DEG: 0, DOWN: 30, UNK: 470},
            id="down-then-silence-not-down",
        ),
    ],
)
def test_time_weighted_seconds(
    checks: list[tuple[float, Status]], now_offset: float, expected: dict[Status, float]
) -> None:
    """Seconds per state follow the credibility rule exactly."""
    state = fold(checks)
    now = T0 + timedelta(seconds=now_offset)
    got = seconds_in_window(state.services["svc"], T0, now)
    assert got == pytest.approx(expected)


def test_ten_minute_outage_in_a_day_is_99_3056_percent() -> None:
    """Checked every 30 s for 24 h with one 10-minute outage: 1430 / 1440 minutes up."""
    start_down = 6 * 3600
    checks = every(0, start_down, UP, 30) + every(start_down, start_down + 600, DOWN, 30)
    checks += every(start_down + 600, 86_400, UP, 30)
    state = fold(checks, gap=70)
    summary = summarize(state.services["svc"], now=T0 + timedelta(days=1), hours=24)
    assert summary.uptime_ratio is not None
    assert round(summary.uptime_ratio * 100, 4) == 99.3056
    assert summary.seconds[DOWN] == pytest.approx(600)
    assert summary.seconds[UNK] == pytest.approx(0)


def test_window_clips_both_edges() -> None:
    """A window that starts mid-outage counts only the part inside it."""
    state = fold(every(0, 100, UP) + every(100, 200, DOWN) + every(200, 400, UP))
    service = state.services["svc"]
    got = seconds_in_window(service, T0 + timedelta(seconds=150), T0 + timedelta(seconds=250))
    assert got[DOWN] == pytest.approx(50)
    assert got[UP] == pytest.approx(50)


def test_summary_ratios_incidents_mttr_mtbf() -> None:
    """Two outages of 100 s and 50 s in an hour: exact uptime, MTTR, MTBF and longest outage."""
    checks = every(0, 1000, UP) + every(1000, 1100, DOWN) + every(1100, 2000, UP)
    checks += every(2000, 2050, DOWN) + every(2050, 3600, UP)
    state = fold(checks)
    now = T0 + timedelta(seconds=3600)
    summary = summarize(state.services["svc"], now=now, hours=1)
    assert summary.seconds[DOWN] == pytest.approx(150)
    assert summary.uptime_ratio == pytest.approx(3450 / 3600)
    assert [i.duration_seconds for i in summary.incidents] == pytest.approx([100, 50])
    assert summary.mttr_seconds == pytest.approx(75)
    assert summary.mtbf_seconds == pytest.approx(3450 / 2)
    assert summary.longest_outage_seconds == pytest.approx(100)
    assert summary.checks.total == 360
    assert summary.checks.down == 15
    assert summary.status is UP
    assert summary.since == T0 + timedelta(seconds=2050)


def test_open_incident_counts_to_now() -> None:
    """An outage still going on has no end and lasts until now."""
    state = fold(every(0, 100, UP) + every(100, 300, DOWN))
    summary = summarize(state.services["svc"], now=T0 + timedelta(seconds=295), hours=1)
    (incident,) = summary.incidents
    assert incident.end is None
    assert incident.duration_seconds == pytest.approx(195)
    assert summary.mttr_seconds is None


def test_current_status_goes_unknown_when_stale() -> None:
    """A verdict older than the gap is not trusted."""
    service = fold([(0, UP)]).services["svc"]
    assert current_status(service, T0 + timedelta(seconds=29)) is UP
    assert current_status(service, T0 + timedelta(seconds=31)) is UNK


def test_timeline_merges_and_marks_unknown() -> None:
    """The timeline is contiguous periods, with the silent stretch shown as unknown."""
    service = fold([*every(0, 60, UP), (200, DOWN), (210, UP)]).services["svc"]
    periods = service_timeline(service, now=T0 + timedelta(seconds=220), hours=1)
    assert [
        (p.state, (p.start - T0).total_seconds(), (p.end - T0).total_seconds()) for p in periods
    ] == [
        (UNK, 220 - 3600, 0),
        (UP, 0, 80),
        (UNK, 80, 200),
        (DOWN, 200, 210),
        (UP, 210, 220),
    ]


def test_clock_stepping_back_never_counts_negative_time() -> None:
    """An observation older than the last one is treated as simultaneous."""
    service = fold([(100, UP), (50, DOWN), (120, DOWN)]).services["svc"]
    got = seconds_in_window(service, T0, T0 + timedelta(seconds=120))
    assert all(value >= 0 for value in got.values())
    assert got[UP] + got[DEG] + got[DOWN] == pytest.approx(20)
    assert got[UNK] == pytest.approx(100)  # before the first check


@given(st.floats(min_value=0.0001, max_value=200.0))
def test_histogram_bucket_contains_value_within_error(seconds: float) -> None:
    """Every response time maps to a bucket whose representative is within the stated bound."""
    estimate = histogram_value(histogram_index(seconds))
    if seconds >= 0.001:
        assert abs(estimate - seconds) / seconds <= HISTOGRAM_RELATIVE_ERROR + 1e-9


def test_percentiles_within_error_bound() -> None:
    """p50/p95/p99 of 1..1000 ms land within the histogram's error bound."""
    state = ProjectionState()
    for i in range(1000):
        at = T0 + timedelta(seconds=i)
        apply(state, Observation("svc", at, UP, (i + 1) / 1000, 30))
    summary = summarize(state.services["svc"], now=T0 + timedelta(seconds=1000), hours=1)
    for got, exact in (
        (summary.response.p50, 0.5),
        (summary.response.p95, 0.95),
        (summary.response.p99, 0.99),
    ):
        assert got is not None
        assert abs(got - exact) / exact <= HISTOGRAM_RELATIVE_ERROR * 1.5
    assert summary.response.average == pytest.approx(0.5005)


def test_memory_is_bounded_by_retention() -> None:
    """Two hundred days of flapping keep only the retention's worth of buckets, periods, incidents."""
    state = ProjectionState(retention_seconds=10 * 86_400)
    for i in range(200 * 24):
        status = DOWN if i % 2 else UP
        apply(state, Observation("svc", T0 + timedelta(hours=i), status, 0.01, 7200))
    service = state.services["svc"]
    assert len(service.buckets) <= 10 * 24 + 2
    assert len(service.periods) <= 10 * 24 + 2
    assert len(service.incidents) <= 10 * 12 + 2


STATUS = st.sampled_from([UP, DEG, DOWN])
CHECKS = st.lists(
    st.tuples(
        st.floats(min_value=0.5, max_value=4000), STATUS, st.floats(min_value=0, max_value=5)
    ),
    min_size=1,
    max_size=60,
)


def _fold_steps(
    steps: list[tuple[float, Status, float]], gap: float
) -> tuple[ProjectionState, datetime]:
    state = ProjectionState()
    at = T0
    for delta, status, response in steps:
        at += timedelta(seconds=delta)
        apply(state, Observation("svc", at, status, response, gap))
    return state, at


@settings(max_examples=150, deadline=None)
@given(CHECKS, st.floats(min_value=1, max_value=600), st.floats(min_value=0, max_value=5000))
def test_time_is_conserved_and_ratios_bounded(
    steps: list[tuple[float, Status, float]], gap: float, extra: float
) -> None:
    """Seconds per state add up to the observed span exactly, and ratios stay within [0, 1]."""
    state, last = _fold_steps(steps, gap)
    now = last + timedelta(seconds=extra)
    service = state.services["svc"]
    assert service.first_check is not None
    got = seconds_in_window(service, service.first_check, now)
    assert sum(got.values()) == pytest.approx((now - service.first_check).total_seconds(), abs=1e-6)
    summary = summarize(service, now=now, hours=48)
    for ratio in (summary.uptime_ratio, summary.availability_ratio, summary.checks.up_ratio):
        assert ratio is None or 0.0 <= ratio <= 1.0
    assert summary.checks.total == len(steps)


@settings(max_examples=100, deadline=None)
@given(CHECKS, st.floats(min_value=1, max_value=600))
def test_replay_is_deterministic(steps: list[tuple[float, Status, float]], gap: float) -> None:
    """Folding the same observations twice gives identical summaries."""
    first, last = _fold_steps(steps, gap)
    second, _ = _fold_steps(steps, gap)
    now = last + timedelta(seconds=10)
    assert summarize(first.services["svc"], now=now, hours=24) == summarize(
        second.services["svc"], now=now, hours=24
    )


@settings(max_examples=100, deadline=None)
@given(CHECKS, st.floats(min_value=1, max_value=600))
def test_bucket_seconds_match_period_seconds(
    steps: list[tuple[float, Status, float]], gap: float
) -> None:
    """The hourly buckets and the status periods agree on time up to the last check."""
    state, last = _fold_steps(steps, gap)
    service = state.services["svc"]
    assert service.first_check is not None
    exact = seconds_in_window(service, service.first_check, last)
    # Buckets are credited from float Unix timestamps (one ulp near 1.7e9 s is 2.4e-7 s), periods
    # by exact datetime arithmetic: each credited piece may differ by a few ulps, so the bound
    # grows with the number of pieces (checks plus hour boundaries crossed).
    tolerance = 1e-6 * (len(steps) + len(service.buckets) + 1)
    for index, time_state in enumerate((UP, DEG, DOWN, UNK)):
        bucket_total = sum(b.seconds[index] for b in service.buckets.values())
        assert bucket_total == pytest.approx(exact[time_state], abs=tolerance)


@settings(max_examples=100, deadline=None)
@given(
    CHECKS,
    st.floats(min_value=1, max_value=600),
    st.lists(st.floats(min_value=0, max_value=900), max_size=5),
)
def test_state_totals_only_grow(
    steps: list[tuple[float, Status, float]], gap: float, scrapes: list[float]
) -> None:
    """Scraped totals never decrease, whether between checks or across them (a valid counter)."""
    state = ProjectionState(retention_seconds=600)
    service_totals: list[list[float]] = []
    at = T0
    for delta, status, response in steps:
        for offset in sorted(scrapes):
            if offset < delta:
                service = state.services.get("svc")
                if service is not None:
                    service_totals.append(state_totals(service, at + timedelta(seconds=offset)))
        at += timedelta(seconds=delta)
        apply(state, Observation("svc", at, status, response, gap))
        service_totals.append(state_totals(state.services["svc"], at))
    for before, after in itertools.pairwise(service_totals):
        for a, b in zip(before, after, strict=True):
            assert b >= a - 1e-6


@settings(max_examples=150, deadline=None)
@given(
    CHECKS,
    st.floats(min_value=1, max_value=600),
    st.floats(min_value=0, max_value=5000),
    st.floats(min_value=0.01, max_value=30),
)
def test_states_add_up_to_the_window_length(
    steps: list[tuple[float, Status, float]], gap: float, tail: float, hours: float
) -> None:
    """Up + degraded + down + unknown = window length, wherever the window starts."""
    state, last = _fold_steps(steps, gap)
    now = last + timedelta(seconds=tail)
    start = now - timedelta(hours=hours)
    got = seconds_in_window(state.services["svc"], start, now)
    assert sum(got.values()) == pytest.approx(hours * 3600, abs=1e-6)
    periods = timeline(state.services["svc"], start, now)
    assert periods[0].start == start
    assert periods[-1].end == now
    assert all(a.end == b.start for a, b in itertools.pairwise(periods))


# --- each check counts once ---------------------------------------------------------------------

SLOTTED = st.lists(
    st.tuples(
        st.floats(min_value=0.5, max_value=600),  # time since the previous check completed
        st.floats(min_value=0, max_value=900),  # how late the check completed after its slot
        st.sampled_from(["eu", "us"]),
        STATUS,
        st.floats(min_value=0, max_value=5),
    ),
    min_size=1,
    max_size=40,
)


def _slotted(steps: list[tuple[float, float, str, Status, float]]) -> list[Observation]:
    at, found = T0, []
    for delta, lateness, location, status, response in steps:
        at += timedelta(seconds=delta)
        slot = (at - timedelta(seconds=lateness)).replace(microsecond=0)
        found.append(Observation("svc", at, status, response, 45.0, location, slot))
    return found


def _folded(observations: list[Observation]) -> bytes:
    state = ProjectionState()
    for obs in observations:
        apply(state, obs)
    for service in state.services.values():
        # The fields that differ: how many repeats were skipped, so how many checks were folded.
        service.repeated_checks = service.folded = 0
    return snapshot.encode(snapshot.Snapshot(position=None, state=state))


@settings(max_examples=200, deadline=None)
@given(SLOTTED, st.data())
def test_a_log_written_twice_folds_like_the_log_written_once(
    steps: list[tuple[float, float, str, Status, float]], data: st.DataObject
) -> None:
    """Every check appended a second time, anywhere after the first: identical, byte for byte.

    A retried append, a second replica probing the same slot, an id cache that forgot.
    """
    once = _slotted(steps)
    delays = data.draw(st.lists(st.integers(0, 60), min_size=len(once), max_size=len(once)))
    order = sorted(
        [(i, 0, i) for i in range(len(once))] + [(i + d, 1, i) for i, d in enumerate(delays)]
    )
    twice = [once[i] for _, _, i in order]
    assert _folded(twice) == _folded(once)


def test_a_repeated_slot_is_skipped_and_counted_as_repeated() -> None:
    """Same (service, location, slot): counted once; another location's same slot is its own check."""
    slot = T0
    first = Observation("svc", T0 + timedelta(seconds=1), UP, 0.1, 45.0, "eu", slot)
    again = Observation("svc", T0 + timedelta(seconds=2), DOWN, 0.1, 45.0, "eu", slot)
    elsewhere = Observation("svc", T0 + timedelta(seconds=3), UP, 0.1, 45.0, "us", slot)
    state = ProjectionState()
    for obs in (first, again, elsewhere):
        apply(state, obs)
    service = state.services["svc"]
    assert summarize(service, now=T0 + timedelta(seconds=10), hours=1).checks.total == 2
    assert service.repeated_checks == 1
    assert service.status is UP


def test_a_late_check_of_an_older_slot_still_counts_within_the_window() -> None:
    """Replica B's slot k arriving after replica A's slot k+1 is a new check, not a repeat."""
    newer = Observation(
        "svc", T0 + timedelta(seconds=61), UP, 0.1, 150.0, "eu", T0 + timedelta(seconds=60)
    )
    older = Observation("svc", T0 + timedelta(seconds=62), UP, 0.1, 150.0, "eu", T0)
    state = ProjectionState()
    apply(state, newer)
    apply(state, older)
    assert state.services["svc"].repeated_checks == 0
    assert (
        summarize(state.services["svc"], now=T0 + timedelta(seconds=70), hours=1).checks.total == 2
    )


# --- incidents: observed down time and time nobody was looking ----------------------------------


@pytest.mark.parametrize(
    ("checks", "now_offset", "expected"),
    [
        pytest.param(
            every(0, 100, UP) + every(100, 130, DOWN) + every(300, 320, DOWN) + every(320, 400, UP),
            400,
            (220, 70, 150),
            id="stopped-mid-outage-resumed-still-down",
        ),
        pytest.param(
            every(0, 100, UP) + every(100, 130, DOWN) + every(300, 400, UP),
            400,
            (200, 50, 150),
            id="stopped-mid-outage-resumed-up",
        ),
        pytest.param(
            every(0, 100, UP) + every(100, 200, DOWN) + every(200, 400, UP),
            400,
            (100, 100, 0),
            id="watched-throughout",
        ),
    ],
)
def test_an_incident_splits_into_observed_down_and_unknown(
    checks: list[tuple[float, Status]], now_offset: float, expected: tuple[float, float, float]
) -> None:
    """A stop in the middle of an outage is unknown time inside the incident, never down time.

    Down checks every 10 s credible for 30 s; the daemon stops after the check at 120 s (credible
    until 150 s) and is back at 300 s: 150 s nobody looked. MTTR and the longest outage count only
    what was seen down, so they never exceed ``seconds[down]``.
    """
    service = fold(checks).services["svc"]
    now = T0 + timedelta(seconds=now_offset)
    summary = summarize(service, now=now, hours=1)
    (incident,) = summary.incidents
    duration, down, unknown = expected
    assert incident.duration_seconds == pytest.approx(duration)
    assert incident.down_seconds == pytest.approx(down)
    assert incident.unknown_seconds == pytest.approx(unknown)
    assert incident.down_seconds == pytest.approx(summary.seconds[DOWN])
    assert incident.unknown_seconds == pytest.approx(summary.seconds[UNK] - (3600 - now_offset))
    assert incident.seconds_in_window == pytest.approx(summary.seconds[DOWN])
    assert summary.mttr_seconds == pytest.approx(down)
    assert summary.longest_outage_seconds == pytest.approx(down)


def test_mttr_is_the_mean_of_observed_down_seconds() -> None:
    """One outage watched throughout (100 s), one with a 150 s stop inside it (50 s seen down)."""
    checks = every(0, 100, UP) + every(100, 200, DOWN) + every(200, 500, UP)
    checks += every(500, 530, DOWN) + every(700, 800, UP)
    service = fold(checks).services["svc"]
    summary = summarize(service, now=T0 + timedelta(seconds=800), hours=1)
    splits = [(i.down_seconds, i.unknown_seconds) for i in summary.incidents]
    assert [value for split in splits for value in split] == pytest.approx([100, 0, 50, 150])
    assert summary.seconds[DOWN] == pytest.approx(150)
    assert summary.mttr_seconds == pytest.approx(75)  # not (100 + 200) / 2
    assert summary.longest_outage_seconds == pytest.approx(100)  # not the 200 s wall clock


def test_an_open_incident_counts_down_while_credible_then_unknown() -> None:
    """Down checks until 120 s (credible until 150 s); at 200 s: 50 s down, then 50 s unknown."""
    service = fold(every(0, 100, UP) + every(100, 130, DOWN)).services["svc"]
    now = T0 + timedelta(seconds=200)
    summary = summarize(service, now=now, hours=1)
    (incident,) = summary.incidents
    assert incident.end is None
    assert incident.duration_seconds == pytest.approx(100)
    assert (incident.down_seconds, incident.unknown_seconds) == pytest.approx((50, 50))
    assert summary.longest_outage_seconds == pytest.approx(50)
    assert summary.mttr_seconds is None
    # A check at 200 s (still down) puts the same split into the fold, and the view agrees.
    later = fold([*every(0, 100, UP), *every(100, 130, DOWN), (200, DOWN)]).services["svc"]
    assert (later.incidents[0].down, later.incidents[0].unknown) == (
        timedelta(seconds=50),
        timedelta(seconds=50),
    )
    (after,) = summarize(later, now=now, hours=1).incidents
    assert (after.down_seconds, after.unknown_seconds) == pytest.approx((50, 50))


def test_a_window_cutting_an_incident_shows_its_whole_split_and_its_part_inside() -> None:
    """``downSeconds`` is the whole incident's; ``secondsInWindow`` its down part in the window."""
    checks = (
        every(0, 100, UP) + every(100, 130, DOWN) + every(300, 320, DOWN) + every(320, 3900, UP)
    )
    service = fold(checks).services["svc"]
    now = T0 + timedelta(seconds=3600 + 310)  # the window starts at 310 s
    summary = summarize(service, now=now, hours=1)
    (incident,) = summary.incidents
    assert (incident.down_seconds, incident.unknown_seconds) == pytest.approx((70, 150))
    assert incident.seconds_in_window == pytest.approx(10) == summary.seconds[DOWN]


def _quorum_check(state: ProjectionState, seconds: float, location: str, status: Status) -> None:
    at = T0 + timedelta(seconds=seconds)
    apply(state, Observation("svc", at, status, 0.05, 30, location, at, 2, ("a", "b", "c")))


def test_a_quorum_outage_that_goes_stale_ends_where_the_next_check_will_end_it() -> None:
    """Two of three say down; when one of them goes quiet the verdict is degraded: the outage ended.

    The query shows the incident ended there before any new check, exactly as the fold then records it.
    """
    state = ProjectionState()
    _quorum_check(state, 0, "a", DOWN)
    _quorum_check(state, 1, "b", DOWN)  # quorum: down from 1 s
    _quorum_check(state, 2, "c", UP)
    service = state.services["svc"]
    (before,) = summarize(service, now=T0 + timedelta(seconds=40), hours=1).incidents
    assert before.end == T0 + timedelta(seconds=30)  # a's verdict is stale from 30 s
    assert (before.down_seconds, before.unknown_seconds) == pytest.approx((29, 0))
    _quorum_check(state, 45, "c", UP)
    (after,) = summarize(service, now=T0 + timedelta(seconds=40), hours=1).incidents
    assert after == before


OUTAGES = st.lists(
    st.tuples(st.floats(min_value=0.5, max_value=400), STATUS, st.floats(min_value=0, max_value=5)),
    min_size=1,
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(
    OUTAGES,
    st.floats(min_value=1, max_value=120),
    st.floats(min_value=0, max_value=600),
    st.floats(min_value=0.01, max_value=6),
)
def test_incident_seconds_add_up(
    steps: list[tuple[float, Status, float]], gap: float, tail: float, hours: float
) -> None:
    """Down + unknown = duration for every incident, open or closed, wherever the window starts.

    MTTR and the longest outage never exceed the incidents' down seconds, and the incidents' parts
    inside the window add up to the window's down seconds.
    """
    state, last = _fold_steps(steps, gap)
    now = last + timedelta(seconds=tail)
    summary = summarize(state.services["svc"], now=now, hours=hours)
    for incident in summary.incidents:
        assert incident.down_seconds + incident.unknown_seconds == pytest.approx(
            incident.duration_seconds, abs=1e-6
        )
        assert incident.down_seconds >= 0
        assert incident.unknown_seconds >= 0
    assert sum(i.seconds_in_window for i in summary.incidents) == pytest.approx(
        summary.seconds[DOWN], abs=1e-6
    )
    downs = [i.down_seconds for i in summary.incidents]
    assert summary.longest_outage_seconds == (max(downs) if downs else None)
    if summary.mttr_seconds is not None:
        assert summary.mttr_seconds <= max(downs) + 1e-9


@settings(max_examples=150, deadline=None)
@given(
    SLOTTED,
    st.integers(min_value=1, max_value=2),
    st.floats(min_value=0, max_value=600),
    st.floats(min_value=0.01, max_value=6),
)
def test_quorum_incident_seconds_add_up(
    steps: list[tuple[float, float, str, Status, float]], k: int, tail: float, hours: float
) -> None:
    """The same for a k-of-2 quorum timeline, whose outages can also end by a verdict going stale."""
    state = ProjectionState()
    observations = _slotted(steps)
    for obs in observations:
        apply(state, dataclasses.replace(obs, quorum=k, locations=("eu", "us")))
    now = observations[-1].at + timedelta(seconds=tail)
    summary = summarize(state.services["svc"], now=now, hours=hours)
    for incident in summary.incidents:
        assert incident.down_seconds + incident.unknown_seconds == pytest.approx(
            incident.duration_seconds, abs=1e-6
        )
        assert min(incident.down_seconds, incident.unknown_seconds) >= 0
    assert sum(i.seconds_in_window for i in summary.incidents) == pytest.approx(
        summary.seconds[DOWN], abs=1e-6
    )
