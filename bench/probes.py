"""Probe cost: CPU per probe of the daemon against raw aiohttp and the Prometheus blackbox exporter.

Figures (one JSON line each, machine info first):

* ``raw_aiohttp_http``: the floor. A subprocess runs C coroutines each looping ``GET nginx`` on one
  shared ``ClientSession`` (a fresh TCP connection per request, and a keep-alive variant), on
  asyncio's loop and on uvloop; also a paced variant shaped like the daemon's load (one coroutine
  per service, one probe per interval). CPU is the subprocess's, from /proc.
* ``daemon_http``: the daemon end to end (probe → status machine → SQLite append → projection) with
  N HTTP services against nginx, on uvloop and on asyncio's loop, each with the lean HTTP client
  and with aiohttp's (``UPTIME_HTTP_CLIENT=lean|aiohttp``). Probes and events come from
  ``/metrics``, scraped only at the start and the end of the window; CPU from /proc.
* ``blackbox_http``: ``prometheus-blackbox-exporter`` probing the same nginx, driven by wrk on
  ``/probe``; CPU of the exporter per completed ``/probe`` request.
* ``ratios``: per loop and HTTP client, daemon ÷ blackbox (target ≤ 0.7) and daemon ÷ raw aiohttp
  on the same loop (≤ 2); and the lean client's daemon ÷ aiohttp's.
* ``raw_aiohttp_websocket``, ``daemon_websocket``: the same against a loopback aiohttp echo server
  (connect, send ``ping``, expect ``ping``, close, per probe).

Everything listens on 127.0.0.1 and is stopped at the end; logs stay in each section's work dir.

    python bench/probes.py                                  # the real run (about 20 minutes)
    python bench/probes.py --seconds 10 --warmup 5 --services 100 --only raw daemon
    python bench/probes.py --services 150 --only daemon blackbox --loops uvloop   # 300 probes/s
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Final

import aiohttp
import httptools
import uvloop
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
    require,
    rss_mib,
    start_daemon,
    start_nginx,
    wait_for,
    wrk,
)

LOOPS: Final = ("uvloop", "asyncio")
HTTP_CLIENTS: Final = ("lean", "aiohttp")
"""``UPTIME_HTTP_CLIENT`` of the daemon's HTTP runs: the lean client for plain checks, or aiohttp's."""
RAW_WARMUP_SECONDS: Final = 5.0
"""A raw client loop is warm after a few seconds; the daemon gets ``--warmup``."""
PHASE_POLL_SECONDS: Final = 0.005
MAX_FAILED_SHARE: Final = 0.01
"""A figure with more failed probes than this is marked ``valid: false`` and left out of ratios."""
MAX_SHORTFALL_SHARE: Final = 0.02
"""The daemon ``kept_up`` when it completed at least this close to the offered probe rate."""
LOG_SAMPLES: Final = 4
LATENESS_LIMITS: Final = ("0.01", "0.1", "1.0")
"""Bucket bounds of ``uptime_scheduler_lateness_seconds`` reported as shares of late starts."""

RAW_CLIENT: Final = r"""
import asyncio, json, sys, time
import aiohttp

cfg = json.loads(sys.argv[1])

def say(**fields):
    print(json.dumps(fields), flush=True)

async def http_once(session):
    async with session.get(cfg["url"]) as response:
        await response.read()
        return response.status == 200

async def ws_once(session):
    async with session.ws_connect(cfg["url"], autoping=True) as ws:
        await ws.send_str("ping")
        message = await ws.receive()
        ok = message.type is aiohttp.WSMsgType.TEXT and message.data == "ping"
        await ws.close()
        return ok

