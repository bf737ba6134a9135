"""Replay: how fast ``uptime-daemon replay`` folds the whole log, in how much memory, and what it stores.

Writes realistic ``ServiceStatusChanged`` history (``_history.py``: the daemon's own event code, 30 s
checks going back from now, outages, slow stretches, latency spread) into the embedded SQLite store
in steps, and after each step times ``python -m uptime_daemon --config CONFIG replay`` as a fresh
child: wall time, events folded per second, and the child's own peak RSS (``wait4`` rusage), which
must stay flat as the log grows. Then bytes per stored event (file size after a TRUNCATE checkpoint,
target ≤ 250) beside the average JSON payload, and the same replay against the KurrentDB *test
stand-in* (``tests/kurrentdb_standin.py``, in-memory Python; loaded with ``uptime-daemon migrate``),
which is not a real KurrentDB. Each replay's snapshot is checked against what was generated.

    python bench/replay.py                     # 1,000,000 events, 1,000 services, 100,000 via the stand-in
    python bench/replay.py --events 100000 --services 200 --kurrentdb-events 20000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Final

import orjson
from _common import (
    LOOPBACK,
    Processes,
    daemon_config,
    emit,
    file_pages,
    free_port,
    http_services,
    machine,
    rss_mib,
    stored_payloads,
)
from _history import SERVICE_PREFIX, History, workspace, write_history

from uptime_daemon.projector import snapshot as snapshots

ROOT: Final = Path(__file__).resolve().parents[1]
STEPS: Final = (0.25, 0.5, 1.0)
"""Replay after each of these fractions of ``--events`` has been written."""
INTERVAL_SECONDS: Final = 30.0
TIMEOUT_SECONDS: Final = 10.0
BYTES_PER_EVENT_TARGET: Final = 250
REPLAY_DEADLINE_SECONDS: Final = 3600.0
UNUSED_TARGET: Final = f"http://{LOOPBACK}:9"
"""Replay never probes: the services only have to be configured."""


def write_config(procs: Processes, services: int, store_url: str | None = None) -> Path:
    config, _ = daemon_config(
        procs,
        http_services(services, UNUSED_TARGET, prefix=SERVICE_PREFIX),
        interval_seconds=INTERVAL_SECONDS,
        timeout_seconds=TIMEOUT_SECONDS,
        store_url=store_url,
    )
    return config


WRAPPER: Final = """
import json, os, subprocess, sys, time
started = time.perf_counter()
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
with open(sys.argv[1], "w") as out:
    json.dump({
        "exit": os.waitstatus_to_exitcode(status),
        "wall": time.perf_counter() - started,
        "cpu": usage.ru_utime + usage.ru_stime,
        "maxrss_kib": usage.ru_maxrss,
    }, out)
"""
"""A small ``python`` parent for each replay: ``wait4`` gives that one child's peak RSS.

Linux carries the parent's high-water mark across fork/vfork + exec into the child's ``ru_maxrss``,
so measuring from this (large) bench process would report our own peak; the wrapper's is ~10 MiB.
"""


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (the replay, and the child it folds a share in)."""
    found: list[int] = []
    with contextlib.suppress(OSError, ValueError):  # not started yet, or exiting
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            found += [int(child), *_descendants(int(child))]
    return found


