"""Scale: thousands of HTTP services against one loopback nginx; lateness, CPU, memory, throughput.

Scenario A (``10k``): 10,000 HTTP services every 60 s (timeout 5 s), measured over 180 s.
Scenario B (``1k``): 1,000 HTTP services every 1 s (timeout 1 s: it may not exceed the interval),
measured over 60 s. Each scenario gets a fresh work dir, SQLite store, nginx (one worker) and daemon.

After start-up the script waits until every service has a stored ``ServiceStatusChanged`` (the
scheduler spreads first runs at ~500 a second, and a first run also creates the stream), lets the
daemon settle, then measures one window without touching the daemon in between: one /metrics scrape
either side, and inside it only when ``--scrape-every`` asks for Prometheus-like scrapes (plain text,
uncompressed, ~14 MiB at 10,000 services; with ``--scrape-gzip`` gzipped, as Prometheus asks for
them). Per scenario:

* scheduling lateness p50/p99/max from the stored events of runs due inside the window (see
  ``event_lateness_ms``), with the daemon's own ``uptime_scheduler_lateness_seconds`` histogram over
  the window as a cross-check, and the lateness of every service's first run (start-up) apart;
* daemon CPU as % of one core over the window (and per second: the load comes in bursts), RSS at the
  end and its high-water mark (before the first scrape, and since start);
* events appended and probes per second (``uptime_events_appended_total``, ``uptime_probes_total``),
  failed probes, mean append time;
* skipped runs: ``CheckScheduler.skipped_runs`` is not in /metrics, so they are counted from
  APScheduler's warning in the daemon log, and cross-checked from the events (gaps of more than 1.5
  intervals between a service's consecutive ``scheduledAt``);
* errors and warnings in daemon.log, and how the machine itself was loaded (other processes skew
  every figure on a 2-core box: ``host_busy_percent``);
* with ``--scrape-every``, the in-window scrapes' duration p50/max (``scrape_in_window_s``), and the
  size of the last scrape (``metrics_bytes``, plain text, uncompressed).

Jitter is the daemon's default, 1 s (the scheduler caps it at a tenth of the interval: 1 s for A,
0.1 s for B); ``max_concurrency`` is the default 256. Figures are printed, one JSON line a scenario,
beside the targets (10,000 at 60 s: lateness p99 < 50 ms, ≤ 15 % of one core, RSS < 300 MB); nothing
is asserted. ``--py-spy N`` profiles the daemon for N s after the window and prints its top frames.
``--history-days D`` starts the daemon from a snapshot in which every service already holds D days
(``_held.seed``: one folded record, a check a minute, one in 2,000 down, copied under every
name), to measure a daemon that has run that long.

    python bench/scale.py                                              # both, full size (~7 min)
    python bench/scale.py --scenario 10k --services 2000 --window 60   # short checks
    python bench/scale.py --scenario 1k --services 300 --window 20
    python bench/scale.py --scenario 10k --scrape-every 15 --py-spy 20
    python bench/scale.py --scenario 10k --scrape-every 15 --history-days 89
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, NamedTuple

from _common import (
    Processes,
    cpu_seconds,
    daemon_config,
    emit,
    fetch,
    http_services,
    machine,
    metric_sum,
    percentile,
    processes,
    rss_mib,
    start_daemon,
    start_nginx,
)
from _held import seed

from uptime_daemon.store import UPTIME_STREAM_PREFIX, read_log
from uptime_daemon.store.sqlite import SqliteEventStore

FIRST_RUNS_PER_SECOND: Final = 500  # scheduler.FIRST_RUNS_PER_SECOND: start-up spread of first runs
MAX_JITTER_FRACTION: Final = 0.1  # scheduler.MAX_JITTER_FRACTION: jitter is capped at interval / 10
STATUS_CHANGED: Final = "ServiceStatusChanged"
DEFAULT_JITTER_SECONDS: Final = 1.0  # SchedulerSettings.jitter_seconds default
DEFAULT_MAX_CONCURRENCY: Final = 256  # SchedulerSettings.max_concurrency default
TARGETS_10K: Final = {"lateness_p99_ms": 50, "cpu_percent_one_core": 15, "rss_mb": 300}
MIB: Final = 1024 * 1024


@dataclass(frozen=True)
class Scenario:
    """One measured configuration."""

    name: str
    services: int
    interval: float
    timeout: float
    window: float
    warmup: float | None
    jitter: float
    max_concurrency: int
    py_spy: int = 0
    py_spy_during: bool = False
    scrape_every: float = 0
    scrape_gzip: bool = False
    history_days: float = 0

    @property
    def effective_jitter(self) -> float:
        """The jitter the scheduler really applies (capped at a tenth of the interval)."""
        return min(self.jitter, self.interval * MAX_JITTER_FRACTION)

    @property
    def first_run_spread(self) -> float:
        """How long the scheduler spreads the first runs over (``CheckScheduler._spread_seconds``)."""
        return min(self.interval, max(self.jitter, self.services / FIRST_RUNS_PER_SECOND))


def _finite(value: float) -> float | None:
    """``value`` rounded to 0.1, or None for NaN (no runs), so the line stays strict JSON."""
    return None if math.isnan(value) else round(value, 1)


def _seconds(value: float) -> float | None:
    """``value`` rounded to the millisecond, or None for NaN (no scrapes)."""
    return None if math.isnan(value) else round(value, 3)


def _unix(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()  # 3.11 reads the trailing Z


def event_lateness_ms(data: dict[str, Any]) -> float:
    """How late a probe started after its due time, from one stored event, in ms.

    ``timestamp`` is when the check completed and ``metadata.responseTime`` how long the probe took,
    so ``timestamp - responseTime`` is (about) when the probe started; minus ``scheduledAt`` that is
    the lateness. ``scheduledAt`` is the check's slot, without its jitter (``GridTrigger`` labels a
    check with its slot), so this figure includes the jitter, uniform in ``[0, effective_jitter)``:
    with the default 1 s its p50 is ~500 ms on an idle daemon. The daemon's own histogram
    (``lateness_histogram``) starts at the jittered due time: it is the scheduler's lateness proper.
    This one covers everything between the slot and the probe: the jitter, APScheduler's wake-up,
    the global concurrency semaphore, the per-service lock, and the check's own preparation (the
    histogram stops at the job's start, before the semaphore). Resolution ~1-2 ms: both timestamps are truncated to the
    millisecond and responseTime is rounded to it, so a punctual run can come out at -1 or +1 ms;
    negative results are clamped to 0 (a run cannot start early) before percentiles are taken.
    """
    started = _unix(data["timestamp"]) * 1000 - float(data["metadata"]["responseTime"])
    return max(0.0, started - _unix(data["scheduledAt"]) * 1000)


class Run(NamedTuple):
    """One stored check, reduced to what the figures need."""

    stream: str
    due: float
    """``scheduledAt``, unix seconds."""
    lateness_ms: float
    ok: bool


def read_runs(db: Path) -> list[Run]:
    """Every stored ``ServiceStatusChanged``, read through the daemon's own store once it stopped.

    The store's file layout (names by id, compressed payloads) is its own business: reading it
    through ``read_log`` keeps this script independent of it.
    """
    return asyncio.run(_read_runs(db))


async def _read_runs(db: Path) -> list[Run]:
    store = await SqliteEventStore.open(db)
    runs: list[Run] = []
    after: int | None = None
    try:
        while rows := await read_log(store, after=after, stream_prefix=None, limit=20_000):
            for _position, stream, _revision, event_type, data, _recorded in rows:
                if event_type != STATUS_CHANGED:
                    continue
                event = json.loads(data)
                runs.append(
                    Run(
                        stream,
                        _unix(event["scheduledAt"]),
                        event_lateness_ms(event),
                        event["probe"]["ok"],
                    )
                )
            after = rows[-1][0]
    finally:
        await store.close()
    return runs


def services_with_events(db: Path) -> int:
    """How many services' streams have an event, from the live file (read-only: the daemon writes).

    A service's first check creates its stream. From the store's own ``streams`` table, or the
    events' stream column of the first file layout.
    """
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        query = (
            "SELECT COUNT(*) FROM streams WHERE last_revision >= 0 AND name LIKE ?"
            if "streams" in tables
            else "SELECT COUNT(DISTINCT stream) FROM events WHERE stream LIKE ?"
        )
        return int(conn.execute(query, (f"{UPTIME_STREAM_PREFIX}%",)).fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0
    finally:
        conn.close()


def wait_all_ran(db: Path, services: int, deadline_seconds: float) -> tuple[int, float]:
    """Poll until every service has a stored check or the deadline passes; (services seen, seconds)."""
    started = time.monotonic()
    seen = 0
    while time.monotonic() - started < deadline_seconds:
        if db.exists():
            seen = services_with_events(db)
            if seen >= services:
                break
        time.sleep(2)
    return seen, round(time.monotonic() - started, 1)


def host_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat: were other processes busy too?"""
    fields = [float(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def sample_cpu(
    pid: int, seconds: float, *, base: str, scrape_every: float, gzip: bool = False
) -> tuple[list[float], list[float]]:
    """Spend ``seconds`` reading the daemon's CPU (% of one core) each second from /proc.

    With ``scrape_every`` > 0 it also scrapes /metrics that often, as a Prometheus would (the scrape's
    cost then counts in the window); returns the CPU samples and the scrape durations.
    """
    samples: list[float] = []
    scrapes: list[float] = []
    end = time.monotonic() + seconds
    next_scrape = time.monotonic() + scrape_every if scrape_every > 0 else math.inf
    last_cpu, last_time = cpu_seconds(pid), time.monotonic()
    while (now := time.monotonic()) < end:
        if now >= next_scrape:
            scrapes.append(scrape_gzipped(base) if gzip else scrape(base)[2])
            next_scrape += scrape_every
        else:
            time.sleep(max(0.0, min(1.0 - (now - last_time), end - now, next_scrape - now)))
        cpu, moment = cpu_seconds(pid), time.monotonic()
        if moment - last_time >= 1.0 or moment >= end:
            samples.append((cpu - last_cpu) / (moment - last_time) * 100)
            last_cpu, last_time = cpu, moment
    return samples, scrapes


def due_per_second(runs: list[Run]) -> dict[str, int]:
    """Runs due in each second of the window: the load is bursty when first runs were bunched."""
    per_second: dict[int, int] = defaultdict(int)
    for run in runs:
        per_second[int(run.due)] += 1
    counts = list(per_second.values())
    return {
        "seconds_with_runs": len(counts),
        "p50": int(percentile(counts, 0.5)) if counts else 0,
        "max": max(counts, default=0),
    }


def scrape(base: str) -> tuple[str, float, float]:
    """``/metrics`` text, the moment its values were (about) taken, and how long the scrape took."""
    before = time.monotonic()
    text = fetch(f"{base}/metrics", timeout=120)
    after = time.monotonic()
    return text, (before + after) / 2, after - before


def scrape_gzipped(base: str) -> float:
    """How long a scrape of ``/metrics`` takes asking for gzip, as Prometheus does (body read whole)."""
    url = f"{base}/metrics"  # loopback, built here
    request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"})  # noqa: S310
    before = time.monotonic()
    with urllib.request.urlopen(request, timeout=120) as answer:  # noqa: S310
        answer.read()
    return time.monotonic() - before


def lateness_histogram(before: str, after: str) -> dict[str, Any]:
    """Delta of ``uptime_scheduler_lateness_seconds`` between two scrapes."""
    name = "uptime_scheduler_lateness_seconds"
    count = metric_sum(after, f"{name}_count") - metric_sum(before, f"{name}_count")
    total = metric_sum(after, f"{name}_sum") - metric_sum(before, f"{name}_sum")

    def later_than(bound: str) -> float | None:
        within = metric_sum(after, f"{name}_bucket", le=bound) - metric_sum(
            before, f"{name}_bucket", le=bound
        )
        return round(1 - within / count, 5) if count else None

    def at_most(fraction: float) -> float | None:
        """The smallest bucket bound that holds ``fraction`` of the window's runs (an upper bound)."""
        for bound in ("0.001", "0.005", "0.01", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0"):
            within = metric_sum(after, f"{name}_bucket", le=bound) - metric_sum(
                before, f"{name}_bucket", le=bound
            )
            if count and within >= fraction * count:
                return float(bound)
        return None

    return {
        "runs": int(count),
        "mean_ms": round(total / count * 1000, 3) if count else None,
        "share_later_than_10ms": later_than("0.01"),
        "share_later_than_50ms": later_than("0.05"),
        "p50_at_most_s": at_most(0.5),
        "p99_at_most_s": at_most(0.99),
    }


def first_runs_lateness(runs: list[Run]) -> dict[str, Any]:
    """Lateness of each service's first check (start-up: first runs also create the stream)."""
    first: dict[str, Run] = {}
    for run in runs:
        known = first.get(run.stream)
        if known is None or run.due < known.due:
            first[run.stream] = run
    lateness = [run.lateness_ms for run in first.values()]
    return {
        "runs": len(lateness),
        "p50": _finite(percentile(lateness, 0.5)),
        "p99": _finite(percentile(lateness, 0.99)),
        "max": _finite(max(lateness, default=math.nan)),
    }


def missed_runs(runs: list[Run], window: tuple[float, float], interval: float) -> int:
    """Runs that never happened: gaps of more than 1.5 intervals between a service's due times.

    Only gaps that end inside the window count. Jitter adds up to a tenth of an interval per run,
    so a normal gap is at most 1.1 intervals.
    """
    due: dict[str, list[float]] = defaultdict(list)
    for run in runs:
        due[run.stream].append(run.due)
    missed = 0
    for times in due.values():
        times.sort()
        for previous, current in itertools.pairwise(times):
            gap = current - previous
            if window[0] <= current < window[1] and gap > 1.5 * interval:
                missed += max(1, round(gap / interval) - 1)
    return missed


SKIPPED_LOG: Final = "check_skipped_still_running"
"""The scheduler's warning when runs were due while the previous run of that service still went
(at most one line per 10 s, with ``count`` since the last one)."""
MISFIRED_LOG: Final = "check_shed_too_late"
"""... and when runs started later than their misfire grace time (dropped)."""


def log_problems(log: Path, window: tuple[float, float]) -> dict[str, Any]:
    """Errors and warnings in the daemon's JSON log; skipped and misfired runs inside the window.

    ``service_status_changed`` is logged at warning level on every transition (each service's first
    check is one: unknown to up); those are counted apart, they are not problems. Samples are the
    first distinct messages (job names blanked), errors first.
    """
    counts: dict[str, int] = defaultdict(int)
    seen: dict[str, list[str]] = {"error": [], "warning": []}
    for line in log.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = {"event": line, "level": "error" if "Traceback" in line else "other"}
        if not isinstance(record, dict):
            continue
        message, level = str(record.get("event", "")), str(record.get("level", ""))
        if message == "service_status_changed":
            counts["status_changes"] += 1
            continue
        kind = "error" if level in {"error", "critical", "exception"} else level
        if kind not in seen:
            continue
        counts[f"{kind}s"] += 1
        moment = _unix(str(record["timestamp"])) if "timestamp" in record else math.nan
        if window[0] <= moment < window[1]:
            counts[f"{kind}s_in_window"] += 1
            tally = int(record.get("count", 1))
            counts["skipped_runs_in_window"] += tally if message == SKIPPED_LOG else 0
            counts["misfired_runs_in_window"] += tally if message == MISFIRED_LOG else 0
        sample = re.sub(r'[Jj]ob "[^"]*"', 'job "..."', message)[:160]
        if sample not in seen[kind] and len(seen[kind]) < 3:
            seen[kind].append(sample)
    keys = ("errors", "errors_in_window", "warnings", "warnings_in_window", "status_changes")
    return {
        **{key: counts[key] for key in keys},
        "skipped_runs_in_window": counts["skipped_runs_in_window"],
        "misfired_runs_in_window": counts["misfired_runs_in_window"],
        "samples": [f"error: {m}" for m in seen["error"]]
        + [f"warning: {m}" for m in seen["warning"]],
    }


OUTER_FRAMES: Final = re.compile(r"runpy|__main__\.py|cli\.py|runners\.py|threading\.py")
"""Frames every sample of a thread has (start-up, thread bootstrap): left out of the inclusive list."""


def py_spy(pid: int, seconds: int, out: Path) -> dict[str, Any]:
    """Sample the daemon with py-spy (after the window, so it does not skew it); top functions.

    Our own helper, not in _common: py-spy is optional (``pip install py-spy`` in the venv). Shares
    are of the samples where a daemon thread was active (py-spy leaves idle threads out by default),
    main and SQLite worker threads together. The daemon runs on uvloop, so time spent in uvloop's C
    code (socket I/O, callbacks) shows as ``Runner.run`` itself; ``--native`` would resolve it but
    pauses the process on every sample.
    """
    command = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(command).exists():
        return {"error": "py-spy not installed: .venv/bin/pip install py-spy"}
    args = [command, "record", "-d", str(seconds), "-p", str(pid), "-r", "100", "--nonblocking"]
    done = subprocess.run(
        [*args, "--format", "raw", "-o", str(out)],
        capture_output=True,
        text=True,
        check=False,
        timeout=seconds + 60,
    )
    if done.returncode != 0 or not out.exists():
        return {"error": done.stderr.strip()[-300:]}
    own: dict[str, int] = defaultdict(int)
    inclusive: dict[str, int] = defaultdict(int)
    total = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        # "function (path:line)" frames, root first; the line number is dropped to group by function.
        frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
        frames = [re.sub(r"\(/.*/(site-packages|src|lib/python3\.\d+)/", "(", f) for f in frames]
        total += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            if not OUTER_FRAMES.search(frame):
                inclusive[frame] += int(count)

    def top(table: dict[str, int], n: int) -> list[str]:
        ranked = sorted(table.items(), key=lambda item: -item[1])[:n]
        return [f"{share / total * 100:.1f}% {frame}" for frame, share in ranked]

    return {
        "samples": total,
        "self": top(own, 15),
        "inclusive": top(inclusive, 25),
        "raw": str(out),
    }


@dataclass
class Window:
    """What one measured window yielded, before it is turned into figures."""

    startup_seconds: float
    first_runs_seconds: float
    services_seen: int
    rss_after_start: float
    metrics: tuple[str, str]
    metrics_taken: tuple[float, float]
    scrape_seconds: float
    scrapes_in_window: list[float]
    rss_peak_warmup: float
    wall: tuple[float, float]
    seconds: float
    cpu_seconds: float
    cpu_samples: list[float]
    host_busy_percent: float
    load_before: float
    rss_end: float
    rss_peak: float
    open_fds: int
    stored: list[Run]
    profile: dict[str, Any] | None = None
    """``--py-spy``: the minute after the window."""
    window_profile: dict[str, Any] | None = None
    """``--py-spy-window``: the window itself."""
    shutdown_seconds: float = math.nan
    exit_code: int | None = None
    history: dict[str, float] | None = None


def measure(scenario: Scenario, procs: Processes) -> Window:
    """Start nginx and a daemon, warm up, measure one window, stop the daemon."""
    target = start_nginx(procs, workers=1)
    config, base = daemon_config(
        procs,
        http_services(scenario.services, target),
        interval_seconds=scenario.interval,
        timeout_seconds=scenario.timeout,
        jitter_seconds=scenario.jitter,
        max_concurrency=scenario.max_concurrency,
    )
    db = procs.work / "events.db"
    history = None
    if scenario.history_days:
        began = time.monotonic()
        names = [f"s{i}" for i in range(scenario.services)]
        end = datetime.now(UTC) - timedelta(minutes=1)
        history = seed(procs.work / "snapshot.json", names, scenario.history_days, end)
        history["seed_seconds"] = round(time.monotonic() - began, 1)
    launched = time.monotonic()
    daemon = start_daemon(procs, config, base)
    startup_seconds = round(time.monotonic() - launched, 1)
    pid = daemon.pid
    rss_after_start = rss_mib(pid)

    # Warm-up: every service has run once (first runs take first_run_spread, plus a probe and the
    # stream's creation), then the rest of the warm-up so start-up work has drained.
    minimum = scenario.warmup
    if minimum is None:
        minimum = max(10.0, scenario.first_run_spread + scenario.timeout + 5)
    seen, first_runs_seconds = wait_all_ran(
        db, scenario.services, minimum + scenario.interval + scenario.timeout + 60
    )
    time.sleep(max(0.0, minimum - (time.monotonic() - launched - startup_seconds)))

    rss_peak_warmup = rss_mib(pid, peak=True)  # start-up and first runs, before any scrape
    metrics_before, taken_before, scrape_before = scrape(base)
    load_before = round(os.getloadavg()[0], 2)
    host_before = host_cpu()
    cpu_before, wall_before, mono_before = cpu_seconds(pid), time.time(), time.monotonic()
    with ThreadPoolExecutor(1) as profiler:
        profiling = (
            profiler.submit(py_spy, pid, round(scenario.window), procs.work / "py-spy-window.txt")
            if scenario.py_spy_during
            else None
        )
        cpu_samples, scrapes = sample_cpu(
            pid,
            scenario.window,
            base=base,
            scrape_every=scenario.scrape_every,
            gzip=scenario.scrape_gzip,
        )
        window_profile = None if profiling is None else profiling.result()
    cpu_after, wall_after, mono_after = cpu_seconds(pid), time.time(), time.monotonic()
    host_after = host_cpu()
    rss_end, rss_peak = rss_mib(pid), rss_mib(pid, peak=True)
    metrics_after, taken_after, scrape_after = scrape(base)
    window = Window(
        startup_seconds=startup_seconds,
        first_runs_seconds=first_runs_seconds,
        services_seen=seen,
        rss_after_start=rss_after_start,
        metrics=(metrics_before, metrics_after),
        metrics_taken=(taken_before, taken_after),
        scrape_seconds=max(scrape_before, scrape_after),
        scrapes_in_window=scrapes,
        rss_peak_warmup=rss_peak_warmup,
        wall=(wall_before, wall_after),
        seconds=mono_after - mono_before,
        cpu_seconds=cpu_after - cpu_before,
        cpu_samples=cpu_samples,
        host_busy_percent=round(
            (host_after[0] - host_before[0]) / (host_after[1] - host_before[1]) * 100, 1
        ),
        load_before=load_before,
        rss_end=rss_end,
        rss_peak=rss_peak,
        open_fds=len(list(Path(f"/proc/{pid}/fd").iterdir())),
        stored=[],
        history=history,
    )
    window.window_profile = window_profile
    if scenario.py_spy:
        window.profile = py_spy(pid, scenario.py_spy, procs.work / "py-spy.txt")

    # Runs due before the window's end finish within a timeout (plus the append) after it.
    time.sleep(scenario.timeout + 3)

    stopping = time.monotonic()
    daemon.terminate()
    window.exit_code = daemon.wait(timeout=60)
    window.shutdown_seconds = round(time.monotonic() - stopping, 1)
    window.stored = read_runs(db)  # all of them: the first runs are reported too
    return window


def figures_of(scenario: Scenario, window: Window, work: Path) -> dict[str, Any]:
    """The JSON line's fields."""
    before, after = window.metrics
    between = window.metrics_taken[1] - window.metrics_taken[0]

    def delta(name: str, **labels: str) -> float:
        return metric_sum(after, name, **labels) - metric_sum(before, name, **labels)

    in_window = [run for run in window.stored if window.wall[0] <= run.due < window.wall[1]]
    lateness = [run.lateness_ms for run in in_window]
    appends = delta("uptime_event_append_duration_seconds_count")
    probes = delta("uptime_probes_total")
    # Jitter is added to each due time on top of the interval, so the mean period is interval + j/2.
    expected = (
        scenario.services * window.seconds / (scenario.interval + scenario.effective_jitter / 2)
    )
    full_cycle = window.seconds >= scenario.interval + scenario.effective_jitter
    return {
        "services": scenario.services,
        "interval_s": scenario.interval,
        "timeout_s": scenario.timeout,
        "jitter_s": scenario.jitter,
        "effective_jitter_s": scenario.effective_jitter,
        "max_concurrency": scenario.max_concurrency,
        "window_s": round(window.seconds, 1),
        "startup_s": window.startup_seconds,
        "all_first_runs_s": window.first_runs_seconds,
        "services_run_before_window": window.services_seen,
        "lateness_ms": {
            "source": "events: timestamp - responseTime - scheduledAt (+-1-2 ms)",
            "runs": len(lateness),
            "p50": _finite(percentile(lateness, 0.50)),
            "p99": _finite(percentile(lateness, 0.99)),
            "max": _finite(max(lateness, default=math.nan)),
        },
        "lateness_histogram": lateness_histogram(before, after),
        "first_runs_lateness_ms": first_runs_lateness(window.stored),
        "cpu_percent_one_core": round(window.cpu_seconds / window.seconds * 100, 1),
        "cpu_percent_1s": {
            "p50": _finite(percentile(window.cpu_samples, 0.5)),
            "p90": _finite(percentile(window.cpu_samples, 0.9)),
            "max": _finite(max(window.cpu_samples, default=math.nan)),
        },
        "due_per_s": due_per_second(in_window),
        "rss_after_start_mib": window.rss_after_start,
        "rss_end_mib": window.rss_end,
        "rss_peak_warmup_mib": window.rss_peak_warmup,
        "rss_peak_mib": window.rss_peak,
        "history_days": scenario.history_days,
        "history_seeded": window.history,
        "events_per_s": round(delta("uptime_events_appended_total") / between, 2),
        "probes_per_s": round(probes / between, 2),
        "probes_failed_per_s": round(
            (probes - delta("uptime_probes_total", result="ok")) / between, 2
        ),
        "append_mean_ms": round(
            delta("uptime_event_append_duration_seconds_sum") / appends * 1000, 3
        )
        if appends
        else None,
        "append_failures": delta("uptime_event_append_failures_total"),
        "runs_in_window": len(in_window),
        "runs_expected": round(expected),
        "services_without_run_in_window": scenario.services - len({run.stream for run in in_window})
        if full_cycle
        else None,
        "failed_runs_in_window": sum(1 for run in in_window if not run.ok),
        "missed_runs": missed_runs(window.stored, window.wall, scenario.interval),
        "skipped_runs_metric": delta("uptime_scheduler_skipped_runs_total"),
        "event_loop_tasks_end": metric_sum(after, "uptime_event_loop_tasks"),
        "open_fds_end": window.open_fds,
        "metrics_scrape_s": round(window.scrape_seconds, 2),
        "scrapes_in_window": len(window.scrapes_in_window),
        "scrape_in_window_s": {
            "every": scenario.scrape_every or None,
            "gzip": scenario.scrape_gzip,
            "p50": _seconds(percentile(window.scrapes_in_window, 0.5)),
            "max": _seconds(max(window.scrapes_in_window, default=math.nan)),
        },
        "scrape_in_window_max_s": _finite(max(window.scrapes_in_window, default=math.nan)),
        "metrics_bytes": len(after.encode()),
        "metrics_mib": round(len(after.encode()) / MIB, 1),
        "shutdown_s": window.shutdown_seconds,
        "exit_code": window.exit_code,
        "daemon_log": log_problems(work / "daemon.log", window.wall),
        "work": str(work),
        "machine": machine(),
        # Other processes on the machine skew every figure: how busy was it, all cores together?
        "host_busy_percent": window.host_busy_percent,
        "load_average_before": window.load_before,
    }


def run(scenario: Scenario) -> None:
    """Measure one scenario in a fresh work dir; print its JSON line (and the profile's)."""
    with processes() as procs:
        window = measure(scenario, procs)
    figures = figures_of(scenario, window, procs.work)
    if scenario.name == "10k":
        figures["targets"] = TARGETS_10K
        full_size = scenario.services == 10_000 and scenario.interval == 60
        p99 = figures["lateness_ms"]["p99"]
        figures["within_targets"] = (
            {
                "lateness_p99_ms": p99 is not None and p99 < TARGETS_10K["lateness_p99_ms"],
                "cpu_percent_one_core": figures["cpu_percent_one_core"]
                <= TARGETS_10K["cpu_percent_one_core"],
                # The high-water mark since start: start-up and the first /metrics scrape count.
                "rss_mb": window.rss_peak * MIB / 1e6 < TARGETS_10K["rss_mb"],
            }
            if full_size
            else None  # the targets are for 10,000 services at 60 s only
        )
    emit(f"scale_{scenario.name}", **figures)
    if window.profile is not None:
        emit(f"scale_{scenario.name}_profile", seconds=scenario.py_spy, **window.profile)
    if window.window_profile is not None:
        emit(
            f"scale_{scenario.name}_window_profile",
            seconds=round(scenario.window),
            **window.window_profile,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--scenario", choices=("10k", "1k", "both"), default="both")
    parser.add_argument(
        "--window", type=float, help="measured seconds (default 180 for 10k, 60 for 1k)"
    )
    parser.add_argument("--services", type=int, help="override the scenario's service count")
    parser.add_argument("--interval", type=float, help="override the scenario's interval (s)")
    parser.add_argument(
        "--warmup",
        type=float,
        help="seconds from start-up to the window, at least (default: first-run spread + timeout + 5, ≥ 10)",
    )
    parser.add_argument("--jitter", type=float, default=DEFAULT_JITTER_SECONDS)
    parser.add_argument("--max-concurrency", type=int, default=DEFAULT_MAX_CONCURRENCY)
    parser.add_argument(
        "--scrape-every",
        type=float,
        default=0,
        metavar="SECONDS",
        help="also scrape /metrics this often during the window, as Prometheus would (default: never)",
    )
    parser.add_argument(
        "--scrape-gzip",
        action="store_true",
        help="ask for the in-window scrapes gzipped (Accept-Encoding: gzip), as Prometheus does",
    )
    parser.add_argument(
        "--py-spy",
        type=int,
        default=0,
        metavar="SECONDS",
        help="after the window, profile the daemon this long with py-spy and print its top functions"
        " (at 60 s intervals the load comes in bursts: profile a whole interval)",
    )
    parser.add_argument(
        "--py-spy-window",
        action="store_true",
        help="profile the window itself with py-spy (its scrapes and snapshots too; py-spy's own"
        " CPU is on the machine beside the daemon's, so judge that run's CPU figure apart)",
    )
    parser.add_argument(
        "--history-days",
        type=float,
        default=0,
        metavar="DAYS",
        help="start the daemon from a snapshot in which every service already holds this many days"
        " of a check a minute (its days before its last hours' in the file beside it), as a daemon"
        " that has run that long (default: none; at most projector.retention_days, 90)",
    )
    args = parser.parse_args()

    presets = {"10k": (10_000, 60.0, 180.0), "1k": (1_000, 1.0, 60.0)}
    names = ("10k", "1k") if args.scenario == "both" else (args.scenario,)
    for name in names:
        services, interval, window = presets[name]
        interval = args.interval or interval
        run(
            Scenario(
                name=name,
                services=args.services or services,
                interval=interval,
                timeout=min(5.0, interval),  # a timeout may not exceed the interval
                window=args.window or window,
                warmup=args.warmup,
                jitter=args.jitter,
                max_concurrency=args.max_concurrency,
                py_spy=args.py_spy,
                py_spy_during=args.py_spy_window,
                scrape_every=args.scrape_every,
                scrape_gzip=args.scrape_gzip,
                history_days=args.history_days,
            )
        )


if __name__ == "__main__":
    main()
