"""Sharing: three daemons splitting N services on one store, against one daemon alone; takeover.

Everything on loopback: one nginx (the target of every service), the KurrentDB stand-in (run as a
process from ``tests/``; its own CPU is reported apart — it is Python, not KurrentDB), and the
daemons. Figures (one JSON line each, machine info first):

* ``alone``: one daemon with N HTTP services every I seconds — CPU % of one core over the window,
  RSS at the end, scheduling lateness p99 (from its ``uptime_scheduler_lateness_seconds`` histogram
  over the window: the bucket bound the 99th percentile falls under), probes/s.
* ``three``: the same N services shared by three daemons with ``[cluster]`` (replicas = 1): the same
  figures per daemon, their sum, and the ratios to ``alone``; probes/s in total must equal alone's
  (each service is probed by one member).
* ``takeover``: one of the three is killed with SIGKILL; for every service it owned (read from the
  log: the instance of its last check before the kill), the time from the kill to the next stored
  check by another member. Bound: ``member_ttl_seconds`` + one heartbeat + one interval.

    python bench/cluster.py                                  # 10,000 services at 60 s (~9 min)
    python bench/cluster.py --services 1000 --interval 10 --window 40
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import orjson
from _common import (
    LOOPBACK,
    Processes,
    cpu_seconds,
    daemon_config,
    emit,
    fetch,
    free_port,
    http_services,
    machine,
    metric_sum,
    processes,
    rss_mib,
    start_daemon,
    start_nginx,
)

from uptime_daemon.store.kurrentdb import KurrentDBEventStore

ROOT: Final = Path(__file__).resolve().parents[1]
STANDIN: Final = ROOT / "tests" / "kurrentdb_standin.py"
TTL_SECONDS: Final = 10.0
HEARTBEAT_SECONDS: Final = 2.0


def start_standin(procs: Processes) -> tuple[str, int]:
    port = free_port()
    process = procs.start([sys.executable, str(STANDIN), str(port)], log_name="standin.log")
    deadline = time.monotonic() + 30
    while str(port) not in (procs.work / "standin.log").read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            sys.exit("the stand-in did not start")
        time.sleep(0.1)
    return f"kurrentdb://{LOOPBACK}:{port}?tls=false", process.pid


def lateness_p99_seconds(before: str, after: str) -> float | None:
    """The smallest histogram bound under which 99 % of the window's runs started."""
    name = "uptime_scheduler_lateness_seconds_bucket"
    bounds = sorted(
        {float(b) for b in re.findall(rf'^{name}{{le="([0-9.e+-]+)"}}', after, re.MULTILINE)}
    )
    total = metric_sum(after, "uptime_scheduler_lateness_seconds_count") - metric_sum(
        before, "uptime_scheduler_lateness_seconds_count"
    )
    if total <= 0:
        return None
    for bound in bounds:
        label = repr(bound) if bound != int(bound) else f"{bound}"
        count = metric_sum(after, name, le=label) - metric_sum(before, name, le=label)
        if count >= 0.99 * total:
            return bound
    return None


def probes(text: str) -> float:
    return metric_sum(text, "uptime_probes_total")


def measure(
    daemons: list[tuple[int, str]], window: float, extra_pids: dict[str, int]
) -> list[dict[str, Any]]:
    """CPU, RSS, lateness and probes of each daemon over one window (scrapes outside it)."""
    before = [fetch(f"{base}/metrics", timeout=120) for _, base in daemons]
    cpu_before = [cpu_seconds(pid) for pid, _ in daemons]
    extra_before = {name: cpu_seconds(pid) for name, pid in extra_pids.items()}
    started = time.monotonic()
    time.sleep(window)
    elapsed = time.monotonic() - started
    cpu_after = [cpu_seconds(pid) for pid, _ in daemons]
    extra_after = {name: cpu_seconds(pid) for name, pid in extra_pids.items()}
    after = [fetch(f"{base}/metrics", timeout=120) for _, base in daemons]
    found = []
    for i, (pid, _) in enumerate(daemons):
        found.append(
            {
                "cpu_percent_of_one_core": round(100 * (cpu_after[i] - cpu_before[i]) / elapsed, 1),
                "rss_mib": rss_mib(pid),
                "rss_peak_mib": rss_mib(pid, peak=True),
                "lateness_p99_seconds": lateness_p99_seconds(before[i], after[i]),
                "probes_per_second": round((probes(after[i]) - probes(before[i])) / elapsed, 1),
            }
        )
    found.extend(
        {
            "process": name,
            "cpu_percent_of_one_core": round(
                100 * (extra_after[name] - extra_before[name]) / elapsed, 1
            ),
        }
        for name in extra_pids
    )
    return found


def all_checked(base: str, services: int) -> bool:
    summary = orjson.loads(fetch(f"{base}/uptime/summary?hours=1", timeout=120))
    checked = sum(1 for s in summary["services"] if s["checks"]["total"] > 0)
    return checked >= services