def replay(config: Path, work: Path, label: str, processes: int | None = None) -> dict[str, Any]:
    """Run ``replay`` as a fresh child of a tiny wrapper; wall time, CPU and its own peak RSS.

    With ``processes`` the replay is asked for that many (its default otherwise). The polled
    figures cover every process of the replay: ``peak_rss_mib_polled`` is the replay process's
    own high-water mark, ``peak_rss_mib_all_processes`` the sum of each one's.
    """
    out, err, usage_file = (work / f"{label}.{ext}" for ext in ("out", "err", "usage.json"))
    command = [sys.executable, "-m", "uptime_daemon", "--config", str(config), "replay"]
    if processes is not None:
        command += ["--processes", str(processes)]
    hwm = 0.0
    peaks: dict[int, float] = {}
    with out.open("wb") as stdout, err.open("wb") as stderr:
        wrapper = subprocess.Popen(
            [sys.executable, "-c", WRAPPER, str(usage_file), *command],
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
        deadline = time.monotonic() + REPLAY_DEADLINE_SECONDS
        try:
            while wrapper.poll() is None:
                if time.monotonic() > deadline:
                    sys.exit(f"replay did not finish within {REPLAY_DEADLINE_SECONDS:g} s")
                tree = _descendants(wrapper.pid)
                for pid in tree:
                    with contextlib.suppress(OSError, ValueError):  # exiting
                        peaks[pid] = max(peaks.get(pid, 0.0), rss_mib(pid, peak=True))
                if tree:
                    hwm = peaks.get(tree[0], hwm)
                time.sleep(0.02)
        finally:
            if wrapper.poll() is None:
                os.killpg(wrapper.pid, signal.SIGKILL)
                wrapper.wait(timeout=10)
    usage = orjson.loads(usage_file.read_bytes())
    stdout_text, stderr_text = out.read_text(), err.read_text()
    if usage["exit"] != 0:
        sys.exit(f"replay exited {usage['exit']}: {stderr_text[-2000:]}")
    match = re.search(r"replayed (\d+) events into (\d+) services", stdout_text)
    if match is None:
        sys.exit(f"unexpected replay output: {stdout_text!r}")
    folded = int(match.group(1))
    split = re.search(r"(\d+) processes\)", stdout_text)
    return {
        "processes": int(split.group(1)) if split else 1,
        "events_folded": folded,
        "services": int(match.group(2)),
        "wall_seconds": round(usage["wall"], 3),
        "events_per_second": round(folded / usage["wall"]),
        "cpu_seconds": round(usage["cpu"], 3),
        "peak_rss_mib": round(usage["maxrss_kib"] / 1024, 1),
        "peak_rss_mib_polled": hwm,
        "peak_rss_mib_all_processes": round(sum(peaks.values()), 1),
        "decode_failures_logged": stderr_text.count("event_decode_failed"),
        "stderr_lines": len(stderr_text.splitlines()),
    }


def check_snapshot(path: Path, history: History, db: Path) -> dict[str, Any]:
    """What the projection holds, beside what was generated (checks, down checks, incidents).

    A failed first check of a service has no verdict yet: it is stored as a
    ``ServiceCheckPending`` (counted from ``db``, the SQLite log written), which folds no check.
    """
    pending = sum(1 for _ in stored_payloads(db, ("ServiceCheckPending",)))
    stored = snapshots.decode(path.read_bytes())
    checks = down = incidents = 0
    for service in stored.state.services.values():
        for bucket in service.buckets.values():
            checks += sum(bucket.checks)
            down += bucket.checks[2]
        incidents += len(service.incidents)
    counts = history.counts
    verdicts = counts.checks - pending
    return {
        "snapshot_bytes": path.stat().st_size,
        "snapshot_matches": (checks, down, incidents)
        == (verdicts, counts.down_checks, counts.incidents),
        "checks": [checks, verdicts],
        "pending_checks": pending,
        "down_checks": [down, counts.down_checks],
        "incidents": [incidents, counts.incidents],
    }


def storage(db: Path) -> dict[str, Any]:
    """Bytes per stored event on a closed store after a TRUNCATE checkpoint, and where they go."""
    measured = file_pages(db)
    page_size, free_pages, parts = measured.page_size, measured.free_pages, measured.btrees
    events = status = data_bytes = metadata_bytes = status_bytes = 0
    for kind, body, meta in stored_payloads(db):  # the payloads as written, before compression
        events += 1
        data_bytes += len(body)
        metadata_bytes += len(meta)
        if kind == "ServiceStatusChanged":
            status += 1
            status_bytes += len(body)
    data, metadata = data_bytes / events, metadata_bytes / events
    status_data = status_bytes / max(1, status)
    size = db.stat().st_size
    wal = db.with_name(db.name + "-wal")
    return {
        "events": events,
        "file_bytes": size,
        "wal_bytes": wal.stat().st_size if wal.exists() else 0,
        "bytes_per_event": round(size / events, 1),
        "target_bytes_per_event": BYTES_PER_EVENT_TARGET,
        "avg_payload_bytes": round(status_data, 1),
        "avg_data_bytes_all_events": round(data, 1),
        "avg_metadata_bytes": round(metadata, 1),
        "page_size": page_size,
        "free_pages": free_pages,
        "bytes_per_event_by_btree": {
            name: round(total / events, 1) for name, total in sorted(parts.items())
        },
    }


def wait_for_port(port: int, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((LOOPBACK, port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"{LOOPBACK}:{port} did not come up within {seconds:g} s")


def start_standin(procs: Processes) -> tuple[str, int]:
    """``tests/kurrentdb_standin.py`` as a process on a free port; its URL and pid."""
    port = free_port()
    standin = procs.start(
        [sys.executable, "-m", "tests.kurrentdb_standin", str(port)],
        log_name="kurrentdb-standin.log",
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    wait_for_port(port)
    return f"kurrentdb://{LOOPBACK}:{port}?tls=false", standin.pid


def run_kurrentdb(args: argparse.Namespace) -> None:
    """Load the stand-in through ``uptime-daemon migrate`` from a fresh SQLite log, then replay."""
    per_service = max(1, args.kurrentdb_events // args.services)
    with workspace(keep=args.keep) as procs:
        history = History(
            args.services,
            per_service,
            interval_seconds=INTERVAL_SECONDS,
            timeout_seconds=TIMEOUT_SECONDS,
        )
        source = write_config(procs, args.services)
        asyncio.run(write_history(history, procs.work / "events.db", per_service, batch=args.batch))
        url, standin_pid = start_standin(procs)
        started = time.perf_counter()
        migrated = subprocess.run(
            [
                sys.executable,
                "-m",
                "uptime_daemon",
                "--config",
                str(source),
                "migrate",
                *("--to", url),
            ],
            capture_output=True,
            text=True,
            timeout=REPLAY_DEADLINE_SECONDS,
            check=False,
        )
        seconds = time.perf_counter() - started
        if migrated.returncode != 0:
            sys.exit(f"migrate exited {migrated.returncode}: {migrated.stderr[-2000:]}")
        match = re.search(r"migrated (\d+) events", migrated.stdout)
        copied = int(match.group(1)) if match else 0
        emit(
            "kurrentdb_standin_load",
            note="uptime-daemon migrate into the test stand-in, not a real KurrentDB",
            events=copied,
            seconds=round(seconds, 2),
            events_per_second=round(copied / seconds) if seconds else None,
            standin_rss_mib=rss_mib(standin_pid),
        )
        config = write_config(procs, args.services, store_url=url)
        figure = replay(config, procs.work, "replay-kurrentdb")
        emit(
            "replay_kurrentdb_standin",
            note="against the test stand-in (in-memory Python), not a real KurrentDB",
            status_events=history.counts.checks,
            **figure,
            **check_snapshot(procs.work / "snapshot.json", history, procs.work / "events.db"),
            standin_rss_mib=rss_mib(standin_pid),
        )


def run_sqlite(args: argparse.Namespace) -> None:
    per_service = max(1, args.events // args.services)
    with workspace(keep=args.keep) as procs:
        history = History(
            args.services,
            per_service,
            interval_seconds=INTERVAL_SECONDS,
            timeout_seconds=TIMEOUT_SECONDS,
        )
        config = write_config(procs, args.services)
        db = procs.work / "events.db"
        # The streams alone: start-up, config, store open and snapshot write, with nothing to fold
        # (also warms the page cache and the bytecode cache for the first real replay).
        asyncio.run(write_history(history, db, 0, batch=args.batch))
        baseline = replay(config, procs.work, "replay-empty")
        startup = baseline["wall_seconds"]
        emit("replay_startup", note="replay of the StreamCreated events only", **baseline)
        peaks: dict[int, float] = {}
        peaks_all: dict[int, float] = {}
        previous: tuple[int, float] | None = None
        for fraction in STEPS:
            upto = max(1, round(per_service * fraction))
            if upto <= history.done:
                continue
            emit(
                "replay_generate",
                services=args.services,
                checks_per_service=upto,
                **asyncio.run(write_history(history, db, upto, batch=args.batch)),
                avg_payload_bytes=round(history.counts.payload_bytes / history.counts.checks),
            )
            figure = replay(config, procs.work, f"replay-{upto}")
            peaks[history.counts.checks] = figure["peak_rss_mib"]
            peaks_all[history.counts.checks] = figure["peak_rss_mib_all_processes"]
            figure["fold_events_per_second"] = (
                round(history.counts.checks / (figure["wall_seconds"] - startup))
                if figure["wall_seconds"] > startup
                else None
            )
            if previous is not None and figure["wall_seconds"] > previous[1]:
                figure["marginal_events_per_second"] = round(
                    (figure["events_folded"] - previous[0]) / (figure["wall_seconds"] - previous[1])
                )
            previous = (figure["events_folded"], figure["wall_seconds"])
            emit(
                "replay_sqlite",
                status_events=history.counts.checks,
                hours_per_service=round(upto * INTERVAL_SECONDS / 3600, 2),
                db_bytes=db.stat().st_size,
                **figure,
                **check_snapshot(procs.work / "snapshot.json", history, db),
            )
            if figure["processes"] > 1:  # the same log folded by one process, for comparison
                alone = replay(config, procs.work, f"replay-{upto}-one", processes=1)
                emit(
                    "replay_sqlite_one_process",
                    status_events=history.counts.checks,
                    **alone,
                    fold_events_per_second=round(
                        history.counts.checks / max(alone["wall_seconds"] - startup, 1e-9)
                    ),
                    **check_snapshot(procs.work / "snapshot.json", history, db),
                )
        emit(
            "replay_sqlite_memory",
            peak_rss_mib_by_events=peaks,
            growth_ratio=round(max(peaks.values()) / min(peaks.values()), 3),
            peak_rss_mib_all_processes_by_events=peaks_all,
            note="peak RSS of each replay (the replay process; and the sum over its processes when "
            "it folds in two); flat means the fold keeps no raw samples",
        )
        emit("storage_sqlite", services=args.services, **storage(db))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="status events in SQLite")
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument(
        "--kurrentdb-events",
        type=int,
        default=100_000,
        help="status events loaded into the KurrentDB test stand-in",
    )
    parser.add_argument("--skip-kurrentdb", action="store_true")
    parser.add_argument(
        "--batch",
        type=int,
        default=500,
        help="checks of one stream per append while generating (1 = the daemon's own pattern)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directories")
    args = parser.parse_args()
    emit(
        "machine",
        **machine(),
        events=args.events,
        services=args.services,
        kurrentdb_events=None if args.skip_kurrentdb else args.kurrentdb_events,
        interval_seconds=INTERVAL_SECONDS,
        batch_per_append=args.batch,
    )
    run_sqlite(args)
    if not args.skip_kurrentdb:
        run_kurrentdb(args)


if __name__ == "__main__":
    main()
