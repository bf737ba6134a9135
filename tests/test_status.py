"""The status machine: debounced transitions, latency grades, streaks, and its properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uptime_daemon.config.model import CheckPolicy, GradeThresholds
from uptime_daemon.status import (
    INITIAL,
    Grade,
    Outcome,
    PastCheck,
    ServiceState,
    Status,
    grade,
    step,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
UP, DEG, DOWN = Status.UP, Status.DEGRADED, Status.DOWN
OK, FAIL, SLOW = (True, 0.05), (False, 0.05), (True, 2.0)
LATENCY = CheckPolicy(degraded_after_seconds=1.0)
"""Default debouncing (down after 2 failures, up after 1 success); SLOW probes are degraded."""

Probe = tuple[bool, float]


def run(policy: CheckPolicy, probes: list[Probe], state: ServiceState = INITIAL) -> list[Outcome]:
    """Feed probes 10 s apart starting at T0; return every outcome."""
    outcomes = []
    for i, (ok, seconds) in enumerate(probes):
        at = T0 + timedelta(seconds=10 * i)
        outcome = step(state, ok=ok, response_seconds=seconds, at=at, policy=policy)
        outcomes.append(outcome)
        state = outcome.state
    return outcomes


def statuses(policy: CheckPolicy, probes: list[Probe]) -> list[Status | None]:
    return [o.status for o in run(policy, probes)]


@pytest.mark.parametrize(
    ("n", "start"),
    [
        pytest.param(1, OK, id="n=1-from-up"),
        pytest.param(2, OK, id="n=2-from-up"),
        pytest.param(3, OK, id="n=3-from-up"),
        pytest.param(2, SLOW, id="n=2-from-degraded"),
        pytest.param(3, SLOW, id="n=3-from-degraded"),
    ],
)
def test_down_after_exactly_n_failures(n: int, start: Probe) -> None:
    """``failures_before_down`` consecutive failures turn up/degraded into down, not one fewer."""
    policy = CheckPolicy(failures_before_down=n, degraded_after_seconds=1.0)
    before = statuses(policy, [start] + [FAIL] * (n - 1))
    after = statuses(policy, [start] + [FAIL] * n)
    healthy = before[0]
    assert healthy in {UP, DEG}
    assert before == [healthy] * n  # n - 1 failures: still healthy
    assert after == [healthy] * n + [DOWN]


@pytest.mark.parametrize("m", [pytest.param(m, id=f"m={m}") for m in (1, 2, 3)])
def test_back_up_after_exactly_m_successes(m: int) -> None:
    """``successes_before_up`` consecutive good probes bring down back up, not one fewer."""
    policy = CheckPolicy(successes_before_up=m)
    assert statuses(policy, [FAIL, FAIL] + [OK] * (m - 1)) == [None] + [DOWN] * m
    assert statuses(policy, [FAIL, FAIL] + [OK] * m) == [None] + [DOWN] * m + [UP]


@pytest.mark.parametrize(
    ("policy", "probes", "expected"),
    [
        pytest.param(CheckPolicy(), [OK], [UP], id="first-check-ok-is-up"),
        pytest.param(CheckPolicy(), [FAIL], [None], id="a-first-failure-is-pending"),
        pytest.param(CheckPolicy(), [FAIL, FAIL], [None, DOWN], id="confirmed-like-any-outage"),
        pytest.param(
            CheckPolicy(failures_before_down=3),
            [FAIL, FAIL, FAIL],
            [None, None, DOWN],
            id="pending-until-failures-before-down",
        ),
        pytest.param(
            CheckPolicy(failures_before_down=1), [FAIL], [DOWN], id="one-failure-policy-is-down"
        ),
        pytest.param(CheckPolicy(), [FAIL, OK], [None, UP], id="pending-then-a-success-is-up"),
        pytest.param(
            CheckPolicy(failures_before_down=3),
            [FAIL, FAIL, OK, FAIL, FAIL],
            [None, None, UP, UP, UP],
            id="a-success-ends-pending",
        ),
        pytest.param(LATENCY, [SLOW], [DEG], id="first-check-slow-is-degraded"),
        pytest.param(CheckPolicy(), [OK, FAIL, OK, FAIL, OK], [UP] * 5, id="blips-are-not-outages"),
        pytest.param(
            CheckPolicy(failures_before_down=3),
            [OK, FAIL, FAIL, OK, FAIL, FAIL, FAIL],
            [UP, UP, UP, UP, UP, UP, DOWN],
            id="a-success-resets-the-failure-count",
        ),
        pytest.param(
            CheckPolicy(successes_before_up=3),
            [FAIL, FAIL, OK, OK, FAIL, OK, OK, OK],
            [None, DOWN, DOWN, DOWN, DOWN, DOWN, DOWN, UP],
            id="a-failure-resets-the-success-count",
        ),
        pytest.param(CheckPolicy(), [FAIL] * 4, [None] + [DOWN] * 3, id="down-stays-down"),
        pytest.param(LATENCY, [OK, SLOW, SLOW], [UP, DEG, DEG], id="latency-degrades-at-once"),
        pytest.param(LATENCY, [SLOW, OK], [DEG, UP], id="degraded-to-up-at-once"),
        pytest.param(
            LATENCY, [SLOW, FAIL, SLOW], [DEG, DEG, DEG], id="degraded-blip-stays-degraded"
        ),
        pytest.param(LATENCY, [OK, FAIL, SLOW], [UP, UP, DEG], id="blip-then-slow-is-degraded"),
        pytest.param(
            LATENCY,
            [FAIL, FAIL, SLOW, OK],
            [None, DOWN, DEG, UP],
            id="down-recovers-slowly-to-degraded",
        ),
        pytest.param(LATENCY, [OK, (True, 1.0)], [UP, UP], id="at-the-threshold-is-up"),
        pytest.param(LATENCY, [OK, (True, 1.001)], [UP, DEG], id="over-the-threshold-is-degraded"),
        pytest.param(
            CheckPolicy(), [SLOW, (True, 60.0)], [UP, UP], id="no-threshold-never-degraded"
        ),
        pytest.param(
            CheckPolicy(successes_before_up=2, degraded_after_seconds=1.0),
            [FAIL, FAIL, SLOW, OK],
            [None, DOWN, DOWN, UP],
            id="slow-success-counts-towards-recovery",
        ),
    ],
)
def test_transition_table(
    policy: CheckPolicy, probes: list[Probe], expected: list[Status | None]
) -> None:
    """Statuses follow the documented rules."""
    assert statuses(policy, probes) == expected


def test_changed_previous_and_streak() -> None:
    """``changed``/``previous_status`` mark transitions; the streak restarts at 0 at each one."""
    outcomes = run(LATENCY, [OK, OK, FAIL, FAIL, FAIL, SLOW, SLOW, OK])
    assert [o.status for o in outcomes] == [UP, UP, UP, DOWN, DOWN, DEG, DEG, UP]
    assert [o.changed for o in outcomes] == [True, False, False, True, False, True, False, True]
    assert [o.previous_status for o in outcomes] == [None, UP, UP, UP, DOWN, DOWN, DEG, DEG]
    assert [o.streak_seconds for o in outcomes] == [0, 10, 20, 0, 10, 0, 10, 0]


def test_counters_reset() -> None:
    """Each counter restarts at the first probe of the other kind."""
    outcomes = run(CheckPolicy(failures_before_down=5), [OK, OK, FAIL, FAIL, OK])
    assert [(o.state.consecutive_failures, o.state.consecutive_successes) for o in outcomes] == [
        (0, 1),
        (0, 2),
        (1, 0),
        (2, 0),
        (0, 1),
    ]


def test_initial_state() -> None:
    """Before the first check nothing is known."""
    assert ServiceState.initial() == INITIAL == ServiceState(status=None, since=None)


def test_restored_state_keeps_its_streak() -> None:
    """After a restart the streak continues from the restored ``since``."""
    restored = ServiceState.restored(UP, T0 - timedelta(minutes=5))
    (outcome,) = run(CheckPolicy(), [OK], restored)
    assert outcome.changed is False
    assert outcome.previous_status is UP
    assert outcome.streak_seconds == 300
    assert outcome.state.since == T0 - timedelta(minutes=5)


def test_restored_without_stored_checks_counts_from_zero() -> None:
    """With no stored probe outcomes to recount from, a restored ``down`` needs all its successes."""
    restored = ServiceState.restored(DOWN, T0 - timedelta(minutes=1))
    assert [o.status for o in run(CheckPolicy(successes_before_up=2), [OK, OK], restored)] == [
        DOWN,
        UP,
    ]


CREDIBLE = 70.0
"""credible_seconds of the default policy: 2 × 30 s + 10 s."""


def past(*checks: tuple[bool, float]) -> list[PastCheck]:
    """Stored checks, newest first, as ``(ok, seconds before T0)``."""
    return [PastCheck(ok, T0 - timedelta(seconds=back), CREDIBLE) for ok, back in checks]


@pytest.mark.parametrize(
    ("policy", "status", "recent", "probes", "expected"),
    [
        pytest.param(
            CheckPolicy(successes_before_up=2),
            DOWN,
            past((True, 30), (False, 60)),
            [OK],
            [UP],
            id="a-success-before-the-stop-counts-towards-recovery",
        ),
        pytest.param(
            CheckPolicy(failures_before_down=2),
            UP,
            past((False, 30), (True, 60)),
            [FAIL],
            [DOWN],
            id="a-failure-before-the-stop-counts-towards-the-outage",
        ),
        pytest.param(
            CheckPolicy(successes_before_up=3),
            DOWN,
            past((True, 30), (True, 60), (False, 90)),
            [OK],
            [UP],
            id="two-stored-successes-and-one-new-make-three",
        ),
        pytest.param(
            CheckPolicy(successes_before_up=3),
            DOWN,
            past((True, 30), (False, 60), (True, 90)),
            [OK, OK],
            [DOWN, UP],
            id="the-streak-ends-where-the-outcome-flips",
        ),
        pytest.param(
            CheckPolicy(successes_before_up=3),
            DOWN,
            past((True, 30), (True, 200)),
            [OK, OK],
            [DOWN, UP],
            id="unknown-time-inside-the-history-ends-the-streak",
        ),
        pytest.param(
            CheckPolicy(successes_before_up=2),
            DOWN,
            past((True, CREDIBLE + 1)),
            [OK, OK],
            [DOWN, UP],
            id="unknown-time-across-the-stop-starts-afresh",
        ),
        pytest.param(
            CheckPolicy(failures_before_down=2),
            UP,
            past((False, CREDIBLE + 1)),
            [FAIL, FAIL],
            [UP, DOWN],
            id="an-old-failure-is-no-longer-half-an-outage",
        ),
        pytest.param(
            CheckPolicy(successes_before_up=2),
            DOWN,
            past((True, CREDIBLE)),
            [OK],
            [UP],
            id="at-the-edge-of-the-credibility-window-it-still-counts",
        ),
    ],
)
def test_restored_counters_resume_from_the_stored_outcomes(
    policy: CheckPolicy,
    status: Status,
    recent: list[PastCheck],
    probes: list[Probe],
    expected: list[Status],
) -> None:
    """The debouncing progress carries across a restart, but never across unknown time."""
    restored = ServiceState.restored(status, T0 - timedelta(hours=1), recent, policy=policy)
    assert [o.status for o in run(policy, probes, restored)] == expected


def test_restored_counters_stop_at_what_the_policy_can_need() -> None:
    """Ten stored failures count as three when three is the most the policy compares against."""
    policy = CheckPolicy(failures_before_down=3, successes_before_up=2)
    recent = [
        PastCheck(ok=False, at=T0 - timedelta(seconds=10 * i), credible_seconds=CREDIBLE)
        for i in range(10)
    ]
    restored = ServiceState.restored(DOWN, T0 - timedelta(hours=1), recent, policy=policy)
    assert (restored.consecutive_failures, restored.consecutive_successes) == (3, 0)
    assert restored.streak_until == T0 + timedelta(seconds=CREDIBLE)
    (outcome,) = run(policy, [OK], restored)
    assert outcome.state.streak_until is None  # a live state again


def test_clock_going_backwards_never_gives_a_negative_streak() -> None:
    """A wall clock stepped back clamps the streak at 0 instead of reporting negative time."""
    first = step(INITIAL, ok=True, response_seconds=0.01, at=T0, policy=CheckPolicy())
    earlier = T0 - timedelta(seconds=30)
    second = step(first.state, ok=True, response_seconds=0.01, at=earlier, policy=CheckPolicy())
    assert second.changed is False
    assert second.streak_seconds == 0.0
    later = T0 + timedelta(seconds=5)
    third = step(second.state, ok=True, response_seconds=0.01, at=later, policy=CheckPolicy())
    assert third.streak_seconds == 5.0  # measured from when ``up`` really began


def test_outcome_grade_uses_the_policy_thresholds() -> None:
    """``step`` grades with the service's own thresholds."""
    policy = CheckPolicy(
        grades=GradeThresholds(excellent_seconds=1, good_seconds=2, fair_seconds=3)
    )
    assert [o.grade for o in run(policy, [(True, 0.9), (True, 2.5), FAIL])] == [
        Grade.EXCELLENT,
        Grade.FAIR,
        Grade.FAILED,
    ]


