"""API: ``/uptime/summary?hours=24`` for 1,000 services with a day of history, closed and open loop.

The store is filled first with ``--hours-of-history`` of realistic history per service (``_history.py``,
the daemon's own event code; by default one check every 300 s, i.e. 1,000 × 288 = 288,000 events,
a full 24 h window at the daemon's own interval), then a daemon starts on it with the same services
pointing at a loopback nginx and the same long interval, so live probing is light. Once
``/health/ready`` is 200 (the projector has folded the log) the summary is driven by

a) wrk, closed loop: requests/s and p50/p90/p99;
b) an open loop at a fixed ``--rate`` (a separate process, ``--open-loop-client``): every request is
   due at its own time on a fixed schedule and its latency is measured from that time, so a slow
   answer delays nothing else and is not hidden (no coordinated omission). Target p99 < 20 ms at
   500 req/s; a request not answered within ``--request-timeout`` of its due time is counted as
   timed out (and as that long in the percentiles). It runs once per ``--modes`` entry:
   ``plain`` (``Accept-Encoding: identity``, the whole JSON), ``gzip`` (``Accept-Encoding: gzip``,
   the body left compressed as a proxy would pass it on) and ``conditional`` (gzip, plus
   ``If-None-Match`` with the last ``ETag`` seen, as a polling client sends it: mostly 304s).
   The client is ``_lean_get`` by default (bodies counted, never kept: ~0.16 of a core at 500
   identity answers/s of 1.26 MB); ``--client aiohttp`` reads each body whole through aiohttp's
   client, which needed a whole core at that rate and put its own lag in the figures.
   Each phase starts with ``--warmup`` seconds of the same load, reported apart (``warmup_*``):
   the first request after an idle spell waits while the whole answer is computed again, and the
   percentiles are of the steady state that follows.

Each phase reports the daemon's CPU % (from /proc). The response size and a check of its figures
against what was generated come first.

    python bench/api.py                          # 1,000 services, 24 h, 30 s per phase, 500 req/s
    python bench/api.py --services 200 --seconds 10 --rate 100
    python bench/api.py --seconds 10 --modes conditional gzip
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Coroutine
from functools import partial
from pathlib import Path
from typing import Any, Final

import orjson
from _common import (
    cpu_seconds,
    daemon_config,
    emit,
    http_services,
    machine,
    percentile,
    require,
    rss_mib,
    start_daemon,
    start_nginx,
    stored_payloads,
    wrk,
)
from _history import SERVICE_PREFIX, History, workspace, write_history

TIMEOUT_SECONDS: Final = 5.0
P99_TARGET_MS: Final = 20.0
READY_DEADLINE_SECONDS: Final = 900.0
CLIENT_CONNECTIONS: Final = 64
MODES: Final = ("plain", "gzip", "conditional")
CLIENTS: Final = ("lean", "aiohttp")


# --- the open-loop client (runs in its own process) -----------------------------------------------


def _spread(
    seconds: list[float], *, prefix: str = "", quantiles: tuple[float, ...] = (0.50, 0.90, 0.99)
) -> dict[str, float | None]:
    """Percentiles and the maximum of latencies, in milliseconds (``None`` for none)."""
    ms = sorted(1000 * x for x in seconds)
    spread: dict[str, float | None] = {
        f"{prefix}p{round(100 * q)}_ms": round(percentile(ms, q), 3) if ms else None
        for q in quantiles
    }
    spread[f"{prefix}max_ms"] = round(ms[-1], 3) if ms else None
    return spread


async def _pace(
    tasks: set[asyncio.Task[None]],
    launch: Callable[[float], Coroutine[Any, Any, None]],
    *,
    rate: float,
    start: float,
    count: int,
    lag: list[float] | None = None,
) -> None:
    """Start ``launch(due)`` for ``count`` due times ``start + i / rate``, each at its time."""
    loop = asyncio.get_running_loop()
    for i in range(count):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if lag is not None:
            lag.append(max(0.0, loop.time() - due))
        task = asyncio.create_task(launch(due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)


Fetch = Callable[[dict[str, str]], Coroutine[Any, Any, tuple[int, int, str]]]
"""One GET with these headers: its status, the body's length and its ``ETag`` (or "")."""


