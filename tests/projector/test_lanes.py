"""``fold.Lanes``: a replay in integer microseconds folds exactly what ``apply_check`` folds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from uptime_daemon.projector import snapshot
from uptime_daemon.projector.fold import Lanes, ProjectionState, apply_check
from uptime_daemon.status import Status

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
T0_US = (datetime(2026, 3, 1, 23, 59, tzinfo=UTC) - EPOCH) // timedelta(microseconds=1)
UP, DEG, DOWN = Status.UP, Status.DEGRADED, Status.DOWN

Step = tuple[str, int, Status, str, float, float, int, int]

STEPS = st.lists(
    st.tuples(
        st.sampled_from(["a", "a", "a", "b"]),
        # µs since the service's previous check: sub-millisecond, usual, at the credibility edge
        # (70 s ± a few µs), past it, over an hour, and backwards (a clock stepped back).
        st.one_of(
            st.integers(min_value=0, max_value=2_000),
            st.integers(min_value=0, max_value=90_000_000),
            st.integers(min_value=-5, max_value=5).map(lambda us: 69_999_000 + us),
            st.integers(min_value=-5, max_value=5).map(lambda us: 70_000_000 + us),
            st.integers(min_value=3_500_000_000, max_value=7_300_000_000),
            st.integers(min_value=-3_000_000, max_value=-1),
        ),
        st.sampled_from([UP, UP, UP, UP, DEG, DOWN]),
        st.sampled_from(["default"] * 8 + ["eu"]),
        st.floats(min_value=0, max_value=400),
        st.sampled_from([70.0, 70.0, 0.07, 1e8]),
        # the slot: the check's own (µs before it), or one already counted
        st.integers(min_value=0, max_value=40_000),
        st.sampled_from([0, 0, 0, 0, 1, 3]),  # how many slots back: 0 is a new one
        st.sampled_from([1, 1, 1, 2]),
    ).map(lambda t: (t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7] * 1000 + t[8])),
    min_size=1,
    max_size=80,
)


def _checks(steps: list[Step]) -> list[tuple[str, int, int, Status, float, float, str, int]]:
    """(service, at µs, slot µs, status, response, gap, location, quorum) per step."""
    last: dict[str, int] = {}
    slots: dict[str, list[int]] = {}
    found = []
    for service, delta, status, location, response, gap, lead, back_quorum in steps:
        back, quorum = divmod(back_quorum, 1000)
        at = last.get(service, T0_US) + delta
        last[service] = at
        seen = slots.setdefault(service, [])
        slot = seen[-back] if back and len(seen) >= back else at - lead - 1000 * len(seen)
        seen.append(slot)
        found.append((service, at, slot, status, response, gap, location, quorum))
    return found


def _encoded(state: ProjectionState) -> bytes:
    return snapshot.encode(snapshot.Snapshot(position=None, state=state))


@settings(max_examples=400, deadline=None)
@given(STEPS, st.integers(min_value=1, max_value=20))
def test_lanes_fold_exactly_what_apply_check_folds(steps: list[Step], flush_every: int) -> None:
    """Byte for byte, flushed after any number of checks, every record and its last-check cache."""
    by_datetimes, by_lanes = ProjectionState(), ProjectionState()
    lanes = Lanes(by_lanes)
    for n, (service, at_us, slot_us, status, response, gap, location, quorum) in enumerate(
        _checks(steps), start=1
    ):
        of = ("default", "eu") if quorum == 2 else (location,)
        at = EPOCH + timedelta(microseconds=at_us)
        slot = EPOCH + timedelta(microseconds=slot_us)
        apply_check(by_datetimes, service, at, status, response, gap, location, slot, quorum, of)
        lanes.digest(service, status, at_us, at_us - slot_us, response, gap, location, quorum, of)
        if n % flush_every == 0:
            lanes.flush()
            assert _encoded(by_lanes) == _encoded(by_datetimes)
    lanes.close()
    assert _encoded(by_lanes) == _encoded(by_datetimes)
    assert by_lanes == by_datetimes
    for name, record in by_lanes.services.items():
        cached = record.last_check_seconds
        if cached is not None and cached[0] is record.last_check:
            assert cached[1] == by_datetimes.services[name].last_check.timestamp()  # type: ignore[union-attr]


def test_a_run_of_continued_checks_makes_no_datetime_until_flushed() -> None:
    """The point of a lane: ``last_check`` stays behind while checks continue, then catches up."""
    state = ProjectionState()
    lanes = Lanes(state)
    start = T0_US + 120_000_000  # 00:01: the five checks are in one hour
    for k in range(5):
        at = start + k * 60_000_000
        lanes.digest("a", UP, at, 500, 0.01, 150.0, "default", 1, ("default",))
    first = EPOCH + timedelta(microseconds=start)
    assert state.services["a"].last_check == first  # the first check went through apply_check
    lanes.flush()
    assert state.services["a"].last_check == first + timedelta(minutes=4)
    assert sum(bucket.checks[0] for bucket in state.services["a"].buckets.values()) == 5