@pytest.mark.parametrize(
    ("ok", "seconds", "expected"),
    [
        pytest.param(True, 0.0, Grade.EXCELLENT, id="instant"),
        pytest.param(True, 0.1, Grade.EXCELLENT, id="excellent-boundary-inclusive"),
        pytest.param(True, 0.1001, Grade.GOOD, id="just-over-excellent"),
        pytest.param(True, 0.3, Grade.GOOD, id="good-boundary-inclusive"),
        pytest.param(True, 0.3001, Grade.FAIR, id="just-over-good"),
        pytest.param(True, 1.0, Grade.FAIR, id="fair-boundary-inclusive"),
        pytest.param(True, 1.0001, Grade.POOR, id="just-over-fair"),
        pytest.param(True, 3600.0, Grade.POOR, id="very-slow"),
        pytest.param(False, 0.01, Grade.FAILED, id="failed-even-when-fast"),
        pytest.param(False, 30.0, Grade.FAILED, id="failed-slow"),
    ],
)
def test_grades(ok: bool, seconds: float, expected: Grade) -> None:
    """Grades follow the default thresholds (0.1 / 0.3 / 1.0 s), inclusive at each boundary."""
    assert grade(ok, seconds, GradeThresholds()) is expected


# --- properties -------------------------------------------------------------------------------

