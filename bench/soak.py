"""Soak: N HTTP services for M minutes; RSS, open fds and event-loop tasks must stay flat.

Starts its own loopback target (aiohttp, in a subprocess) and a daemon on the embedded store, samples
the daemon every minute from /proc and /metrics, drives /uptime/summary with wrk while probing (when
wrk is installed), and prints one JSON line per figure. Everything stays on 127.0.0.1.

    python bench/soak.py --services 1000 --minutes 10 --interval 10
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

TARGET = """
import sys
from aiohttp import web
async def ok(_):
    return web.Response(text="ok")
app = web.Application()
app.router.add_get("/{tail:.*}", ok)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).read()  # noqa: S310
            return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"{url} did not come up")


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{name} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else float("nan")


def sample(pid: int, base: str) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kb = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    metrics = urllib.request.urlopen(f"{base}/metrics", timeout=10).read().decode()  # noqa: S310
    return {
        "rss_mib": round(rss_kb / 1024, 1),
        "open_fds": len(os.listdir(f"/proc/{pid}/fd")),
        "tasks": metric(metrics, "uptime_event_loop_tasks"),
        "probes_total": sum(
            float(v)
            for v in re.findall(
                r"^uptime_probes_total\{[^}]*\} ([0-9.e+]+)$", metrics, re.MULTILINE
            )
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--interval", type=float, default=10)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    target_port, daemon_port = free_port(), free_port()
    target = subprocess.Popen([sys.executable, "-c", TARGET, str(target_port)])
    wait_for(f"http://127.0.0.1:{target_port}/")
    services = "".join(
        f'[services.s{i}]\nkind = "http"\nurl = "http://127.0.0.1:{target_port}/s{i}"\n'
        for i in range(args.services)
    )
    config = work / "soak.toml"
    config.write_text(
        f'environment = "test"\n[server]\nport = {daemon_port}\n[store]\nurl = "sqlite:///{work}/events.db"\n'
        f'[log]\nlevel = "warning"\nformat = "json"\n[defaults]\ninterval_seconds = {args.interval}\n'
        f"timeout_seconds = 5\n[scheduler]\njitter_seconds = {args.interval / 2}\n" + services
    )
    daemon = subprocess.Popen(
        [sys.executable, "-m", "uptime_daemon", "--config", str(config), "run"],
        stdout=(work / "daemon.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{daemon_port}"
    try:
        wait_for(f"{base}/health")
        time.sleep(2 * args.interval)  # warm-up: every service has run at least once
        start = sample(daemon.pid, base)
        started = time.monotonic()
        print(json.dumps({"figure": "soak_start", "services": args.services, **start}), flush=True)
        wrk = shutil.which("wrk")
        if wrk:
            out = subprocess.run(
                [wrk, "-t2", "-c16", "-d30s", "--latency", f"{base}/uptime/summary?hours=24"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout
            rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
            p50 = re.search(r"50%\s+([\d.]+\w+)", out)
            p99 = re.search(r"99%\s+([\d.]+\w+)", out)
            print(
                json.dumps(
                    {
                        "figure": "api_under_probing",
                        "endpoint": "/uptime/summary?hours=24",
                        "services": args.services,
                        "requests_per_second": float(rps.group(1)) if rps else None,
                        "p50": p50.group(1) if p50 else None,
                        "p99": p99.group(1) if p99 else None,
                    }
                ),
                flush=True,
            )
        while time.monotonic() - started < args.minutes * 60:
            time.sleep(min(60, args.minutes * 60 - (time.monotonic() - started)))
            print(
                json.dumps(
                    {
                        "figure": "soak_sample",
                        "minute": round((time.monotonic() - started) / 60, 1),
                        **sample(daemon.pid, base),
                    }
                ),
                flush=True,
            )
        end = sample(daemon.pid, base)
        print(
            json.dumps(
                {
                    "figure": "soak_end",
                    "minutes": args.minutes,
                    "services": args.services,
                    **end,
                    "rss_growth_mib": round(end["rss_mib"] - start["rss_mib"], 1),
                    "fd_growth": end["open_fds"] - start["open_fds"],
                    "task_growth": end["tasks"] - start["tasks"],
                    "probes_per_second": round(
                        (end["probes_total"] - start["probes_total"]) / (args.minutes * 60), 1
                    ),
                }
            ),
            flush=True,
        )
    finally:
        daemon.terminate()
        code = daemon.wait(timeout=60)
        target.terminate()
        target.wait(timeout=30)
        print(json.dumps({"figure": "soak_exit_code", "value": code}), flush=True)


if __name__ == "__main__":
    main()