async def _warm(fetch: Fetch, *, encoding: str, deadline: float) -> str:
    """One warm-up request (unconditional); its ``ETag``, or "" when it failed."""
    with contextlib.suppress(TimeoutError, ConnectionError, OSError):
        async with asyncio.timeout_at(deadline):
            status, _, tag = await fetch({"Accept-Encoding": encoding})
            return tag if status == 200 else ""
    return ""


@contextlib.asynccontextmanager
async def _client(url: str, kind: str) -> AsyncIterator[Fetch]:
    """``kind``'s GET of ``url``.

    ``lean`` is ``_lean_get`` (bodies counted, never kept); ``aiohttp`` its client (bodies read
    whole, never decompressed).
    """
    if kind == "lean":
        from _lean_get import LeanGet  # noqa: PLC0415 - only the client process needs it

        lean = LeanGet(url, connections=CLIENT_CONNECTIONS)

        async def lean_fetch(headers: dict[str, str]) -> tuple[int, int, str]:
            answer = await lean.get(headers)
            return answer.status, answer.length, answer.etag

        try:
            yield lean_fetch
        finally:
            lean.close()
        return
    import aiohttp  # noqa: PLC0415 - only the client process needs it

    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=CLIENT_CONNECTIONS), auto_decompress=False
    ) as session:

        async def aiohttp_fetch(headers: dict[str, str]) -> tuple[int, int, str]:
            try:
                async with session.get(url, headers=headers) as response:
                    body = await response.read()
                    return response.status, len(body), response.headers.get("ETag", "")
            except aiohttp.ClientError as error:
                raise ConnectionError(str(error)) from error

        yield aiohttp_fetch


async def open_loop(
    url: str,
    *,
    rate: float,
    seconds: float,
    request_timeout: float,
    mode: str = "plain",
    warmup: float = 0.0,
    client: str = "lean",
) -> dict[str, Any]:
    """Send ``rate × (warmup + seconds)`` GETs, request ``i`` due at ``start + i / rate``.

    Latency is from the due time. The first ``warmup`` seconds are the same load, reported apart
    (``warmup_*``): the steady state is what the percentiles describe, and the cold start (an
    answer not asked for since the last phase is rebuilt whole) is shown beside them.
    ``mode`` is what the client accepts (see the module docstring); bodies are never decompressed,
    so the figures are the daemon's and the wire's, not the client's inflate. ``client`` is
    whose HTTP client sends them (``_client``).
    """
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    timed_out = errors = 0
    statuses: dict[str, int] = {}
    send_lag: list[float] = []
    last_done, etag = 0.0, ""
    body_bytes: dict[str, int] = {}
    encoding = "identity" if mode == "plain" else "gzip"

    async def one(fetch: Fetch, due: float) -> None:
        nonlocal timed_out, errors, last_done, etag
        condition = {"If-None-Match": etag} if mode == "conditional" and etag else {}
        try:
            async with asyncio.timeout_at(due + request_timeout):
                status, length, tag = await fetch({"Accept-Encoding": encoding, **condition})
        except TimeoutError:
            timed_out += 1
            latencies.append(request_timeout)
            return
        except (ConnectionError, OSError):
            errors += 1
            return
        done = loop.time()
        last_done = max(last_done, done)
        latencies.append(done - due)
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        body_bytes[str(status)] = length  # the last of each status
        if status == 200 and tag:
            etag = tag

    total = round(rate * seconds)
    async with _client(url, client) as fetch:
        tasks: set[asyncio.Task[None]] = set()
        cold: list[float] = []

        async def warm(due: float) -> None:
            nonlocal etag
            tag = await _warm(fetch, encoding=encoding, deadline=due + request_timeout)
            cold.append(loop.time() - due)
            etag = tag if mode == "conditional" and tag else etag

        start = loop.time() + 0.2 + warmup
        await _pace(tasks, warm, rate=rate, start=start - warmup, count=round(rate * warmup))
        await _pace(tasks, partial(one, fetch), rate=rate, start=start, count=total, lag=send_lag)
        sent = loop.time()
        if tasks:  # every task ends by its own deadline; this bound is only a backstop
            await asyncio.wait(tasks, timeout=request_timeout + 5)
    answered = len(latencies) - timed_out
    return {
        "mode": mode,
        "client": client,
        "requests": total,
        "answered": answered,
        "timed_out": timed_out,
        "errors": errors,
        "statuses": statuses,
        "target_rate": rate,
        "sent_rate": round(total / (sent - start), 1) if sent > start else None,
        "achieved_rate": round(answered / (last_done - start), 1) if last_done > start else 0,
        **_spread(latencies),
        "client_send_lag_p99_ms": round(1000 * percentile(send_lag, 0.99), 3),
        "warmup_seconds": warmup,
        **_spread(cold, prefix="warmup_", quantiles=(0.50, 0.99)),
        "body_bytes_by_status": body_bytes,
    }


