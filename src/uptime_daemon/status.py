"""The status machine: from raw probe outcomes to a debounced service status. Pure: no I/O, no clock.

``failures_before_down`` consecutive failed probes turn ``up``/``degraded`` into ``down`` (one blip is
not an outage); ``successes_before_up`` consecutive good probes bring ``down`` back. A successful
probe slower than ``degraded_after_seconds`` is ``degraded``; switching between ``up`` and
``degraded`` is immediate, because latency is measured on every successful probe and needs no
debouncing.

A service with no verdict yet (new, or never checked from here) gets one the same way: a first
success is ``up`` (or ``degraded``) at once, but a failure is only *pending* — no verdict, no
transition, its time ``unknown`` — until ``failures_before_down`` consecutive failures make it
``down``. A monitor that starts while the target (or the network, or the monitor itself) hiccups
must not open a service's history with an outage that never happened; a daemon started against a
dead service still says ``down`` after the usual confirmation, never invents an ``up``.

The time of a check (``at``) is a parameter, never read from a clock, so the same inputs always give
the same outputs: the runner, the tests and a replay all agree.

After a restart (or a takeover) the machine resumes from the log (``ServiceState.restored``): the
status, since when, and the debouncing progress, recounted from the stored probe outcomes. A streak
is consecutive checks; the time a check's verdict is credible (``credible_seconds``) bounds how far
apart two checks can be and still follow each other, here as in the projector's accounting, so a
streak spans no ``unknown`` time — neither inside the stored history nor across the stop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
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
class PastCheck:
    """A stored check, as far as resuming the machine needs it."""

    ok: bool
    """The raw probe outcome (the event's ``probe.ok``), not the debounced status."""
    at: datetime
    """When it completed (the event's ``timestamp``)."""
    credible_seconds: float
    """How long its verdict stays credible: the event's own policy, else today's."""


@dataclass(frozen=True, slots=True)
class ServiceState:
    """What the machine remembers between checks of one service."""

    status: Status | None
    """``None`` before the first check."""
    since: datetime | None
    """When the current status began (``None`` before the first check)."""
    consecutive_failures: int = 0
    """Failed probes in a row up to now; 0 after any successful probe (restored: at most what the
    policy compares it with)."""
    consecutive_successes: int = 0
    """Successful probes in a row up to now; 0 after any failed probe (restored: likewise)."""
    streak_until: datetime | None = None
    """Only on a state restored from the log: the counters carry on to a check completing by then
    (the last stored check's credibility window), and start afresh for a later one. ``None``: they
    always carry on (a live state)."""

    @classmethod
    def initial(cls) -> ServiceState:
        """Before any check: the next check decides the status directly."""
        return INITIAL

    @classmethod
    def restored(
        cls,
        status: Status | None,
        since: datetime | None,
        recent: Sequence[PastCheck] = (),
        *,
        policy: CheckPolicy | None = None,
    ) -> ServiceState:
        """Resume from the log after a restart or a takeover.

        The status and its start carry over, so the streak (``duration``) continues instead of
        restarting at every deploy (``None``: the service was pending, still without a verdict).
        The counters are recounted from ``recent`` — this location's
        newest stored checks, newest first: the run of equal probe outcomes, each within the
        credibility window of the one before it, counted up to the most ``policy`` can need
        (``max(failures_before_down, successes_before_up)``; more changes nothing; without a
        policy, all of ``recent``). So a success stored just before a stop still counts towards
        ``successes_before_up``.

        That run carries over only to a first check that completes within the newest stored
        check's credibility window (``streak_until``): past it the projector counts the time in
        between as ``unknown``, and probes with unknown time between them are not consecutive —
        the target may have failed and recovered meanwhile. The status itself always carries over.
        """
        if not recent:
            return cls(status=status, since=since)
        newest = recent[0]
        bound = (
            len(recent)
            if policy is None
            else max(policy.failures_before_down, policy.successes_before_up)
        )
        run = 0
        later: PastCheck | None = None
        for check in recent[:bound]:
            if check.ok != newest.ok:
                break
            if later is not None and (later.at - check.at).total_seconds() > check.credible_seconds:
                break  # unknown time between them: the run started after it
            run += 1
            later = check
        return cls(
            status=status,
            since=since,
            consecutive_failures=0 if newest.ok else run,
            consecutive_successes=run if newest.ok else 0,
            streak_until=newest.at + timedelta(seconds=newest.credible_seconds),
        )


INITIAL: Final = ServiceState(status=None, since=None)
"""The state of a service that has never been checked."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """The machine's verdict on one check: everything the event payload needs, plus the next state."""

    status: Status | None
    """``None``: *pending* — a service with no verdict yet whose failures are still fewer than
    ``failures_before_down``. No verdict, no transition; stored as ``ServiceCheckPending``."""
    previous_status: Status | None
    """The status before this check; ``None`` while the service has had no verdict."""
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
    failures, successes = state.consecutive_failures, state.consecutive_successes
    if state.streak_until is not None and at > state.streak_until:
        failures = successes = 0  # a restored streak does not reach across unknown time
    failures = 0 if ok else failures + 1
    successes = successes + 1 if ok else 0
    previous = state.status
    status: Status | None
    if previous is None:  # no verdict yet: a failure must be confirmed like any other
        if ok:
            status = _healthy(slow)
        else:
            status = Status.DOWN if failures >= policy.failures_before_down else None
    elif previous is Status.DOWN:
        recovered = ok and successes >= policy.successes_before_up
        status = _healthy(slow) if recovered else Status.DOWN
    elif not ok:
        status = Status.DOWN if failures >= policy.failures_before_down else previous
    else:
        status = _healthy(slow)
    changed = status is not previous
    since = None if status is None else at if changed or state.since is None else state.since
    streak = 0.0 if since is None else max(0.0, (at - since).total_seconds())
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