def wait_all_checked(base: str, services: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not all_checked(base, services):
        if time.monotonic() > deadline:
            sys.exit(f"not every service was checked within {seconds:g} s")
        time.sleep(2)


def run_alone(args: argparse.Namespace) -> dict[str, Any]:
    with processes() as procs:
        target = start_nginx(procs)
        store, standin_pid = start_standin(procs)
        path, base = daemon_config(
            procs,
            http_services(args.services, target),
            interval_seconds=args.interval,
            jitter_seconds=1.0,
            store_url=store,
        )
        daemon = start_daemon(procs, path, base)
        wait_all_checked(base, args.services, args.interval * 3 + 120)
        time.sleep(args.settle)
        daemon_figures, standin = measure(
            [(daemon.pid, base)], args.window, {"standin": standin_pid}
        )
        return {"daemon": daemon_figures, "standin": standin}


def _cluster_toml() -> str:
    return (
        f"[cluster]\nreplicas = 1\nheartbeat_seconds = {HEARTBEAT_SECONDS}\n"
        f"member_ttl_seconds = {TTL_SECONDS}\n"
    )


async def owners_and_takeover(
    store_url: str, killed: str, kill_wall: float, until_wall: float
) -> dict[str, Any]:
    """From the log: the services ``killed`` checked last before the kill, and takeover delays.

    A takeover delay is the time from the kill to another member's next stored check.
    """
    store = await KurrentDBEventStore.open(store_url, timeout_seconds=30)
    try:
        last_owner: dict[str, str] = {}
        taken: dict[str, float] = {}
        after: int | None = None
        while True:
            page = await store.read_all(after=after, stream_prefix="service-uptime-", limit=5000)
            if not page:
                break
            for event in page:
                after = event.position
                if event.type != "ServiceStatusChanged":
                    continue
                data = orjson.loads(event.data)
                at = _wall(data["timestamp"])
                name = data["serviceName"]
                if at <= kill_wall:
                    last_owner[name] = data["instance"]
                elif (
                    last_owner.get(name) == killed
                    and name not in taken
                    and data["instance"] != killed
                    and at <= until_wall
                ):
                    taken[name] = at - kill_wall
    finally:
        await store.close()
    owned = [name for name, owner in last_owner.items() if owner == killed]
    delays = sorted(taken.values())
    return {
        "services_of_the_killed_member": len(owned),
        "taken_over": len(taken),
        "takeover_p50_seconds": round(delays[len(delays) // 2], 2) if delays else None,
        "takeover_max_seconds": round(delays[-1], 2) if delays else None,
    }


def _wall(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def run_three(args: argparse.Namespace) -> dict[str, Any]:
    with processes() as procs:
        target = start_nginx(procs)
        store, standin_pid = start_standin(procs)
        members = []
        for name in ("m1", "m2", "m3"):
            work = procs.work / name
            work.mkdir()
            path, base = daemon_config(
                Processes(work=work),
                _cluster_toml() + http_services(args.services, target),
                interval_seconds=args.interval,
                jitter_seconds=1.0,
                store_url=store,
            )
            env = {**os.environ, "UPTIME_INSTANCE": name}
            members.append((start_daemon(procs, path, base, env=env), base, name))
        wait_all_checked(members[0][1], args.services, args.interval * 3 + 120)
        time.sleep(args.settle)
        figures = measure(
            [(d.pid, b) for d, b, _ in members], args.window, {"standin": standin_pid}
        )
        victim, _, victim_name = members[1]
        kill_wall = time.time()
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        bound = TTL_SECONDS + HEARTBEAT_SECONDS + args.interval
        time.sleep(bound + 2 * HEARTBEAT_SECONDS + 5)
        takeover = asyncio.run(
            owners_and_takeover(store, victim_name, kill_wall, kill_wall + bound + 30)
        )
        takeover["bound_seconds"] = bound
        return {"members": figures[:3], "standin": figures[3], "takeover": takeover}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=60.0)
    parser.add_argument("--window", type=float, default=120.0, help="measurement window, seconds")
    parser.add_argument("--settle", type=float, default=20.0, help="after every service is checked")
    args = parser.parse_args()
    emit("machine", **machine(), services=args.services, interval_seconds=args.interval)
    alone = run_alone(args)
    emit("alone", **alone)
    three = run_three(args)
    per = three["members"]
    total_cpu = sum(m["cpu_percent_of_one_core"] for m in per)
    emit(
        "three",
        members=per,
        standin=three["standin"],
        cpu_percent_total=round(total_cpu, 1),
        cpu_per_member_vs_alone=round(
            (total_cpu / 3) / max(alone["daemon"]["cpu_percent_of_one_core"], 1e-9), 2
        ),
        rss_per_member_vs_alone=round(
            (sum(m["rss_mib"] for m in per) / 3) / alone["daemon"]["rss_mib"], 2
        ),
        probes_per_second_total=round(sum(m["probes_per_second"] for m in per), 1),
        probes_per_second_alone=alone["daemon"]["probes_per_second"],
    )
    emit("takeover", **three["takeover"])


if __name__ == "__main__":
    main()
