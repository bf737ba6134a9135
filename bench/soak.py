"""Soak: N HTTP services for M minutes; RSS, open fds and event-loop tasks must stay flat.

Starts its own loopback nginx target and a daemon on the embedded store, samples the daemon every
minute from /proc and /metrics, drives /uptime/summary with wrk while probing, and prints one JSON
line per figure. Everything stays on 127.0.0.1.

    python bench/soak.py --services 1000 --minutes 10 --interval 10
"""

from __future__ import annotations

import argparse
import os
import time

from _common import (
    daemon_config,
    emit,
    fetch,
    http_services,
    machine,
    metric_sum,
    processes,
    rss_mib,
    start_daemon,
    start_nginx,
    wrk,
)


def sample(pid: int, base: str) -> dict[str, float]:
    """RSS, open fds and event-loop tasks of the daemon, and its probe count so far."""
    metrics = fetch(f"{base}/metrics", timeout=10)
    return {
        "rss_mib": rss_mib(pid),
        "open_fds": len(os.listdir(f"/proc/{pid}/fd")),
        "tasks": metric_sum(metrics, "uptime_event_loop_tasks"),
        "probes_total": metric_sum(metrics, "uptime_probes_total"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--interval", type=float, default=10)
    args = parser.parse_args()
    emit("machine", **machine())
    with processes() as procs:
        target = start_nginx(procs)
        config, base = daemon_config(
            procs,
            http_services(args.services, target),
            interval_seconds=args.interval,
            jitter_seconds=args.interval / 2,
        )
        daemon = start_daemon(procs, config, base)
        time.sleep(2 * args.interval)  # warm-up: every service has run at least once
        start = sample(daemon.pid, base)
        started = time.monotonic()
        emit("soak_start", services=args.services, **start)
        emit(
            "api_under_probing",
            endpoint="/uptime/summary?hours=24",
            services=args.services,
            wrk="-t2 -c16 -d30s",
            **wrk(f"{base}/uptime/summary?hours=24", threads=2, connections=16, seconds=30),
        )
        while (elapsed := time.monotonic() - started) < args.minutes * 60:
            time.sleep(min(60, args.minutes * 60 - elapsed))
            minute = round((time.monotonic() - started) / 60, 1)
            emit("soak_sample", minute=minute, **sample(daemon.pid, base))
        end = sample(daemon.pid, base)
        elapsed = time.monotonic() - started  # the wrk phase may outlast a short --minutes
        emit(
            "soak_end",
            minutes=round(elapsed / 60, 2),
            services=args.services,
            **end,
            rss_growth_mib=round(end["rss_mib"] - start["rss_mib"], 1),
            fd_growth=end["open_fds"] - start["open_fds"],
            task_growth=end["tasks"] - start["tasks"],
            probes_per_second=round((end["probes_total"] - start["probes_total"]) / elapsed, 1),
        )
        daemon.terminate()
        emit("soak_exit_code", value=daemon.wait(timeout=60))


if __name__ == "__main__":
    main()
