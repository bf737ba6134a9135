"""One probe's running record, and the one way it becomes a ``ProbeResult``.

The record: when it began, its phase timings, the peer certificate's days left. The result masks
credentials in the detail and bounds its length.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from uptime_daemon.clock import Clock
from uptime_daemon.probes._classify import DETAIL_CHARS
from uptime_daemon.redact import redact
from uptime_daemon.results import FailureReason, Phase, ProbeResult


@dataclass(slots=True)
class Attempt:
    """Started when made; ``result`` closes it with a verdict."""

    clock: Clock
    phases: dict[Phase, float] = field(default_factory=dict)
    tls_days_left: float | None = None
    started: float = field(init=False)

    def __post_init__(self) -> None:
        self.started = self.clock.monotonic()

    def result(self, failure: FailureReason | None, detail: str) -> ProbeResult:
        """The verdict: ok when ``failure`` is ``None``; credentials masked, at most 200 chars."""
        return ProbeResult(
            ok=failure is None,
            duration_seconds=self.clock.monotonic() - self.started,
            failure=failure,
            detail=redact(detail)[:DETAIL_CHARS],
            phases=dict(self.phases),
            tls_days_left=self.tls_days_left,
        )
