"""Projection-derived series, computed at scrape time from the projection (restart-safe).

``uptime_service_state_seconds_total`` comes from per-state totals that never decrease, not from
process-local counters, so after a restart ``increase()`` over any range is still exact
time-weighted accounting. It counts what was observed: a counter cannot take back seconds, so a
maintenance window (declared after the fact, too) shows in ``uptime_service_in_maintenance`` and in
the availability ratios, which leave its time out, not in this counter.

Scrapes run in the metrics thread while the event loop keeps folding events (``api/metrics_endpoint``),
so one scrape may read a service half-way through an update: a ratio can be a moment off, which a
gauge tolerates. A counter must never go backwards, so each reported total is at least the last
one reported for that series.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import timedelta
from typing import Final

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from uptime_daemon.clock import Clock
from uptime_daemon.projector.fold import STATE_ORDER, seconds_in_window, state_totals
from uptime_daemon.projector.runner import Projector
from uptime_daemon.projector.summary import current_status
from uptime_daemon.status import Status

WINDOWS: Final = (("1h", 1), ("24h", 24), ("7d", 24 * 7), ("30d", 24 * 30))


class ProjectionCollector(Collector):
    """Reads the projection when Prometheus scrapes."""

    def __init__(self, projector: Projector, clock: Clock) -> None:
        self._projector = projector
        self._clock = clock
        self._reported: dict[tuple[str, Status], float] = {}
        """Last value of each state-seconds series: what the next scrape may not go below."""

    def collect(self) -> Iterator[Metric]:
        """Yield the projection's series."""
        now = self._clock.now()
        up = GaugeMetricFamily(
            "uptime_service_up",
            "The service's verdict (its locations' quorum): 1 when up or degraded, 0 when down, "
            "NaN when unknown.",
            labels=["service"],
        )
        location_up = GaugeMetricFamily(
            "uptime_location_up",
            "One location's verdict of the service: 1 when up or degraded, 0 when down, NaN when "
            "unknown.",
            labels=["service", "location"],
        )
        status = GaugeMetricFamily(
            "uptime_service_status",
            "Current status as a state set (1 for the current one).",
            labels=["service", "status"],
        )
        ratio = GaugeMetricFamily(
            "uptime_service_availability_ratio",
            "Time-weighted availability over the window, the API's availabilityRatio: "
            "(up + degraded) / (up + degraded + down), maintenance left out.",
            labels=["service", "window"],
        )
        uptime = GaugeMetricFamily(
            "uptime_service_uptime_ratio",
            "Time-weighted uptime over the window, the API's uptimeRatio: "
            "up / (up + degraded + down), maintenance left out (degraded is not up).",
            labels=["service", "window"],
        )
        seconds = CounterMetricFamily(
            "uptime_service_state_seconds",
            "Seconds the service spent in each state (unknown: no credible check).",
            labels=["service", "state"],
        )
        in_maintenance = GaugeMetricFamily(
            "uptime_service_in_maintenance",
            "1 while a maintenance window covers the service (its notifications are held back).",
            labels=["service"],
        )
        projection = self._projector.state
        services = dict(projection.services)  # one atomic copy of the mapping
        windows = projection.maintenance
        for name in sorted(services):
            service = services[name]
            current = current_status(service, now)
            up.add_metric([name], _up(current))
            records = service.location_records()
            for location in sorted(records):
                location_up.add_metric(
                    [name, location], _up(current_status(records[location], now))
                )
            for state in STATE_ORDER:
                status.add_metric([name, state.value], float(state is current))
            excluded = (
                windows.intervals(name, now - timedelta(hours=WINDOWS[-1][1]), now)
                if windows.windows
                else []
            )
            in_maintenance.add_metric(
                [name],
                float(bool(excluded) and excluded[-1][1] >= now),  # clipped at now
            )
            for label, hours in WINDOWS:
                start = now - timedelta(hours=hours)
                clipped = [(max(lo, start), hi) for lo, hi in excluded if hi > start]
                window = seconds_in_window(service, start, now, clipped)
                known = window[Status.UP] + window[Status.DEGRADED] + window[Status.DOWN]
                if known > 0:
                    reachable = window[Status.UP] + window[Status.DEGRADED]
                    ratio.add_metric([name, label], reachable / known)
                    uptime.add_metric([name, label], window[Status.UP] / known)
            for state, total in zip(STATE_ORDER, state_totals(service, now), strict=True):
                key = (name, state)
                value = max(total, self._reported.get(key, 0.0))
                self._reported[key] = value
                seconds.add_metric([name, state.value], value)
        lag = GaugeMetricFamily(
            "uptime_projector_lag_seconds",
            "Age of the newest folded event while catching up; 0 when current.",
        )
        lag.add_metric([], self._projector.lag_seconds())
        yield from (up, location_up, status, ratio, uptime, seconds, in_maintenance, lag)


def _up(status: Status) -> float:
    return math.nan if status is Status.UNKNOWN else float(status is not Status.DOWN)