async def main():
    loop = asyncio.get_running_loop()
    once = ws_once if cfg["kind"] == "websocket" else http_once
    counts = {"ok": 0, "failed": 0}
    errors = {}
    connector = aiohttp.TCPConnector(force_close=cfg["fresh"], limit=0)
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        async def worker(index):
            interval = cfg["interval"]
            due = loop.time() + interval * index / cfg["workers"]
            while True:
                if interval:
                    await asyncio.sleep(max(0.0, due - loop.time()))
                    due = max(due + interval, loop.time())
                try:
                    ok = await once(session)
                except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
                    ok = False
                    errors.setdefault(f"{type(exc).__name__}: {exc}"[:160], 0)
                    errors[f"{type(exc).__name__}: {exc}"[:160]] += 1
                counts["ok" if ok else "failed"] += 1

        tasks = [asyncio.create_task(worker(i)) for i in range(cfg["workers"])]
        await asyncio.sleep(cfg["warmup"])
        before, started = dict(counts), time.monotonic()
        say(phase="start")
        await asyncio.sleep(cfg["seconds"])
        elapsed = time.monotonic() - started
        say(
            phase="end",
            ok=counts["ok"] - before["ok"],
            failed=counts["failed"] - before["failed"],
            seconds=elapsed,
            errors=dict(sorted(errors.items(), key=lambda item: -item[1])[:3]),
        )
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

factory = None
if cfg["loop"] == "uvloop":
    import uvloop
    factory = uvloop.new_event_loop
with asyncio.Runner(loop_factory=factory) as runner:
    runner.run(main())
time.sleep(30)  # the parent reads our CPU after "end"; it stops us sooner
"""

ECHO_SERVER: Final = r"""
import asyncio, sys
import uvloop
from aiohttp import WSMsgType, web

async def echo(request):
    ws = web.WebSocketResponse(autoping=True)
    await ws.prepare(request)
    async for message in ws:
        if message.type is WSMsgType.TEXT:
            await ws.send_str(message.data)
    return ws

async def ok(_request):
    return web.Response(text="ok")