def client_main(args: argparse.Namespace) -> None:
    try:
        import uvloop  # noqa: PLC0415 - cheaper per request where installed

        factory: Any = uvloop.new_event_loop
    except ImportError:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        result = runner.run(
            open_loop(
                args.open_loop_client,
                rate=args.rate,
                seconds=args.seconds,
                request_timeout=args.request_timeout,
                mode=args.mode,
                warmup=args.warmup,
                client=args.client,
            )
        )
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["client_cpu_seconds"] = round(usage.ru_utime + usage.ru_stime, 2)
    print(json.dumps(result), flush=True)


# --- the benchmark ---------------------------------------------------------------------------------


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback URL
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def wait_ready(base: str) -> None:
    """Until ``/health/ready`` answers 200 (the projector has caught up)."""
    started = time.monotonic()
    while time.monotonic() - started < READY_DEADLINE_SECONDS:
        if status_of(f"{base}/health/ready") == 200:
            return
        time.sleep(0.1)
    sys.exit(f"{base}/health/ready not 200 within {READY_DEADLINE_SECONDS:g} s")


def check_summary(body: bytes, history: History) -> dict[str, Any]:
    """The answer's figures beside what was generated (the window is 24 h back from *now*)."""
    raw = orjson.loads(body)
    services = raw["services"]
    seconds = {"up": 0.0, "degraded": 0.0, "down": 0.0, "unknown": 0.0}
    for service in services:
        for state in seconds:
            seconds[state] += service["seconds"][state]
    window = sum(seconds.values()) or 1.0
    return {
        "services_in_answer": len(services),
        "configured": sum(service["configured"] for service in services),
        "checks_in_window": sum(service["checks"]["total"] for service in services),
        "checks_generated": history.counts.checks,
        "incidents_in_window": sum(len(service["incidents"]) for service in services),
        "incidents_generated": history.counts.incidents,
        "share_of_window": {state: round(value / window, 5) for state, value in seconds.items()},
        "down_share_generated": round(history.counts.down_checks / history.counts.checks, 5),
    }


def stored_status_events(db: Path) -> int:
    return sum(1 for _ in stored_payloads(db, ("ServiceStatusChanged",)))


def log_errors(path: Path) -> dict[str, int]:
    """Error-level events of the daemon's JSON log, by event name (tracebacks as ``traceback``)."""
    found: dict[str, int] = {}
    for line in path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            name = "traceback" if "Traceback" in line else ""
        else:
            level = str(entry.get("level", "")) if isinstance(entry, dict) else ""
            name = str(entry.get("event")) if level in {"error", "critical"} else ""
        if name:
            found[name] = found.get(name, 0) + 1
    return found


