"""The status machine: debounced transitions, latency grades, streaks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from uptime_daemon.config.model import CheckPolicy, GradeThresholds
from uptime_daemon.status import Grade, Outcome, ServiceState, Status, grade, step

T0 = datetime(2026, 1, 1, tzinfo=UTC)
UP, DEG, DOWN = Status.UP, Status.DEGRADED, Status.DOWN
OK, FAIL, SLOW = (True, 0.05), (False, 0.05), (True, 2.0)


def run(
    policy: CheckPolicy, probes: list[tuple[bool, float]], state: ServiceState | None = None
) -> list[Outcome]:
    """Feed probes 10 s apart; return every outcome."""
    state = state or ServiceState.initial()
    outcomes = []
    for i, (ok, seconds) in enumerate(probes):
        outcome = step(
            state, ok=ok, response_seconds=seconds, at=T0 + timedelta(seconds=10 * i), policy=policy
        )
        outcomes.append(outcome)
        state = outcome.state
    return outcomes


@pytest.mark.parametrize("n", [1, 2, 3])
def test_down_after_exactly_n_failures(n: int) -> None:
    """``failures_before_down`` consecutive failures turn up into down, not one fewer."""
    policy = CheckPolicy(failures_before_down=n)
    statuses = [o.status for o in run(policy, [OK] + [FAIL] * n)]
    assert statuses == [UP] * n + [DOWN]


@pytest.mark.parametrize(
    ("policy", "probes", "expected"),
    [
        pytest.param(CheckPolicy(), [OK, FAIL, OK, FAIL, OK], [UP] * 5, id="blips-are-not-outages"),
        pytest.param(CheckPolicy(), [FAIL], [DOWN], id="first-check-decides"),
        pytest.param(CheckPolicy(), [OK, FAIL, FAIL, OK], [UP, UP, DOWN, UP], id="back-after-one"),
        pytest.param(
            CheckPolicy(successes_before_up=3),
            [FAIL, OK, OK, FAIL, OK, OK, OK],
            [DOWN, DOWN, DOWN, DOWN, DOWN, DOWN, UP],
            id="back-after-three-consecutive",
        ),
        pytest.param(
            CheckPolicy(degraded_after_seconds=1.0),
            [OK, SLOW, SLOW, OK],
            [UP, DEG, DEG, UP],
            id="latency-degrades",
        ),
        pytest.param(
            CheckPolicy(degraded_after_seconds=1.0),
            [FAIL, SLOW, OK],
            [DOWN, DEG, UP],
            id="recovers-slowly",
        ),
        pytest.param(
            CheckPolicy(degraded_after_seconds=1.0),
            [SLOW, FAIL, FAIL],
            [DEG, DEG, DOWN],
            id="degraded-to-down",
        ),
        pytest.param(CheckPolicy(), [SLOW, SLOW], [UP, UP], id="no-threshold-no-degraded"),
    ],
)
def test_transition_table(
    policy: CheckPolicy, probes: list[tuple[bool, float]], expected: list[Status]
) -> None:
    """Statuses follow the documented rules."""
    assert [o.status for o in run(policy, probes)] == expected


def test_changed_previous_and_streak() -> None:
    """``changed``/``previous_status`` mark transitions; the streak restarts at each one."""
    outcomes = run(CheckPolicy(), [OK, OK, FAIL, FAIL, FAIL])
    assert [o.changed for o in outcomes] == [True, False, False, True, False]
    assert [o.previous_status for o in outcomes] == [None, UP, UP, UP, DOWN]
    assert [o.streak_seconds for o in outcomes] == [0, 10, 20, 0, 10]


def test_restored_state_keeps_its_streak() -> None:
    """After a restart the streak continues from the restored ``since``."""
    restored = ServiceState.restored(UP, T0 - timedelta(minutes=5))
    (outcome,) = run(CheckPolicy(), [OK], restored)
    assert outcome.changed is False
    assert outcome.streak_seconds == 300


@pytest.mark.parametrize(
    ("ok", "seconds", "expected"),
    [
        pytest.param(True, 0.1, Grade.EXCELLENT, id="excellent-boundary"),
        pytest.param(True, 0.1001, Grade.GOOD, id="good"),
        pytest.param(True, 0.3, Grade.GOOD, id="good-boundary"),
        pytest.param(True, 1.0, Grade.FAIR, id="fair-boundary"),
        pytest.param(True, 1.01, Grade.POOR, id="poor"),
        pytest.param(False, 0.01, Grade.FAILED, id="failed"),
    ],
)
def test_grades(ok: bool, seconds: float, expected: Grade) -> None:
    """Grades follow the thresholds, inclusive at each boundary."""
    assert grade(ok, seconds, GradeThresholds()) is expected


PROBES = st.lists(
    st.tuples(st.booleans(), st.floats(min_value=0, max_value=5)), min_size=1, max_size=40
)


@given(PROBES, st.integers(min_value=1, max_value=5), st.integers(min_value=1, max_value=5))
def test_properties(probes: list[tuple[bool, float]], k: int, m: int) -> None:
    """Streaks are never negative, status changes only with ``changed``, fewer than k failures never take it down."""
    policy = CheckPolicy(failures_before_down=k, successes_before_up=m, degraded_after_seconds=1.0)
    outcomes = run(policy, probes)
    previous = None
    failures = 0
    for (ok, _), outcome in zip(probes, outcomes, strict=True):
        assert outcome.streak_seconds >= 0
        assert outcome.changed == (outcome.status is not previous)
        failures = 0 if ok else failures + 1
        if previous in {UP, DEG} and outcome.status is DOWN:
            assert failures >= k
        previous = outcome.status
    assert run(policy, probes) == outcomes
