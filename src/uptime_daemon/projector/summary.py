"""What on-call asks, computed from the projection for a window ``[now - hours, now)``.

* Time-weighted figures are exact: they come from the status periods, clipped at both window edges.
* Check counts and response-time figures come from hourly buckets, so the window's first hour is
  taken whole: they cover ``[floor_to_hour(now - hours), now)``. Percentiles carry the histogram's
  relative error bound (``HISTOGRAM_RELATIVE_ERROR``, about 9 %).
* Incidents are those overlapping the window; their ``start``/``end`` are the real ones. Their
  time splits into observed down seconds and unknown seconds (the daemon was not looking: a gap
  past the credibility window), which add up to the duration; MTTR and the longest outage use the
  observed down seconds, so they never count time no check covered. Each incident's down seconds
  inside the window (outside maintenance) are its share of ``seconds[down]``: they add up to it.
* Maintenance (sorted, merged intervals of the service's windows) is left out of the time-weighted
  figures and reported apart; an incident entirely inside maintenance is not an incident, and one
  partly inside counts only its time outside. Check counts and response times are what happened.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from uptime_daemon.maintenance import Interval, covered_seconds, outside
from uptime_daemon.projector.fold import (
    HISTOGRAM_BUCKETS,
    HISTOGRAM_RELATIVE_ERROR,
    HOUR_SECONDS,
    ServiceProjection,
    histogram_value,
    incident_time,
    seconds_in_window,
    spans,
    status_at,
    timeline,
)
from uptime_daemon.projector.periods import Period
from uptime_daemon.status import Status


@dataclass(frozen=True, slots=True)
class CheckCounts:
    """Count-based figures (what Uptime Kuma and Gatus report)."""

    total: int
    up: int
    degraded: int
    down: int
    inconclusive: int = 0
    """Checks that concluded nothing (the daemon could not keep up): not in ``total``."""

    @property
    def up_ratio(self) -> float | None:
        """Share of checks whose verdict was up."""
        return self.up / self.total if self.total else None


@dataclass(frozen=True, slots=True)
class ResponseTimes:
    """Response-time figures of non-down checks, in seconds."""

    samples: int
    average: float | None
    p50: float | None
    p95: float | None
    p99: float | None
    relative_error: float = HISTOGRAM_RELATIVE_ERROR


@dataclass(frozen=True, slots=True)
class IncidentView:
    """An outage overlapping the window."""

    start: datetime
    end: datetime | None
    duration_seconds: float
    """Wall-clock duration, ``end - start`` (up to ``now`` while still open)."""
    seconds_in_window: float
    """Observed down seconds inside the window and outside maintenance (its part of ``seconds[down]``)."""
    maintenance_seconds: float = 0.0
    """The incident's time inside the window that maintenance covers."""
    down_seconds: float = 0.0
    """Observed down seconds of the whole incident (credible down verdicts)."""
    unknown_seconds: float = 0.0
    """Seconds of the whole incident without a credible verdict; ``down + unknown = duration``."""


@dataclass(frozen=True, slots=True)
class ServiceSummary:
    """Every figure of one service over one window."""

    service: str
    window_start: datetime
    window_end: datetime
    status: Status
    """Current status; ``unknown`` when never checked or the last verdict is stale."""
    since: datetime | None
    last_check: datetime | None
    last_response_seconds: float | None
    seconds: dict[Status, float]
    """Outside maintenance; with ``maintenance_seconds`` they add up to the window."""
    maintenance_seconds: float
    uptime_ratio: float | None
    """up / (up + degraded + down) seconds — degraded is not up, maintenance is left out."""
    availability_ratio: float | None
    """(up + degraded) / (up + degraded + down) seconds — reachable at all."""
    checks: CheckCounts
    response: ResponseTimes
    incidents: tuple[IncidentView, ...]
    mttr_seconds: float | None
    """Mean observed down seconds of the incidents that ended inside the window."""
    mtbf_seconds: float | None
    """Up-or-degraded seconds in the window per incident that began in it."""
    longest_outage_seconds: float | None
    """The most observed down seconds of one incident overlapping the window."""


def current_status(service: ServiceProjection, now: datetime) -> Status:
    """The status now: the last verdict while credible, else unknown (for a quorum, the rule)."""
    return status_at(service, now)


def _percentile(histogram: list[int], total: int, fraction: float) -> float | None:
    """The value of the bucket holding the ``fraction`` rank (``histogram``: index → count)."""
    if total == 0:
        return None
    rank = fraction * total
    seen = 0
    for index, count in enumerate(histogram):
        seen += count
        if seen >= rank:  # first reached at a bucket that counts (rank > 0)
            return histogram_value(index)
    return histogram_value(max(index for index, count in enumerate(histogram) if count))