def run_client(url: str, args: argparse.Namespace, mode: str) -> dict[str, Any]:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--open-loop-client",
        url,
        *("--mode", mode),
        *("--rate", str(args.rate), "--seconds", str(args.seconds)),
        *("--request-timeout", str(args.request_timeout)),
        *("--warmup", str(args.warmup)),
        *("--client", args.client),
    ]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=args.warmup + args.seconds + args.request_timeout + 120,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"open-loop client exited {done.returncode}: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def bench(args: argparse.Namespace) -> None:
    require("nginx", "wrk")
    checks = max(1, round(args.hours_of_history * 3600 / args.interval))
    with workspace(keep=args.keep) as procs:
        target = start_nginx(procs)
        config, base = daemon_config(
            procs,
            http_services(args.services, target, prefix=SERVICE_PREFIX),
            interval_seconds=args.interval,
            timeout_seconds=TIMEOUT_SECONDS,
            jitter_seconds=min(30.0, args.interval / 10),
        )
        history = History(
            args.services, checks, interval_seconds=args.interval, timeout_seconds=TIMEOUT_SECONDS
        )
        emit(
            "api_history",
            services=args.services,
            hours=args.hours_of_history,
            interval_seconds=args.interval,
            checks_per_service=checks,
            **asyncio.run(
                write_history(
                    history, procs.work / "events.db", history.checks_per_service, batch=500
                )
            ),
        )
        launched = time.monotonic()
        daemon = start_daemon(procs, config, base)
        wait_ready(base)
        ready = time.monotonic() - launched
        url = f"{base}/uptime/summary?hours=24"
        started = time.perf_counter()
        with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - loopback URL
            body = response.read()
        emit(
            "api_summary_answer",
            seconds_from_start_to_ready=round(ready, 2),
            first_answer_ms=round(1000 * (time.perf_counter() - started), 2),
            response_bytes=len(body),
            daemon_rss_mib=rss_mib(daemon.pid),
            **check_summary(body, history),
        )
        wrk(url, threads=1, connections=args.connections, seconds=min(5, args.seconds))  # warm-up

        cpu, wall = cpu_seconds(daemon.pid), time.perf_counter()
        closed = wrk(url, threads=args.threads, connections=args.connections, seconds=args.seconds)
        cpu, wall = cpu_seconds(daemon.pid) - cpu, time.perf_counter() - wall
        emit(
            "api_summary_closed_loop",
            tool="wrk",
            threads=args.threads,
            connections=args.connections,
            seconds=args.seconds,
            **closed,
            response_bytes=len(body),
            cpu=machine()["cpu"],
            daemon_cpu_percent=round(100 * cpu / wall, 1),
            daemon_rss_mib=rss_mib(daemon.pid),
        )

        for mode in args.modes:
            cpu, wall = cpu_seconds(daemon.pid), time.perf_counter()
            opened = run_client(url, args, mode)
            cpu, wall = cpu_seconds(daemon.pid) - cpu, time.perf_counter() - wall
            emit(
                "api_summary_open_loop",
                seconds=args.seconds,
                **opened,
                target_p99_ms=P99_TARGET_MS,
                cpu=machine()["cpu"],
                daemon_cpu_percent=round(100 * cpu / wall, 1),
                daemon_rss_mib=rss_mib(daemon.pid),
                daemon_peak_rss_mib=rss_mib(daemon.pid, peak=True),
                daemon_log_errors=log_errors(procs.work / "daemon.log"),
            )
        with urllib.request.urlopen(url, timeout=120) as response:  # noqa: S310 - loopback URL
            after = check_summary(response.read(), history)
        emit(
            "api_summary_after",
            note="live checks appended while the load ran must show up in the answer",
            live_status_events_stored=stored_status_events(procs.work / "events.db")
            - history.counts.checks,
            live_checks_in_answer=after["checks_in_window"] - history.counts.checks,
            **after,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--hours-of-history", type=float, default=24.0)
    parser.add_argument(
        "--interval",
        type=float,
        default=300.0,
        help="seconds between checks, in the history and for the daemon's live probes",
    )
    parser.add_argument("--seconds", type=int, default=30, help="length of each load phase")
    parser.add_argument("--rate", type=float, default=500.0, help="open-loop requests per second")
    parser.add_argument(
        "--warmup",
        type=float,
        default=2.0,
        help="open loop: seconds of the same load before each measured phase, reported apart",
    )
    parser.add_argument("--connections", type=int, default=8, help="wrk connections")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument(
        "--request-timeout",
        type=float,
        default=5.0,
        help="open loop: a request unanswered this long after its due time counts as timed out",
    )
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=MODES,
        default=list(MODES),
        help="open-loop phases, in order: what the client accepts (module docstring)",
    )
    parser.add_argument(
        "--client",
        choices=CLIENTS,
        default="lean",
        help="the open loop's HTTP client: lean (bench/_lean_get.py, bodies counted, never kept; "
        "the default) or aiohttp's (reads each body whole: at 1.26 MB × 500/s a core of its own)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--mode", choices=MODES, default="plain", help=argparse.SUPPRESS)
    parser.add_argument("--open-loop-client", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.open_loop_client:
        client_main(args)
        return
    emit(
        "machine",
        **machine(),
        services=args.services,
        hours_of_history=args.hours_of_history,
        interval_seconds=args.interval,
        seconds=args.seconds,
        rate=args.rate,
    )
    bench(args)


if __name__ == "__main__":
    main()
