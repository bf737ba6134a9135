"""The status machine: from raw probe outcomes to a debounced service status. Pure: no I/O, no clock.

``failures_before_down`` consecutive failed probes turn ``up``/``degraded`` into ``down`` (one blip is
not an outage); ``successes_before_up`` consecutive good probes bring ``down`` back. A successful
probe slower than ``degraded_after_seconds`` is ``degraded``. The very first check has no history to
debounce against, so it decides directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from uptime_daemon.config.model import CheckPolicy, GradeThresholds


class Status(StrEnum):
    """A service's status after the status machine."""

    UP = "up"
    DEGRADED = "degraded"
    DOWN = "down"


class Grade(StrEnum):
    """Performance grade of one probe."""

    EXCELLENT = "excellent"
    GOOD = "good"
    FAIR = "fair"
    POOR = "poor"
    FAILED = "failed"


def grade(ok: bool, response_seconds: float, thresholds: GradeThresholds) -> Grade:
    """Failed probes are ``failed``; successful ones are graded by response time."""
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
    """When the current status began."""
    consecutive_failures: int = 0
    consecutive_successes: int = 0

    @classmethod
    def initial(cls) -> ServiceState:
        """Before any check."""
        return cls(status=None, since=None)

    @classmethod
    def restored(cls, status: Status, since: datetime) -> ServiceState:
        """Seed from the last stored event after a restart (streak counters start afresh)."""
        return cls(status=status, since=since)


@dataclass(frozen=True, slots=True)
class Outcome:
    """The machine's verdict on one check."""

    status: Status
    previous_status: Status | None
    changed: bool
    streak_seconds: float
    """How long ``status`` has held up to this check; 0 at a transition."""
    grade: Grade
    state: ServiceState


def _healthy(ok_status_slow: bool) -> Status:
    return Status.DEGRADED if ok_status_slow else Status.UP


def step(
    state: ServiceState, *, ok: bool, response_seconds: float, at: datetime, policy: CheckPolicy
) -> Outcome:
    """Apply one probe outcome at ``at``."""
    slow = (
        ok
        and policy.degraded_after_seconds is not None
        and response_seconds > policy.degraded_after_seconds
    )
    failures = 0 if ok else state.consecutive_failures + 1
    successes = state.consecutive_successes + 1 if ok else 0
    previous = state.status
    if previous is None:
        status = _healthy(slow) if ok else Status.DOWN
    elif previous is Status.DOWN:
        status = _healthy(slow) if ok and successes >= policy.successes_before_up else Status.DOWN
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