def summarize(
    service: ServiceProjection,
    *,
    now: datetime,
    hours: float,
    maintenance: Sequence[Interval] = (),
) -> ServiceSummary:
    """All figures for ``[now - hours, now)``, ``maintenance`` left out (see the module docstring)."""
    start = now - timedelta(hours=hours)
    seconds = seconds_in_window(service, start, now, maintenance)
    known = seconds[Status.UP] + seconds[Status.DEGRADED] + seconds[Status.DOWN]
    first_hour = int(start.timestamp()) // HOUR_SECONDS
    last_hour = int(now.timestamp()) // HOUR_SECONDS
    counts = [0, 0, 0]
    dense = [0] * HISTOGRAM_BUCKETS
    response_sum, inconclusive = service.buckets.add_window(first_hour, last_hour, counts, dense)
    samples = sum(dense)
    incidents = _incidents(service, start, now, maintenance)
    resolved = [i for i in incidents if i.end is not None and i.end >= start]
    started = [i for i in incidents if i.start >= start]
    return ServiceSummary(
        service=service.name,
        window_start=start,
        window_end=now,
        status=current_status(service, now),
        since=service.since,
        last_check=service.last_check,
        last_response_seconds=service.last_response_seconds,
        seconds=seconds,
        maintenance_seconds=covered_seconds(start, now, maintenance),
        uptime_ratio=seconds[Status.UP] / known if known else None,
        availability_ratio=(seconds[Status.UP] + seconds[Status.DEGRADED]) / known
        if known
        else None,
        checks=CheckCounts(sum(counts), counts[0], counts[1], counts[2], inconclusive),
        response=ResponseTimes(
            samples=samples,
            average=response_sum / samples if samples else None,
            p50=_percentile(dense, samples, 0.50),
            p95=_percentile(dense, samples, 0.95),
            p99=_percentile(dense, samples, 0.99),
        ),
        incidents=tuple(incidents),
        mttr_seconds=sum(i.down_seconds for i in resolved) / len(resolved) if resolved else None,
        mtbf_seconds=(seconds[Status.UP] + seconds[Status.DEGRADED]) / len(started)
        if started
        else None,
        longest_outage_seconds=max((i.down_seconds for i in incidents), default=None),
    )


def _incidents(
    service: ServiceProjection, start: datetime, now: datetime, maintenance: Sequence[Interval]
) -> list[IncidentView]:
    views = []
    down = _down_pieces(service, start, now, maintenance)
    cursor = 0
    for incident in service.incidents.ending_after(start):  # the frozen left alone
        if incident.start >= now or (incident.end is not None and incident.end <= start):
            continue
        time = incident_time(service, incident, now)
        closing = time.end if time.end is not None else now
        if closing <= start:
            continue
        lo, hi = max(incident.start, start), min(closing, now)
        planned = covered_seconds(lo, hi, maintenance) if maintenance else 0.0
        if maintenance and planned >= (hi - lo).total_seconds():
            continue  # entirely planned: maintenance, not an outage
        # Incidents and down pieces are both in time order and every down piece lies inside one
        # incident: one walk over both.
        while cursor < len(down) and down[cursor][1] <= lo:
            cursor += 1
        inside = 0.0
        while cursor < len(down) and down[cursor][0] < hi:
            piece_lo, piece_hi = down[cursor]
            inside += (min(piece_hi, hi) - max(piece_lo, lo)).total_seconds()
            if piece_hi > hi:
                break
            cursor += 1
        views.append(
            IncidentView(
                start=incident.start,
                end=time.end,
                duration_seconds=(closing - incident.start).total_seconds(),
                seconds_in_window=inside,
                maintenance_seconds=planned,
                down_seconds=time.down_seconds,
                unknown_seconds=time.unknown_seconds,
            )
        )
    return views


def _down_pieces(
    service: ServiceProjection, start: datetime, now: datetime, maintenance: Sequence[Interval]
) -> list[Interval]:
    """The down stretches inside ``[start, now)`` and outside maintenance, in time order."""
    pieces: list[Interval] = []
    for period in spans(service, now, since=start):
        if period.state is not Status.DOWN:
            continue
        lo, hi = max(period.start, start), min(period.end, now)
        if hi <= lo:
            continue
        if maintenance:
            pieces.extend(outside(lo, hi, maintenance))
        else:
            pieces.append((lo, hi))
    return pieces


def service_timeline(service: ServiceProjection, *, now: datetime, hours: float) -> list[Period]:
    """Contiguous status periods in ``[now - hours, now)``."""
    return timeline(service, now - timedelta(hours=hours), now)


MAINTENANCE: Final = "maintenance"


def with_maintenance(
    periods: Sequence[Period], maintenance: Sequence[Interval]
) -> list[tuple[str, datetime, datetime]]:
    """``(state, start, end)`` of contiguous ``periods``, maintenance shown as ``maintenance``.

    A maintenance stretch spanning several periods becomes one.
    """
    out: list[tuple[str, datetime, datetime]] = []

    def extend(state: str, lo: datetime, hi: datetime) -> None:
        if hi <= lo:
            return
        if out and out[-1][0] == state and out[-1][2] == lo:
            out[-1] = (state, out[-1][1], hi)
        else:
            out.append((state, lo, hi))

    for period in periods:
        cursor = period.start
        for lo, hi in maintenance:
            if hi <= cursor:
                continue
            if lo >= period.end:
                break
            extend(period.state.value, cursor, max(cursor, lo))
            cursor = max(cursor, lo)
            extend(MAINTENANCE, cursor, min(hi, period.end))
            cursor = min(hi, period.end)
        extend(period.state.value, cursor, period.end)
    return out
