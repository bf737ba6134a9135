"""CPU per check of every probe kind, beside the HTTP probe's, in one run.

For each kind one real server is started on loopback (nginx for http and tcp, dnsmasq, an
in-process-free gRPC health server, PostgreSQL, MariaDB, Redis, the KurrentDB stand-in), then a
daemon on the embedded store with N services of that kind, every service checked every I seconds.
After a warm-up, the daemon's CPU (user + system, /proc) over the window is divided by the checks
it completed (``uptime_probes_total`` from /metrics at both ends). The figure includes what every
check pays whatever its kind (status machine, SQLite append, projection): the differences between
kinds are the probes'. One JSON line per kind, machine info first; ``ratio_to_http`` compares to
the HTTP figure of the same run.

    python bench/kinds.py                       # about 8 minutes
    python bench/kinds.py --services 20 --seconds 20 --only http redis
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

from _common import (
    Processes,
    cpu_seconds,
    daemon_config,
    emit,
    fetch,
    free_port,
    machine,
    metric_sum,
    processes,
    start_daemon,
    start_nginx,
    wait_for,
)

ROOT: Final = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.probes.net_servers import dnsmasq, redis_server  # noqa: E402 - after the path
from tests.probes.sql_servers import (  # noqa: E402
    mariadb,
    mariadb_binaries,
    postgres_bindir,
    postgres_primary,
    server_directory,
    write_tls,
)

GRPC_SERVER: Final = """
import asyncio, sys
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

async def main():
    server = aio.server()
    servicer = health.aio.HealthServicer()
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    server.add_insecure_port(f"127.0.0.1:{sys.argv[1]}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()

asyncio.run(main())
"""

Tables = Callable[[int], str]
"""``services`` count → the ``[services.*]`` tables."""


def _tables(kind_fields: str) -> Tables:
    def build(count: int) -> str:
        return "".join(f"[services.k{i}]\n{kind_fields}\n" for i in range(count))

    return build


@contextlib.contextmanager
def _http(procs: Processes) -> Iterator[Tables]:
    base = start_nginx(procs)
    yield _tables(f'kind = "http"\nurl = "{base}/"')


@contextlib.contextmanager
def _tcp(procs: Processes) -> Iterator[Tables]:
    base = start_nginx(procs)
    port = base.rsplit(":", 1)[1]
    yield _tables(f'kind = "tcp"\nhost = "127.0.0.1"\nport = {port}')


@contextlib.contextmanager
def _dns(procs: Processes) -> Iterator[Tables]:
    with dnsmasq(procs.work / "dns", ["--address=/web.test/192.0.2.10"]) as port:
        yield _tables(
            f'kind = "dns"\nname = "web.test"\nresolver = "127.0.0.1:{port}"\n'
            'expect = ["192.0.2.10"]'
        )


@contextlib.contextmanager
def _grpc(procs: Processes) -> Iterator[Tables]:
    port = free_port()
    server = procs.start([sys.executable, "-c", GRPC_SERVER, str(port)], log_name="grpc.log")
    deadline = time.monotonic() + 30
    while "ready" not in (procs.work / "grpc.log").read_text() and time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit("the gRPC health server exited")
        time.sleep(0.1)
    yield _tables(f'kind = "grpc"\ntarget = "127.0.0.1:{port}"')


@contextlib.contextmanager
def _postgresql(_procs: Processes) -> Iterator[Tables]:
    bindir = postgres_bindir()
    if bindir is None:
        sys.exit("PostgreSQL is not installed: run `make bench`")
    with (
        server_directory("bench-tls") as directory,
        postgres_primary(bindir, write_tls(directory)) as server,
    ):
        yield _tables(f'kind = "database"\nurl = "{server.url()}"')


@contextlib.contextmanager
def _mysql(_procs: Processes) -> Iterator[Tables]:
    binaries = mariadb_binaries()
    if binaries is None:
        sys.exit("MariaDB is not installed: run `make bench`")
    with (
        server_directory("bench-tls") as directory,
        mariadb(binaries, write_tls(directory)) as server,
    ):
        yield _tables(f'kind = "database"\nurl = "{server.url()}"')


@contextlib.contextmanager
def _redis(procs: Processes) -> Iterator[Tables]:
    with redis_server(procs.work / "redis", password=None) as port:
        yield _tables(f'kind = "database"\nurl = "redis://127.0.0.1:{port}/0"')


@contextlib.contextmanager
def _kurrentdb(procs: Processes) -> Iterator[Tables]:
    port = free_port()
    procs.start(
        [sys.executable, "-m", "tests.kurrentdb_standin", str(port)], log_name="standin.log"
    )
    deadline = time.monotonic() + 30
    while not (procs.work / "standin.log").read_text().strip() and time.monotonic() < deadline:
        time.sleep(0.1)
    yield _tables(f'kind = "database"\nurl = "kurrentdb://127.0.0.1:{port}?tls=false"')


KINDS: Final = {
    "http": _http,
    "tcp": _tcp,
    "dns": _dns,
    "grpc": _grpc,
    "postgresql": _postgresql,
    "mysql": _mysql,
    "redis": _redis,
    "kurrentdb": _kurrentdb,
}


def measure(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    """One kind: its server, a daemon with ``args.services`` of it, CPU per completed check."""
    with processes() as procs, KINDS[kind](procs) as tables:
        config, base = daemon_config(
            procs,
            tables(args.services),
            interval_seconds=args.interval,
            timeout_seconds=min(5.0, args.interval),
            jitter_seconds=args.interval / 10,
        )
        daemon = start_daemon(procs, config, base, env={"PYTHONPATH": str(ROOT / "src")})
        wait_for(f"{base}/health/ready", seconds=60, process=daemon)
        time.sleep(args.warmup)  # a measurement window, not a wait for a condition
        before_text, cpu_before = fetch(f"{base}/metrics"), cpu_seconds(daemon.pid)
        started = time.monotonic()
        time.sleep(args.seconds)
        after_text, cpu_after = fetch(f"{base}/metrics"), cpu_seconds(daemon.pid)
        elapsed = time.monotonic() - started
        checks = metric_sum(after_text, "uptime_probes_total") - metric_sum(
            before_text, "uptime_probes_total"
        )
        failed = sum(
            metric_sum(after_text, "uptime_probes_total", result=r)
            - metric_sum(before_text, "uptime_probes_total", result=r)
            for r in ("timeout", "connection_refused", "protocol", "auth", "store_error")
        )
        cpu = cpu_after - cpu_before
        return {
            "kind": kind,
            "services": args.services,
            "interval_seconds": args.interval,
            "checks": int(checks),
            "checks_failed": int(failed),
            "checks_per_second": round(checks / elapsed, 1),
            "cpu_seconds": round(cpu, 2),
            "cpu_ms_per_check": round(cpu / checks * 1000, 3) if checks else None,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=50)
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--only", nargs="*", choices=sorted(KINDS), default=None)
    args = parser.parse_args()
    emit("machine", **machine())
    results = {}
    for kind in args.only or list(KINDS):
        results[kind] = figure = measure(kind, args)
        http = results.get("http", {}).get("cpu_ms_per_check")
        mine = figure["cpu_ms_per_check"]
        figure["ratio_to_http"] = round(mine / http, 2) if http and mine else None
        emit("kind_cpu", **figure)


if __name__ == "__main__":
    main()