CHECKS = st.lists(
    st.tuples(
        st.booleans(),
        st.floats(min_value=0, max_value=5),
        st.floats(min_value=-120, max_value=600),  # seconds since the previous check; may go back
    ),
    min_size=1,
    max_size=40,
)
POLICIES = st.builds(
    CheckPolicy,
    failures_before_down=st.integers(min_value=1, max_value=5),
    successes_before_up=st.integers(min_value=1, max_value=5),
    degraded_after_seconds=st.one_of(st.none(), st.floats(min_value=0.1, max_value=4)),
)


def replay(policy: CheckPolicy, checks: list[tuple[bool, float, float]]) -> list[Outcome]:
    state, at, outcomes = INITIAL, T0, []
    for ok, seconds, delta in checks:
        at += timedelta(seconds=delta)
        outcome = step(state, ok=ok, response_seconds=seconds, at=at, policy=policy)
        outcomes.append(outcome)
        state = outcome.state
    return outcomes


@given(POLICIES, CHECKS)
def test_properties(policy: CheckPolicy, checks: list[tuple[bool, float, float]]) -> None:
    """Streaks are never negative; status changes exactly when ``changed``; debouncing holds."""
    outcomes = replay(policy, checks)
    previous: Status | None = None
    failures = successes = 0
    for (ok, _, _), outcome in zip(checks, outcomes, strict=True):
        failures = 0 if ok else failures + 1
        successes = successes + 1 if ok else 0
        assert outcome.streak_seconds >= 0
        assert outcome.previous_status is previous
        assert outcome.changed == (outcome.status is not previous)
        assert outcome.state.status is outcome.status
        if previous in {UP, DEG}:
            # fewer than k consecutive failures never take a healthy service down; k always do
            assert (outcome.status is DOWN) == (failures >= policy.failures_before_down)
        if previous is DOWN and outcome.status is not DOWN:
            assert successes >= policy.successes_before_up
        previous = outcome.status


