"""Herd: many services on one shared host, from the daemon's first minute (issue 19).

1,000 HTTP services (interval 30 s, timeout 5 s, the default thresholds) all point at one target:
Python's threading ``http.server`` on loopback, serving one request at a time in ``--work-ms``
(10 ms: 100 requests a second, like a small single-worker application) — the common case of many
services sharing one host, and a target that answers every request it receives, only not 1,000
at once. The daemon runs on the embedded store for ``--seconds`` (90 by
default: the first minute, then steady state), is stopped, and its log is read back:

* ``failed_start`` / ``failed_steady``: failed checks in the first 60 s and after, by reason — each
  is a false failure, since the target never fails;
* ``down_transitions`` and ``services_opening_down``: what on-call would have seen;
* ``first_round_seconds``: from the daemon's start until every service had its first check;
* ``target_answers``: the target's responses by status code (its access log);
* ``pending_checks``: failed first checks held as pending (no verdict) rather than ``down``;
* ``slot_wait``: how long probes waited for a slot of the shared host
  (``uptime_probe_slot_wait_seconds``: count, mean, and the share that waited over 1 s).

Two runs, one JSON line each, with the machine; nothing is asserted: ``per_host_concurrency`` at
its default (16) and at 10,000 (no per-host limit, as before issue 19), so the two compare on the
same machine in the same run.

    python bench/herd.py                        # 1,000 services, 90 s, both runs
    python bench/herd.py --services 300 --seconds 45 --per-host 16
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from _common import (
    LOOPBACK,
    Processes,
    daemon_config,
    emit,
    fetch,
    free_port,
    machine,
    metric_sum,
    processes,
    start_daemon,
    stored_payloads,
    wait_for,
)

STATUS_CHANGED: Final = "ServiceStatusChanged"
CHECK_PENDING: Final = "ServiceCheckPending"
START_WINDOW_SECONDS: Final = 60.0


def _unix(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


TARGET: Final = """
import sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
busy = threading.Lock()
work = float(sys.argv[2]) / 1000
class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        with busy:  # one request at a time, as a single-worker application serves them
            time.sleep(work)
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\\n")
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


def start_target(procs: Processes, work_ms: float) -> str:
    """The shared host: a threading ``http.server`` serving one request at a time.

    ``work_ms`` each, a listen backlog of 5 and a log line per request: a small single-worker
    application.
    """
    port = free_port()
    procs.start([sys.executable, "-c", TARGET, str(port), str(work_ms)], log_name="target.log")
    base = f"http://{LOOPBACK}:{port}"
    wait_for(f"{base}/ok")
    return base


def target_answers(log: Path) -> Counter[str]:
    """The target's responses by status code, from its access log (one line a request)."""
    codes: Counter[str] = Counter()
    for line in log.read_text(errors="replace").splitlines():
        parts = line.rsplit(" ", 2)
        if len(parts) == 3 and '"GET ' in line:
            codes[parts[1]] += 1
    return codes


def read_checks(db: Path) -> list[dict[str, Any]]:
    """Every stored check, oldest first."""
    return [
        {**json.loads(data), "type": kind}
        for kind, data, _ in stored_payloads(db, (STATUS_CHANGED, CHECK_PENDING))
    ]


def summarise(checks: list[dict[str, Any]], started: float, services: int) -> dict[str, Any]:
    """The figures of the module docstring from the stored checks."""
    failed_start: Counter[str] = Counter()
    failed_steady: Counter[str] = Counter()
    first_seen: dict[str, float] = {}
    opening_down = 0
    downs = 0
    pending = 0
    for check in checks:
        at = _unix(check["timestamp"])
        name = check["serviceName"]
        if name not in first_seen:
            first_seen[name] = at
            opening_down += check.get("status") == "down"
        pending += check["type"] == CHECK_PENDING
        if check.get("changed") and check.get("status") == "down":
            downs += 1
        if not check["probe"]["ok"]:
            reason = str(check["probe"].get("reason"))
            (failed_start if at - started < START_WINDOW_SECONDS else failed_steady)[reason] += 1
    return {
        "checks": len(checks),
        "services_checked": len(first_seen),
        "failed_start": sum(failed_start.values()),
        "failed_start_reasons": dict(failed_start),
        "failed_steady": sum(failed_steady.values()),
        "failed_steady_reasons": dict(failed_steady),
        "pending_checks": pending,
        "down_transitions": downs,
        "services_opening_down": opening_down,
        "first_round_seconds": (
            round(max(first_seen.values()) - started, 2) if len(first_seen) == services else None
        ),
    }


def slot_wait(metrics: str) -> dict[str, Any] | None:
    """The per-host slot wait histogram of a /metrics text, summarised."""
    count = metric_sum(metrics, "uptime_probe_slot_wait_seconds_count")
    if not count:
        return None
    total = metric_sum(metrics, "uptime_probe_slot_wait_seconds_sum")
    within_1s = metric_sum(metrics, "uptime_probe_slot_wait_seconds_bucket", le="1.0")
    return {
        "probes": int(count),
        "mean_ms": round(total / count * 1000, 2),
        "over_1s": int(count - within_1s),
    }


def main() -> None:
    """Run the scenario once and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=30.0)
    parser.add_argument("--seconds", type=float, default=90.0)
    parser.add_argument(
        "--work-ms", type=float, default=10.0, help="the target's time per request (serial)"
    )
    parser.add_argument(
        "--per-host", type=int, action="append", help="per_host_concurrency (default: 16 and 10000)"
    )
    args = parser.parse_args()
    for per_host in args.per_host or [16, 10_000]:
        run(args, per_host)


def run(args: argparse.Namespace, per_host: int) -> None:
    """One scenario: a fresh target, store and daemon."""
    with processes() as procs:
        target = start_target(procs, args.work_ms)
        config, base = daemon_config(
            procs,
            "".join(
                f'[services.s{i}]\nkind = "http"\nurl = "{target}/ok?s={i}"\n'
                for i in range(args.services)
            ),
            interval_seconds=args.interval,
            timeout_seconds=5,
            jitter_seconds=1,
            per_host_concurrency=per_host,
        )
        started = time.time()
        daemon = start_daemon(procs, config, base)
        deadline = time.monotonic() + args.seconds
        while time.monotonic() < deadline and daemon.poll() is None:
            time.sleep(0.5)
        metrics = fetch(f"{base}/metrics")
        daemon.terminate()
        daemon.wait(timeout=60)
        figures = summarise(read_checks(procs.work / "events.db"), started, args.services)
        emit(
            "herd",
            services=args.services,
            per_host_concurrency=per_host,
            target_work_ms=args.work_ms,
            interval_seconds=args.interval,
            seconds=args.seconds,
            target_answers=dict(target_answers(procs.work / "target.log")),
            **figures,
            slot_wait=slot_wait(metrics),
            machine=machine(),
        )


if __name__ == "__main__":
    main()