async def main():
    app = web.Application()
    app.router.add_get("/ws", echo)
    app.router.add_get("/", ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", int(sys.argv[1]), backlog=4096).start()
    await asyncio.Event().wait()

with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
    runner.run(main())
"""

BLACKBOX_CONFIG: Final = """modules:
  http_2xx:
    prober: http
    timeout: 5s
    http:
      preferred_ip_protocol: ip4
"""


def _ms(seconds: float, count: float) -> float | None:
    return round(1000 * seconds / count, 4) if count else None


def _phase(
    process: subprocess.Popen[bytes], log: Path, phase: str, seconds: float
) -> dict[str, Any]:
    """The first JSON line of ``log`` whose ``phase`` is ``phase``, waited for until a deadline."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict) and record.get("phase") == phase:
                    return record
        if process.poll() is not None:
            sys.exit(f"{log} ended before {phase!r}:\n{log.read_text(errors='replace')[-2000:]}")
        time.sleep(PHASE_POLL_SECONDS)
    sys.exit(f"{log}: no {phase!r} within {seconds:g} s")


def _raw_client(
    procs: Processes,
    *,
    kind: str,
    url: str,
    loop: str,
    fresh: bool,
    workers: int,
    interval: float,
    seconds: float,
    extra: list[subprocess.Popen[bytes]] | None = None,
) -> dict[str, Any]:
    """Run the raw client in a subprocess and measure its CPU (and ``extra``'s) over the window."""
    cfg = {
        "kind": kind,
        "url": url,
        "loop": loop,
        "fresh": fresh,
        "workers": workers,
        "interval": interval,
        "warmup": RAW_WARMUP_SECONDS,
        "seconds": seconds,
    }
    name = (
        f"raw-{kind}-{loop}-{'fresh' if fresh else 'keepalive'}-{'paced' if interval else 'loop'}"
    )
    client = procs.start(
        [sys.executable, "-c", RAW_CLIENT, json.dumps(cfg)], log_name=f"{name}.log"
    )
    log = procs.work / f"{name}.log"
    others = extra or []
    _phase(client, log, "start", RAW_WARMUP_SECONDS + 60)
    cpu0, others0 = cpu_seconds(client.pid), [cpu_seconds(p.pid) for p in others]
    end = _phase(client, log, "end", seconds + 60)
    cpu1, others1 = cpu_seconds(client.pid), [cpu_seconds(p.pid) for p in others]
    rss = rss_mib(client.pid)
    client.terminate()
    client.wait(timeout=30)
    probes = end["ok"] + end["failed"]
    return {
        "valid": end["failed"] <= MAX_FAILED_SHARE * probes,
        "loop": loop,
        "connection": "fresh" if fresh else "keepalive",
        "load": f"paced {workers} x every {interval:g} s" if interval else f"{workers} concurrent",
        "seconds": round(end["seconds"], 2),
        "probes": probes,
        "failed": end["failed"],
        "errors": end["errors"],
        "probes_per_second": round(probes / end["seconds"], 1),
        "cpu_seconds": round(cpu1 - cpu0, 2),
        "cpu_ms_per_probe": _ms(cpu1 - cpu0, probes),
        "cpu_share_of_one_core": round((cpu1 - cpu0) / end["seconds"], 3),
        "rss_mib": rss,
        "other_cpu_ms_per_probe": [
            _ms(b - a, probes) for a, b in zip(others0, others1, strict=True)
        ],
    }


def run_raw(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """``raw_aiohttp_http``: saturated fresh and keep-alive loops, then the daemon-shaped paced load."""
    variants = [(loop, fresh, 0.0) for fresh in (True, False) for loop in LOOPS]
    variants += [(loop, True, args.interval) for loop in LOOPS]
    for loop, fresh, interval in variants:
        with processes() as procs:  # a fresh target each time: no TIME_WAIT carried over
            target = start_nginx(procs, workers=1)
            nginx = procs.started[-1]
            figure = _raw_client(
                procs,
                kind="http",
                url=f"{target}/raw",
                loop=loop,
                fresh=fresh,
                workers=args.services if interval else args.connections,
                interval=interval,
                seconds=args.seconds,
            )
            figure.pop("other_cpu_ms_per_probe")
            figure["target_alive"] = nginx.poll() is None
            load = "paced" if interval else "saturated"
            results[f"raw_http_{loop}_{figure['connection']}_{load}"] = figure
            emit("raw_aiohttp_http", **figure)


def _scan_log(log: Path, *, start: int = 0, end: int | None = None) -> dict[str, Any]:
    """Count the daemon's log lines (bytes ``start:end``) by level; keep a few distinct warnings."""
    levels: collections.Counter[str] = collections.Counter()
    samples: dict[str, str] = {}
    text = log.read_bytes()[start:end].decode(errors="replace") if log.exists() else ""
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            levels["unparsed"] += 1
            samples.setdefault(f"unparsed {line[:40]}", line[:300])
            continue
        level = str(record.get("level", "none"))
        levels[level] += 1
        if level != "info" and len(samples) < LOG_SAMPLES:
            event = re.sub(r'"[^"]*"', '""', str(record.get("event")))  # job names apart
            key = f"{level} {record.get('logger')} {event[:60]}"
            samples.setdefault(key, line[:300])
    return {"levels": dict(levels), "samples": list(samples.values())}


def _stop_and_scan(procs: Processes, figure: dict[str, Any]) -> None:
    """Stop everything; report the daemon's log up to now and what its shutdown logged apart."""
    log = procs.work / "daemon.log"
    running = log.stat().st_size
    procs.stop_all()
    figure["log_while_running"] = _scan_log(log, end=running)
    figure["log_at_shutdown"] = _scan_log(log, start=running)


def _late_shares(before: str, after: str) -> dict[str, float | None]:
    name = "uptime_scheduler_lateness_seconds"
    count = metric_sum(after, f"{name}_count") - metric_sum(before, f"{name}_count")
    total = metric_sum(after, f"{name}_sum") - metric_sum(before, f"{name}_sum")
    shares: dict[str, float | None] = {
        "lateness_mean_ms": round(1000 * total / count, 3) if count else None
    }
    for limit in LATENESS_LIMITS:
        within = metric_sum(after, f"{name}_bucket", le=limit) - metric_sum(
            before, f"{name}_bucket", le=limit
        )
        shares[f"late_over_{limit}s_share"] = round(1 - within / count, 4) if count else None
    return shares


def _delta(before: str, after: str, name: str, **labels: str) -> float:
    return metric_sum(after, name, **labels) - metric_sum(before, name, **labels)


def _mean_ms(before: str, after: str, name: str) -> float | None:
    count = metric_sum(after, f"{name}_count") - metric_sum(before, f"{name}_count")
    total = metric_sum(after, f"{name}_sum") - metric_sum(before, f"{name}_sum")
    return round(1000 * total / count, 3) if count else None


def _daemon_window(
    procs: Processes,
    daemon: subprocess.Popen[bytes],
    base: str,
    *,
    services: int,
    interval: float,
    seconds: float,
    extra: list[subprocess.Popen[bytes]] | None = None,
) -> dict[str, Any]:
    """Scrape, measure CPU over ``seconds``, scrape again; then check the projection kept up."""
    others = extra or []
    scrape0 = time.monotonic()
    before = fetch(f"{base}/metrics")
    started = time.monotonic()
    cpu0, others0 = cpu_seconds(daemon.pid), [cpu_seconds(p.pid) for p in others]
    time.sleep(seconds)
    cpu1, others1 = cpu_seconds(daemon.pid), [cpu_seconds(p.pid) for p in others]
    stopped = time.monotonic()
    after = fetch(f"{base}/metrics")
    scrape1 = time.monotonic()
    # Counters are read somewhere inside each scrape: their midpoints bound the probe window.
    counted = (stopped + scrape1) / 2 - (scrape0 + started) / 2
    cpu_window = stopped - started
    probes = metric_sum(after, "uptime_probes_total") - metric_sum(before, "uptime_probes_total")
    ok = metric_sum(after, "uptime_probes_total", result="ok") - metric_sum(
        before, "uptime_probes_total", result="ok"
    )
    appended = metric_sum(after, "uptime_events_appended_total") - metric_sum(
        before, "uptime_events_appended_total"
    )
    rate = probes / counted
    summary = json.loads(fetch(f"{base}/uptime/summary?hours=1"))
    projected = sum(service["checks"]["total"] for service in summary["services"])
    offered = services / interval
    return {
        "valid": probes - ok <= MAX_FAILED_SHARE * probes,
        "services": services,
        "interval_seconds": interval,
        "offered_probes_per_second": round(offered, 1),
        "seconds": round(counted, 2),
        "probes": int(probes),
        "failed": int(probes - ok),
        "probes_per_second": round(rate, 1),
        "shortfall_share": round(1 - rate / offered, 4),
        "kept_up": rate >= (1 - MAX_SHORTFALL_SHARE) * offered,
        "events_per_second": round(appended / counted, 1),
        "cpu_seconds": round(cpu1 - cpu0, 2),
        "cpu_ms_per_probe": _ms(cpu1 - cpu0, rate * cpu_window),
        "cpu_share_of_one_core": round((cpu1 - cpu0) / cpu_window, 3),
        "other_cpu_ms_per_probe": [
            _ms(b - a, rate * cpu_window) for a, b in zip(others0, others1, strict=True)
        ],
        "probe_mean_ms": _mean_ms(before, after, "uptime_probe_duration_seconds"),
        "append_mean_ms": _mean_ms(before, after, "uptime_event_append_duration_seconds"),
        **_late_shares(before, after),
        # Runs due while the previous one of that service still ran (dropped), and runs that
        # started later than their misfire grace (dropped too): both are shed, counted in /metrics.
        "skipped_runs": int(_delta(before, after, "uptime_scheduler_skipped_runs_total")),
        "missed_runs": int(
            _delta(before, after, "uptime_checks_inconclusive_total", reason="shed")
            - _delta(before, after, "uptime_scheduler_skipped_runs_total")
        ),
        "append_failures": int(
            metric_sum(after, "uptime_event_append_failures_total")
            - metric_sum(before, "uptime_event_append_failures_total")
        ),
        "spool_events": metric_sum(after, "uptime_spool_events"),
        "event_loop_tasks": metric_sum(after, "uptime_event_loop_tasks"),
        "projector_lag_seconds": metric_sum(after, "uptime_projector_lag_seconds"),
        "probes_total_at_end": int(metric_sum(after, "uptime_probes_total")),
        "projected_checks_after": projected,
        "scrape_ms": round(1000 * (started - scrape0), 1),
        "rss_mib": rss_mib(daemon.pid),
        "work": str(procs.work),
    }


def _measure_daemon(
    procs: Processes,
    args: argparse.Namespace,
    services_toml: str,
    *,
    loop: str,
    services: int,
    extra: list[subprocess.Popen[bytes]] | None = None,
    http_client: str | None = None,
) -> dict[str, Any]:
    """Start a daemon for ``services_toml`` on ``loop``, warm it up, measure one window, stop it."""
    config, base = daemon_config(
        procs, services_toml, interval_seconds=args.interval, timeout_seconds=5.0
    )
    env = {"UPTIME_EVENT_LOOP": loop}
    if http_client is not None:
        env["UPTIME_HTTP_CLIENT"] = http_client
    daemon = start_daemon(procs, config, base, env=env)
    time.sleep(args.warmup)
    figure = {
        "loop": loop,
        **({"http_client": http_client} if http_client is not None else {}),
        **_daemon_window(
            procs,
            daemon,
            base,
            services=services,
            interval=args.interval,
            seconds=args.seconds,
            extra=extra,
        ),
    }
    _stop_and_scan(procs, figure)
    return figure


def run_daemon(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """``daemon_http``: N HTTP services on nginx, per event loop and HTTP client, each on a fresh store."""
    for loop in args.loops:
        for client in args.clients:
            with processes() as procs:
                target = start_nginx(procs, workers=1)
                services = http_services(args.services, target)
                figure = _measure_daemon(
                    procs, args, services, loop=loop, services=args.services, http_client=client
                )
                figure.pop("other_cpu_ms_per_probe")
                results[f"daemon_http_{loop}_{client}"] = figure
                emit("daemon_http", **figure)


def run_blackbox(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """``blackbox_http``: the exporter's CPU per ``/probe`` of nginx, driven by wrk."""
    exporter = "/usr/bin/prometheus-blackbox-exporter"
    if not Path(exporter).exists():
        exporter = require("prometheus-blackbox-exporter")["prometheus-blackbox-exporter"]
    version = subprocess.run(
        [exporter, "--version"], capture_output=True, text=True, check=False, timeout=30
    )
    with processes() as procs:
        target = start_nginx(procs, workers=1)
        config = procs.work / "blackbox.yml"
        config.write_text(BLACKBOX_CONFIG)
        port = free_port()
        process = procs.start(
            [
                exporter,
                f"--config.file={config}",
                f"--web.listen-address={LOOPBACK}:{port}",
                "--log.level=warn",
            ],
            log_name="blackbox.log",
        )
        base = f"http://{LOOPBACK}:{port}"
        wait_for(f"{base}/-/healthy")
        probe = f"{base}/probe?module=http_2xx&target={target}/bb"
        first = fetch(probe)
        if metric_sum(first, "probe_success") != 1:
            sys.exit(f"blackbox probe of nginx failed:\n{first}")
        wrk(probe, connections=args.connections, seconds=max(1, round(RAW_WARMUP_SECONDS)))
        cpu0 = cpu_seconds(process.pid)
        load = wrk(probe, connections=args.connections, seconds=max(1, round(args.seconds)))
        cpu1 = cpu_seconds(process.pid)
        last = fetch(probe)
        requests = load["requests"] or 0
        last_success = metric_sum(last, "probe_success")
        figure = {
            # wrk sees /probe answer 200 whatever the probe found: its first and last probe tell
            "valid": load["non_2xx"] == 0 and last_success == 1,
            "version": (version.stdout + version.stderr).split("\n", 1)[0].strip(),
            "connections": args.connections,
            "seconds": args.seconds,
            "probes": requests,
            "non_2xx": load["non_2xx"],
            "probes_per_second": load["requests_per_second"],
            "cpu_seconds": round(cpu1 - cpu0, 2),
            "cpu_ms_per_probe": _ms(cpu1 - cpu0, requests),
            "cpu_share_of_one_core": round((cpu1 - cpu0) / args.seconds, 3),
            "p50_ms": load["p50_ms"],
            "p99_ms": load["p99_ms"],
            "last_probe_success": last_success,
            "rss_mib": rss_mib(process.pid),
            "work": str(procs.work),
        }
        results["blackbox_http_saturated"] = figure
        emit("blackbox_http", load=f"wrk {args.connections} connections", **figure)
        # The daemon's shape: one scraper per service, one /probe per interval (keep-alive, as
        # Prometheus scrapes), so the exporter's CPU per probe is read at the same offered rate.
        paced = _raw_client(
            procs,
            kind="http",
            url=probe,
            loop="uvloop",
            fresh=False,
            workers=args.services,
            interval=args.interval,
            seconds=args.seconds,
            extra=[process],
        )
        last_success = metric_sum(fetch(probe), "probe_success")
        figure = {
            "valid": paced["valid"] and last_success == 1,
            "version": figure["version"],
            "load": paced["load"],
            "seconds": paced["seconds"],
            "probes": paced["probes"],
            "non_2xx": paced["failed"],
            "probes_per_second": paced["probes_per_second"],
            "cpu_ms_per_probe": paced["other_cpu_ms_per_probe"][0],
            "driver_cpu_ms_per_probe": paced["cpu_ms_per_probe"],
            "last_probe_success": last_success,
            "rss_mib": rss_mib(process.pid),
            "work": str(procs.work),
        }
        results["blackbox_http_paced"] = figure
        emit("blackbox_http", **figure)


def _ratio(numerator: dict[str, Any] | None, denominator: dict[str, Any] | None) -> float | None:
    if not numerator or not denominator:
        return None
    if not (numerator.get("valid", True) and denominator.get("valid", True)):
        return None  # a figure where probes failed measures the failures, not the probes
    top, bottom = numerator.get("cpu_ms_per_probe"), denominator.get("cpu_ms_per_probe")
    return round(top / bottom, 3) if top and bottom else None


def _emit_ratio_fields(
    results: dict[str, Any], loop: str, daemon: dict[str, Any] | None, websocket: bool
) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for load in ("saturated", "paced"):
        comparisons: list[tuple[str, dict[str, Any] | None, str, float | None]] = [
            ("daemon_over_blackbox", daemon, f"blackbox_http_{load}", 0.7),
            ("daemon_over_raw", daemon, f"raw_http_{loop}_fresh_{load}", 2),
        ]
        if websocket:
            comparisons.append(
                (
                    "websocket_daemon_over_raw",
                    results.get(f"daemon_websocket_{loop}"),
                    f"raw_websocket_{loop}_{load}",
                    None,
                )
            )
        for name, top, bottom, target in comparisons:
            ratio = _ratio(top, results.get(bottom))
            if ratio is None:
                continue
            fields[f"{name}_{load}"] = ratio
            if target is not None:  # the WebSocket probe has no target of its own
                fields[f"{name}_{load}_target"] = target
                fields[f"{name}_{load}_met"] = ratio <= target
    return fields


def emit_ratios(results: dict[str, Any]) -> None:
    """``ratios``: CPU per probe of the daemon against blackbox and raw aiohttp; printed, never asserted.

    One line per loop and HTTP client (the WebSocket ratio on the first); then, per loop, the
    lean client's CPU per probe over aiohttp's in the same run.
    """
    for loop in LOOPS:
        for index, client in enumerate(HTTP_CLIENTS):
            daemon = results.get(f"daemon_http_{loop}_{client}")
            fields = _emit_ratio_fields(results, loop, daemon, websocket=index == 0)
            if fields:
                emit("ratios", loop=loop, http_client=client, **fields)
        lean = _ratio(
            results.get(f"daemon_http_{loop}_lean"), results.get(f"daemon_http_{loop}_aiohttp")
        )
        if lean is not None:
            emit("ratios", loop=loop, lean_over_aiohttp=lean)


def _ws_services(count: int, url: str) -> str:
    return "".join(
        f'[services.w{i}]\nkind = "websocket"\nurl = "{url}"\n'
        'script = [{ send = "ping" }, { expect = "ping" }]\n'
        for i in range(count)
    )


def _start_echo(procs: Processes) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    server = procs.start([sys.executable, "-c", ECHO_SERVER, str(port)], log_name="echo.log")
    wait_for(f"http://{LOOPBACK}:{port}/")
    return server, f"ws://{LOOPBACK}:{port}/ws"


def run_websocket(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """Raw ``ws_connect``/send/receive/close loops, then the daemon with N WebSocket services."""
    services = args.ws_services or args.services
    with processes() as procs:
        server, url = _start_echo(procs)
        for interval, loop in [(i, loop) for i in (0.0, args.interval) for loop in LOOPS]:
            figure = _raw_client(
                procs,
                kind="websocket",
                url=url,
                loop=loop,
                fresh=True,
                workers=services if interval else args.connections,
                interval=interval,
                seconds=args.seconds,
                extra=[server],
            )
            figure["server_cpu_ms_per_probe"] = figure.pop("other_cpu_ms_per_probe")[0]
            results[f"raw_websocket_{loop}_{'paced' if interval else 'saturated'}"] = figure
            emit("raw_aiohttp_websocket", **figure)
    for loop in LOOPS:
        with processes() as procs:
            server, url = _start_echo(procs)
            figure = _measure_daemon(
                procs,
                args,
                _ws_services(services, url),
                loop=loop,
                services=services,
                extra=[server],
            )
            figure["server_cpu_ms_per_probe"] = figure.pop("other_cpu_ms_per_probe")[0]
            results[f"daemon_websocket_{loop}"] = figure
            emit("daemon_websocket", **figure)


SECTIONS: Final = {
    "raw": run_raw,
    "daemon": run_daemon,
    "blackbox": run_blackbox,
    "websocket": run_websocket,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=60, help="measurement window")
    parser.add_argument("--warmup", type=float, default=15, help="daemon warm-up before measuring")
    parser.add_argument("--services", type=int, default=500, help="HTTP services of the daemon")
    parser.add_argument("--interval", type=float, default=0.5, help="check interval, seconds")
    parser.add_argument(
        "--connections", type=int, default=16, help="concurrency of raw loops and wrk"
    )
    parser.add_argument(
        "--ws-services", type=int, default=None, help="WebSocket services (default: --services)"
    )
    parser.add_argument("--only", nargs="+", choices=sorted(SECTIONS), default=list(SECTIONS))
    parser.add_argument(
        "--loops", nargs="+", choices=LOOPS, default=list(LOOPS), help="event loops of the daemon"
    )
    parser.add_argument(
        "--clients",
        nargs="+",
        choices=HTTP_CLIENTS,
        default=list(HTTP_CLIENTS),
        help="UPTIME_HTTP_CLIENT of the daemon's HTTP runs",
    )
    args = parser.parse_args()
    require("nginx", "wrk")
    emit(
        "machine",
        **machine(),
        aiohttp=aiohttp.__version__,
        httptools=httptools.__version__,
        uvloop=uvloop.__version__,
        seconds=args.seconds,
        warmup=args.warmup,
        services=args.services,
        interval_seconds=args.interval,
        connections=args.connections,
    )
    results: dict[str, Any] = {}
    for name in SECTIONS:
        if name in args.only:
            SECTIONS[name](args, results)
    emit_ratios(results)


if __name__ == "__main__":
    main()
