"""Prometheus instruments on the daemon's own registry (never the global default one).

Names follow prometheus.io: the ``uptime_`` namespace, base units, ``_total`` only on counters, label
values only from configuration (service names) or closed enums (kind, result, status). Series that
derive from the projection (availability, time per state) come from ``projector.collector`` at
scrape time instead, so they are never double-booked.

The series with a ``service`` label are counted in ``ServiceSeries``, not in prometheus_client
instruments: there are tens of thousands of them at 10,000 services, and prometheus_client formats
every line again on every scrape (seconds of CPU). ``ServiceSeries`` keeps each service's lines as
bytes and rewrites only those of services probed since the last scrape (``exposition``). Per
service by default: ``uptime_probes_total{result}``, ``uptime_status_changes_total{to}`` and the
sum and count of probe time (``uptime_service_probe_duration_seconds``, a summary: the mean over any
range); the probe-duration histogram is per kind. ``[metrics] per_service_histograms`` gives the
histogram a ``service`` label again, 15 lines per service.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from uptime_daemon.exposition import (
    Block,
    Family,
    FamilyType,
    escape,
    number,
    render,
    template,
)
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


PROBES: Final = Family(
    "uptime_probes",
    FamilyType.COUNTER,
    "Probes completed, by result (ok or the failure reason).",
)
PROBE_TIME: Final = Family(
    "uptime_service_probe_duration_seconds",
    FamilyType.SUMMARY,
    "Wall time of the service's probes: rate(_sum) / rate(_count) is their mean.",
)
STATUS_CHANGES: Final = Family(
    "uptime_status_changes",
    FamilyType.COUNTER,
    "Status transitions decided by the status machine, by new status.",
)
PROBE_DURATION: Final = Family(
    "uptime_probe_duration_seconds",
    FamilyType.HISTOGRAM,
    "Wall time of each probe.",
)
_BUCKET_BOUNDS: Final = tuple(number(bound) for bound in (*PROBE_BUCKETS, float("inf")))


@dataclass(slots=True)
class _Tally:
    """One service's counts, as ``ServiceSeries`` keeps them."""

    probes: dict[tuple[str, str], int] = field(default_factory=dict)
    """(kind, result) → probes."""
    durations: dict[str, list[float]] = field(default_factory=dict)
    """Kind → [seconds, probes, probes per bucket of ``PROBE_BUCKETS`` and +Inf (histograms on)]."""
    changes: dict[str, int] = field(default_factory=dict)
    """New status → transitions."""
    name: str = ""
    """The service's name as a label value (``escape``)."""

    def line(self, name: str, value: str, **labels: str) -> str:
        """The sample line of ``series(name, service=<the service>, **labels)`` with ``value``."""
        return template(name, **labels).line(self.name, value)

    def lines(self, *, histograms: bool) -> Block:
        """This service's lines of each family, in ``ServiceSeries.families`` order."""
        probes = "".join(
            self.line(PROBES.sample, number(n), kind=kind, result=result)
            for (kind, result), n in self.probes.items()
        )
        summary, buckets = [], []
        for kind, (total, count, *per_bucket) in self.durations.items():
            total_text, count_text = number(total), number(count)
            summary.append(self.line(f"{PROBE_TIME.name}_sum", total_text, kind=kind))
            summary.append(self.line(f"{PROBE_TIME.name}_count", count_text, kind=kind))
            if histograms:
                cumulative = 0.0
                for bound, n in zip(_BUCKET_BOUNDS, per_bucket, strict=True):
                    cumulative += n
                    bucket = f"{PROBE_DURATION.name}_bucket"
                    buckets.append(self.line(bucket, number(cumulative), kind=kind, le=bound))
                buckets.append(self.line(f"{PROBE_DURATION.name}_sum", total_text, kind=kind))
                buckets.append(self.line(f"{PROBE_DURATION.name}_count", count_text, kind=kind))
        changes = "".join(
            self.line(STATUS_CHANGES.sample, number(n), to=to) for to, n in self.changes.items()
        )
        block = [probes.encode(), "".join(summary).encode(), changes.encode()]
        if histograms:
            block.append("".join(buckets).encode())
        return block


class ServiceSeries:
    """The write path's per-service series, rendered incrementally (an ``exposition.TextSource``).

    Probes are counted on the event loop; a scrape renders in the metrics thread. One lock keeps a
    service's counts whole while either touches them; a scrape rewrites only the services counted
    since the previous one, and counts only grow, so no series ever goes backwards.
    """

    def __init__(self, *, histograms: bool) -> None:
        self._histograms = histograms
        self.families: tuple[Family, ...] = (PROBES, PROBE_TIME, STATUS_CHANGES) + (
            (PROBE_DURATION,) if histograms else ()
        )
        self._lock = threading.Lock()
        self._rendering = threading.Lock()
        self._tallies: dict[str, _Tally] = {}
        self._dirty: set[str] = set()
        self._blocks: dict[str, Block] = {}

    def observe(
        self,
        service: str,
        kind: str,
        result: str,
        duration_seconds: float,
        changed_to: str | None,
    ) -> None:
        """Count one probe of ``service``."""
        with self._lock:
            tally = self._tallies.get(service)
            if tally is None:
                tally = self._tallies[service] = _Tally(name=escape(service))
            key = (kind, result)
            tally.probes[key] = tally.probes.get(key, 0) + 1
            duration = tally.durations.get(kind)
            if duration is None:
                width = 2 + len(_BUCKET_BOUNDS) if self._histograms else 2
                duration = tally.durations[kind] = [0.0] * width
            duration[0] += duration_seconds
            duration[1] += 1
            if self._histograms:
                index = next(
                    (i for i, bound in enumerate(PROBE_BUCKETS) if duration_seconds <= bound),
                    len(PROBE_BUCKETS),
                )
                duration[2 + index] += 1
            if changed_to is not None:
                tally.changes[changed_to] = tally.changes.get(changed_to, 0) + 1
            self._dirty.add(service)

    def pieces(self, *, openmetrics: bool) -> list[bytes]:
        """Every family, the lines of services counted since the last scrape rewritten first."""
        with self._rendering:
            with self._lock:
                dirty, self._dirty = self._dirty, set()
            for service in dirty:
                with self._lock:
                    self._blocks[service] = self._tallies[service].lines(
                        histograms=self._histograms
                    )
            return render(self.families, self._blocks.values(), openmetrics=openmetrics)


class Metrics:
    """Every instrument the write path updates."""

    def __init__(
        self, registry: CollectorRegistry, *, version: str, per_service_histograms: bool = False
    ) -> None:
        """``per_service_histograms``: ``[metrics]`` of the settings, read once (a restart applies it)."""
        self.registry = registry
        self.services = ServiceSeries(histograms=per_service_histograms)
        """Served beside ``registry`` (``exposition.exposition``), never registered in it."""
        self.probe_duration = (
            None
            if per_service_histograms
            else Histogram(
                PROBE_DURATION.name,
                PROBE_DURATION.help,
                ["kind"],
                buckets=PROBE_BUCKETS,
                registry=registry,
            )
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
        self.services.observe(service, kind, reason, result.duration_seconds, changed_to)
        if self.probe_duration is not None:
            self.probe_duration.labels(kind).observe(result.duration_seconds)

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
