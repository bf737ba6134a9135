"""The status machine: from raw probe outcomes to a debounced service status. Pure: no I/O, no clock.

``failures_before_down`` consecutive failed probes turn ``up``/``degraded`` into ``down`` (one blip is
not an outage); ``successes_before_up`` consecutive good probes bring ``down`` back. A successful
probe slower than ``degraded_after_seconds`` is ``degraded``; switching between ``up`` and
``degraded`` is immediate, because latency is measured on every successful probe and needs no
debouncing. The very first check has no history to debounce against, so it decides directly: a
daemon that starts against a dead service reports ``down`` at once instead of inventing an ``up``.

The time of a check (``at``) is a parameter, never read from a clock, so the same inputs always give
the same outputs: the runner, the tests and a replay all agree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final

from uptime_daemon.config.model import CheckPolicy, GradeThresholds, Settings


class Status(StrEnum):
    """The one status vocabulary: of a check's verdict, of a second of wall time, of the API.

    A check concludes ``up``, ``degraded`` or ``down`` (``VERDICTS``: the seeds' ``status`` values,
    all that events ever store). ``unknown`` is the absence of a credible verdict — no check yet, or
    none for longer than ``credible_seconds`` — so only the projection and the API report it.
    """

    UP = "up"
    DEGRADED = "degraded"
    DOWN = "down"
    UNKNOWN = "unknown"


VERDICTS: Final = frozenset({Status.UP, Status.DEGRADED, Status.DOWN})
"""What a check can conclude; the status machine returns nothing else."""


def credible_seconds(interval_seconds: float, timeout_seconds: float) -> float:
    """How long a verdict stays credible after its check: 2 × interval + timeout (DESIGN §3).

    One missed check is tolerated (the next one may be late by up to its timeout); past that the
    time is ``unknown``, neither up nor down.
    """
    return 2 * interval_seconds + timeout_seconds


def credibility(settings: Settings) -> Callable[[str], float]:
    """``credible_seconds`` of each service by name under ``settings``.

    For events that do not record their policy, such as the seeds'.
    """

    def of(service: str) -> float:
        policy = settings.policy(service)
        return credible_seconds(policy.interval_seconds, policy.timeout_seconds)

    return of


class Grade(StrEnum):
    """Performance grade of one probe, the seeds' ``performanceGrade``."""

    EXCELLENT = "excellent"
    GOOD = "good"
    FAIR = "fair"
    POOR = "poor"
    FAILED = "failed"


def grade(ok: bool, response_seconds: float, thresholds: GradeThresholds) -> Grade:
    """Grade one probe: failed probes are ``failed``; successful ones by response time.

    Each threshold is inclusive (a probe of exactly ``excellent_seconds`` is excellent), so a
    configured limit reads as "at most this long".
    """
    if not ok:
        return Grade.FAILED
    if response_seconds <= thresholds.excellent_seconds:
        return Grade.EXCELLENT
    if response_seconds <= thresholds.good_seconds:
        return Grade.GOOD
    if response_seconds <= thresholds.fair_seconds:
        return Grade.FAIR
    return Grade.POOR


@dataclass(frozen=True, slots=True)
class ServiceState:
    """What the machine remembers between checks of one service."""

    status: Status | None
    """``None`` before the first check."""
    since: datetime | None
    """When the current status began (``None`` before the first check)."""
    consecutive_failures: int = 0
    """Failed probes in a row up to now; 0 after any successful probe."""
    consecutive_successes: int = 0
    """Successful probes in a row up to now; 0 after any failed probe."""

    @classmethod
    def initial(cls) -> ServiceState:
        """Before any check: the next check decides the status directly."""
        return INITIAL

    @classmethod
    def restored(cls, status: Status, since: datetime) -> ServiceState:
        """Seed from the last stored event after a restart.

        The status and its start carry over, so the streak (``duration``) continues instead of
        restarting at every deploy; the counters start afresh because the stored events record
        statuses, not debouncing progress (at worst a recovery or outage is confirmed one probe later).
        """
        return cls(status=status, since=since)


INITIAL: Final = ServiceState(status=None, since=None)
"""The state of a service that has never been checked."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """The machine's verdict on one check: everything the event payload needs, plus the next state."""

    status: Status
    previous_status: Status | None
    """The status before this check; ``None`` on the first check ever."""
    changed: bool
    """``status != previous_status``: marks transitions, so timelines and incidents come from the log."""
    streak_seconds: float
    """How long ``status`` has held up to this check; 0 at a transition, never negative."""
    grade: Grade
    state: ServiceState
    """Feed this to the next ``step`` for the same service."""


def _healthy(slow: bool) -> Status:
    """The status a successful probe earns by its latency alone."""
    return Status.DEGRADED if slow else Status.UP


def step(
    state: ServiceState,
    *,
    ok: bool,
    response_seconds: float,
    at: datetime,
    policy: CheckPolicy,
    impaired: bool = False,
) -> Outcome:
    """Apply one probe outcome observed at ``at`` (the check's completion time).

    ``impaired``: the probe succeeded but the target said it serves impaired (a cluster member
    down): ``degraded``, as a slow answer is. ``at`` may go backwards (a wall clock stepped back):
    the status logic does not depend on it, and the streak is clamped at 0 rather than reported
    negative.
    """
    slow = ok and (
        impaired
        or (
            policy.degraded_after_seconds is not None
            and response_seconds > policy.degraded_after_seconds
        )
    )
    failures = 0 if ok else state.consecutive_failures + 1
    successes = state.consecutive_successes + 1 if ok else 0
    previous = state.status
    if previous is None:
        status = _healthy(slow) if ok else Status.DOWN
    elif previous is Status.DOWN:
        recovered = ok and successes >= policy.successes_before_up
        status = _healthy(slow) if recovered else Status.DOWN
    elif not ok:
        status = Status.DOWN if failures >= policy.failures_before_down else previous
    else:
        status = _healthy(slow)
    changed = status is not previous
    since = at if changed or state.since is None else state.since
    streak = max(0.0, (at - since).total_seconds())
    return Outcome(
        status=status,
        previous_status=previous,
        changed=changed,
        streak_seconds=streak,
        grade=grade(ok, response_seconds, policy.grades),
        state=ServiceState(
            status=status,
            since=since,
            consecutive_failures=failures,
            consecutive_successes=successes,
        ),
    )
