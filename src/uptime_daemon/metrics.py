"""Prometheus instruments on the daemon's own registry (never the global default one).

Names follow prometheus.io: the ``uptime_`` namespace, base units, ``_total`` only on counters, label
values only from configuration (service names) or closed enums (kind, result, status). Series that
derive from the projection (availability, time per state) come from ``projector.collector`` at
scrape time instead, so they are never double-booked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from uptime_daemon.results import InconclusiveReason, ProbeResult

PROBE_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LATENESS_BUCKETS: Final = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
APPEND_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
RESULT_OK: Final = "ok"
RESULT_INCONCLUSIVE: Final = "inconclusive"
"""``uptime_probes_total``'s result of a probe that proves nothing (never counted as its timeout)."""


def _task_count() -> float:
    try:
        return float(len(asyncio.all_tasks()))
    except RuntimeError:  # scraped outside the loop (tests)
        return 0.0


class _CounterFunction(Collector):
    """A counter whose value is read from a callable at scrape time."""

    def __init__(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        self._name, self._documentation, self._read = name, documentation, read

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self._name, self._documentation)
        family.add_metric([], float(self._read()))
        yield family


class Metrics:
    """Every instrument the write path updates."""

    def __init__(self, registry: CollectorRegistry, *, version: str) -> None:
        self.registry = registry
        self.probes = Counter(
            "uptime_probes",
            "Probes completed, by result (ok or the failure reason).",
            ["service", "kind", "result"],
            registry=registry,
        )
        self.probe_duration = Histogram(
            "uptime_probe_duration_seconds",
            "Wall time of each probe.",
            ["service", "kind"],
            buckets=PROBE_BUCKETS,
            registry=registry,
        )
        self.status_changes = Counter(
            "uptime_status_changes",
            "Status transitions decided by the status machine, by new status.",
            ["service", "to"],
            registry=registry,
        )
        self.slot_wait = Histogram(
            "uptime_probe_slot_wait_seconds",
            "Time a probe waited for a slot of its host (scheduler.per_host_concurrency) before "
            "it began; not part of the probe's duration or deadline.",
            buckets=LATENESS_BUCKETS,
            registry=registry,
        )
        self.scheduler_lateness = Histogram(
            "uptime_scheduler_lateness_seconds",
            "Delay between a check's scheduled time and its start.",
            buckets=LATENESS_BUCKETS,
            registry=registry,
        )
        self.scheduler_skipped = Counter(
            "uptime_scheduler_skipped_runs_total",
            "Checks not started because the service's previous check was still running.",
            registry=registry,
        )
        self.inconclusive = Counter(
            "uptime_checks_inconclusive",
            "Checks that concluded nothing because the daemon could not keep up, by reason: "
            "daemon_overloaded (a probe's deadline lapsed while the daemon's own loop was late) "
            "or shed (a due check never started). Never a failure, never a transition.",
            ["reason"],
            registry=registry,
        )
        for reason in InconclusiveReason:
            self.inconclusive.labels(
                reason.value
            )  # both series from the start: rate() sees the first
        self.events_appended = Counter(
            "uptime_events_appended", "Events appended to the event store.", registry=registry
        )
        self.append_failures = Counter(
            "uptime_event_append_failures",
            "Appends the event store refused or could not take.",
            registry=registry,
        )
        self.append_duration = Histogram(
            "uptime_event_append_duration_seconds",
            "Duration of each append to the event store.",
            buckets=APPEND_BUCKETS,
            registry=registry,
        )
        self.notifications = Counter(
            "uptime_notifications",
            "Notifications this daemon settled, by channel and result (delivered, suppressed, "
            "abandoned) and delivery attempts that failed (failed).",
            ["channel", "result"],
            registry=registry,
        )
        self.heartbeats = Counter(
            "uptime_heartbeats",
            "Outgoing heartbeats ([alerting] heartbeat_url), by result (ok, failed).",
            ["result"],
            registry=registry,
        )
        self.store_up = Gauge(
            "uptime_store_up",
            "1 when the last event-store operation succeeded, else 0.",
            registry=registry,
        )
        self.reload_ok = Gauge(
            "uptime_config_last_reload_successful",
            "1 when the last configuration reload (SIGHUP) succeeded, 0 when it was rejected.",
            registry=registry,
        )
        self.reload_ok.set(1)
        self.reload_time = Gauge(
            "uptime_config_last_reload_success_timestamp_seconds",
            "When the configuration was last loaded successfully (start-up or reload).",
            registry=registry,
        )
        self.reload_time.set_to_current_time()
        ProcessCollector(registry=registry)  # process_open_fds, process_resident_memory_bytes, ...
        Gauge(
            "uptime_event_loop_tasks",
            "asyncio tasks alive in the daemon's event loop.",
            registry=registry,
        ).set_function(_task_count)
        build = Gauge(
            "uptime_build_info", "Build information; always 1.", ["version"], registry=registry
        )
        build.labels(version=version).set(1)

    def watch_spool(self, depth: Callable[[], int], dropped: Callable[[], int]) -> None:
        """Expose the outage spool: its depth now, and drops since start."""
        Gauge(
            "uptime_spool_events", "Events waiting in the outage spool.", registry=self.registry
        ).set_function(lambda: float(depth()))
        self.registry.register(
            _CounterFunction("uptime_spool_dropped_events", "Events dropped: spool full.", dropped)
        )

    def observe_probe(
        self,
        service: str,
        kind: str,
        result: ProbeResult,
        *,
        changed_to: str | None,
        slot_wait_seconds: float = 0.0,
        inconclusive: InconclusiveReason | None = None,
    ) -> None:
        """Count one completed check (an inconclusive one apart from every failure)."""
        self.slot_wait.observe(slot_wait_seconds)
        if inconclusive is not None:
            reason = RESULT_INCONCLUSIVE
            self.inconclusive.labels(inconclusive.value).inc()
        else:
            reason = RESULT_OK if result.failure is None else result.failure.value
        self.probes.labels(service=service, kind=kind, result=reason).inc()
        self.probe_duration.labels(service=service, kind=kind).observe(result.duration_seconds)
        if changed_to is not None:
            self.status_changes.labels(service=service, to=changed_to).inc()

    def observe_append(self, duration_seconds: float, events: int, *, ok: bool) -> None:
        """Record one append (the ``InstrumentedStore`` hook)."""
        self.append_duration.observe(duration_seconds)
        self.store_up.set(1 if ok else 0)
        if ok:
            self.events_appended.inc(events)
        else:
            self.append_failures.inc()

    def observe_reload(self, *, ok: bool) -> None:
        """Record the outcome of a configuration reload."""
        self.reload_ok.set(1 if ok else 0)
        if ok:
            self.reload_time.set_to_current_time()

    def observe_lateness(self, seconds: float) -> None:
        """Record how late a check started."""
        self.scheduler_lateness.observe(seconds)

    def count_notification(self, channel: str, result: str) -> None:
        """A notification settled (or one delivery attempt failed) on ``channel``."""
        self.notifications.labels(channel, result).inc()

    def count_heartbeat(self, *, ok: bool) -> None:
        """One outgoing heartbeat was sent (or not)."""
        self.heartbeats.labels("ok" if ok else "failed").inc()

    def count_skipped_run(self) -> None:
        """A check was due while the previous one of its service still ran: shed."""
        self.scheduler_skipped.inc()
        self.inconclusive.labels(InconclusiveReason.SHED.value).inc()

    def count_missed_run(self) -> None:
        """A check could not start within its misfire grace (the daemon was that late): shed."""
        self.inconclusive.labels(InconclusiveReason.SHED.value).inc()

    def watch_loop_lag(self, cumulative_seconds: Callable[[], float]) -> None:
        """Expose the loop-lag monitor's counter, read at scrape time."""
        self.registry.register(
            _CounterFunction(
                "uptime_event_loop_lag_seconds",
                "Seconds the daemon's event loop ran late (woke after its timers were due).",
                cumulative_seconds,
            )
        )