@given(POLICIES, CHECKS)
def test_replay_is_deterministic(
    policy: CheckPolicy, checks: list[tuple[bool, float, float]]
) -> None:
    """The same inputs give the same outputs: the machine has no hidden state or clock."""
    assert replay(policy, checks) == replay(policy, checks)


def test_an_impaired_target_is_degraded_like_a_slow_one() -> None:
    """An impaired target (a cluster member down) is ``degraded`` at once, as a slow one is.

    No latency policy is needed; a failure still needs its debounce; fine again is ``up``.
    """
    state = INITIAL
    seen = []
    for i, (ok, impaired) in enumerate(
        [(True, False), (True, True), (False, False), (True, False)]
    ):
        outcome = step(
            state,
            ok=ok,
            response_seconds=0.01,
            at=T0 + timedelta(seconds=10 * i),
            policy=CheckPolicy(),
            impaired=impaired,
        )
        seen.append(outcome.status)
        state = outcome.state
    assert seen == [UP, DEG, DEG, UP]


RESUMED = st.lists(
    st.tuples(
        st.booleans(),
        st.floats(min_value=0, max_value=5),
        st.floats(min_value=0, max_value=CREDIBLE),  # checks follow each other: no unknown time
    ),
    min_size=2,
    max_size=40,
)


