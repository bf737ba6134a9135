"""Overload never reads as an outage: the daemon against a healthy nginx, with CPU hogs beside it.

The daemon probes ``--services`` HTTP services on a loopback nginx every ``--interval`` seconds
(timeout = interval). After ``--warmup`` seconds, ``--hogs`` processes (``while True: pass``) take
the cores for ``--seconds``; the daemon's counters are scraped before and after that window. nginx
answers every request, so every failure in the window is a false one, and every ``down`` a false
outage. Figures (one JSON line each):

* ``machine``: the CPU model and cores.
* ``overload``: probes, ``timeout`` failures (deadlines that lapsed on a loop that was on time),
  inconclusive checks by reason (``daemon_overloaded``: the deadline lapsed while the daemon's own
  loop was late; ``shed``: a check never started), transitions to ``down`` (``false_downs``: must
  be 0), the daemon's mean start lateness and its loop lag per second of the window.

    python bench/overload.py                                 # 500 services every 0.5 s, 2 hogs, 20 s
    python bench/overload.py --seconds 10 --warmup 5 --hogs 4
    python bench/overload.py --nice 10        # the hogs win every contended time slice

Each hog ends by itself after the window plus a margin, should this script be killed first.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from typing import Final

from _common import (
    Processes,
    daemon_config,
    emit,
    fetch,
    http_services,
    machine,
    metric_sum,
    processes,
    start_daemon,
    start_nginx,
)

HOG: Final = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass\n"
"""A busy loop that stops by itself: a bench killed mid-window leaves no core burning for long."""
HOG_MARGIN_SECONDS: Final = 30.0
INCONCLUSIVE: Final = "uptime_checks_inconclusive_total"


def _delta(before: str, after: str, name: str, **labels: str) -> float:
    return metric_sum(after, name, **labels) - metric_sum(before, name, **labels)


def _start_hogs(procs: Processes, count: int, seconds: float) -> list[int]:
    code = HOG.format(seconds=seconds + HOG_MARGIN_SECONDS)
    return [
        procs.start([sys.executable, "-c", code], log_name=f"hog-{i}.log").pid for i in range(count)
    ]


def _stop_hogs(procs: Processes, pids: list[int]) -> None:
    """Terminate the hogs now (not at the end with the rest): nginx and the daemon stay up."""
    for process in procs.started:
        if process.pid in pids and process.poll() is None:
            process.terminate()
    for process in procs.started:
        if process.pid in pids:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def run(args: argparse.Namespace) -> dict[str, object]:
    """One window of overload; the figure."""
    with processes() as procs:
        target = start_nginx(procs, workers=1)
        config, base = daemon_config(
            procs,
            http_services(args.services, target),
            interval_seconds=args.interval,
            timeout_seconds=args.interval,
        )
        daemon = start_daemon(procs, config, base, env={"UPTIME_EVENT_LOOP": args.loop})
        if args.nice:
            os.setpriority(os.PRIO_PROCESS, daemon.pid, args.nice)  # the hogs take precedence
        time.sleep(args.warmup)
        before = fetch(f"{base}/metrics")
        started = time.monotonic()
        hogs = _start_hogs(procs, args.hogs, args.seconds)
        try:
            time.sleep(args.seconds)
        finally:
            _stop_hogs(procs, hogs)
        window = time.monotonic() - started
        after = fetch(f"{base}/metrics")
        lateness = "uptime_scheduler_lateness_seconds"
        starts = _delta(before, after, f"{lateness}_count")
        probes = _delta(before, after, "uptime_probes_total")
        return {
            "services": args.services,
            "interval_seconds": args.interval,
            "hogs": args.hogs,
            "daemon_nice": args.nice,
            "loop": args.loop,
            "seconds": round(window, 2),
            "probes": int(probes),
            "ok": int(_delta(before, after, "uptime_probes_total", result="ok")),
            "timeouts": int(_delta(before, after, "uptime_probes_total", result="timeout")),
            "other_failures": int(
                probes
                - _delta(before, after, "uptime_probes_total", result="ok")
                - _delta(before, after, "uptime_probes_total", result="timeout")
                - _delta(before, after, "uptime_probes_total", result="inconclusive")
            ),
            "inconclusive_overloaded": int(
                _delta(before, after, INCONCLUSIVE, reason="daemon_overloaded")
            ),
            "inconclusive_shed": int(_delta(before, after, INCONCLUSIVE, reason="shed")),
            "false_downs": int(_delta(before, after, "uptime_status_changes_total", to="down")),
            "lateness_mean_ms": round(1000 * _delta(before, after, f"{lateness}_sum") / starts, 1)
            if starts
            else None,
            "loop_lag_seconds_per_second": round(
                _delta(before, after, "uptime_event_loop_lag_seconds_total") / window, 3
            ),
            "work": str(procs.work),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=20, help="overload window")
    parser.add_argument("--warmup", type=float, default=10, help="daemon warm-up before the hogs")
    parser.add_argument("--services", type=int, default=500, help="HTTP services of the daemon")
    parser.add_argument("--interval", type=float, default=0.5, help="interval and timeout, seconds")
    parser.add_argument("--hogs", type=int, default=2, help="CPU-burning processes beside it")
    parser.add_argument(
        "--nice", type=int, default=0, help="niceness of the daemon (the hogs stay at 0)"
    )
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    args = parser.parse_args()
    emit("machine", **machine())
    emit("overload", **run(args))


if __name__ == "__main__":
    main()