@settings(max_examples=400)
@given(POLICIES, RESUMED, st.data())
def test_a_restart_anywhere_changes_nothing(
    policy: CheckPolicy, checks: list[tuple[bool, float, float]], data: st.DataObject
) -> None:
    """Stopping after any check and resuming from the stored outcomes gives the same statuses.

    The restored machine sees only what the log holds: each check's raw outcome and time, and the
    newest check's status and streak start (none while the service is pending).
    """
    whole = replay(policy, checks)
    stop = data.draw(st.integers(min_value=1, max_value=len(checks) - 1))
    ats: list[datetime] = []
    at = T0
    for _, _, delta in checks:
        at += timedelta(seconds=delta)
        ats.append(at)
    stored = [PastCheck(ok, at, CREDIBLE) for (ok, _, _), at in zip(checks, ats, strict=True)]
    last = whole[stop - 1]  # pending (no verdict yet): status and since are None
    state = ServiceState.restored(last.status, last.state.since, stored[:stop][::-1], policy=policy)
    resumed = []
    for (ok, seconds, _), at in zip(checks[stop:], ats[stop:], strict=True):
        outcome = step(state, ok=ok, response_seconds=seconds, at=at, policy=policy)
        resumed.append(outcome.status)
        state = outcome.state
    assert resumed == [o.status for o in whole[stop:]]
