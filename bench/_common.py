"""What every bench script shares: loopback ports, processes to start and measure, one JSON line a figure.

Benchmarks print figures; they never assert. Every process they start listens on 127.0.0.1 only and
is stopped when the script ends (``Processes``), and every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")
LOOPBACK: Final = "127.0.0.1"


def emit(figure: str, **fields: object) -> None:
    """Print one figure as one JSON line (the format docs/performance.md quotes)."""
    print(json.dumps({"figure": figure, **fields}), flush=True)


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def wait_for(
    url: str, seconds: float = 60, *, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Poll ``url`` until it answers (any status below 500), the deadline passes or ``process`` exits."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            sys.exit(f"{url}: the process serving it exited with status {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2).read()  # noqa: S310 - loopback URL we built
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return
        except OSError:
            pass
        else:
            return
        time.sleep(0.1)
    sys.exit(f"{url} did not come up within {seconds:g} s")


def fetch(url: str, timeout: float = 30) -> str:
    """GET ``url`` and return the body as text."""
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback URL
        return str(response.read().decode())


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads) so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mib(pid: int, *, peak: bool = False) -> float:
    """Resident memory (or its high-water mark) of a process, MiB."""
    key = "VmHWM" if peak else "VmRSS"
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"{key}:\s+(\d+)", status)
    return round(int(match.group(1)) / 1024, 1) if match else float("nan")


def metric_sum(text: str, name: str, **labels: str) -> float:
    """Sum of every sample of ``name`` in Prometheus text whose labels include ``labels``."""
    total = 0.0
    for match in re.finditer(rf"^{name}(\{{[^}}]*\}})? ([0-9.e+-]+|NaN)$", text, re.MULTILINE):
        found = match.group(1) or ""
        if all(f'{key}="{value}"' in found for key, value in labels.items()):
            total += float(match.group(2))
    return total


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of ``values`` (``fraction`` in [0, 1])."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


def require(*commands: str) -> dict[str, str]:
    """Absolute paths of the commands, or exit naming the missing ones and the Debian package list."""
    paths = {command: shutil.which(command) for command in commands}
    missing = [command for command, path in paths.items() if path is None]
    if missing:
        sys.exit(
            f"missing {', '.join(missing)}: run `make bench` (it installs scripts/bench-packages.txt)"
        )
    return {command: path for command, path in paths.items() if path is not None}


@dataclass
class Processes:
    """Processes a bench started; all are stopped (TERM, then KILL) when the block ends."""

    work: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="uptime-bench-")))
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(
        self, args: Sequence[str], *, log_name: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``args`` with output to ``work/log_name``."""
        log = (self.work / log_name).open("wb")
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        """Stop in reverse order of start."""
        for process in reversed(self.started):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)
        self.started.clear()


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def processes() -> Iterator[Processes]:
    """A ``Processes`` that is always cleaned up, also when the bench is stopped with SIGTERM."""
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    procs = Processes()
    try:
        yield procs
    finally:
        procs.stop_all()
        signal.signal(signal.SIGTERM, previous)


NGINX_CONF: Final = """
worker_processes {workers};
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {work}/nginx-body;
    proxy_temp_path {work}/nginx-proxy;
    fastcgi_temp_path {work}/nginx-fastcgi;
    uwsgi_temp_path {work}/nginx-uwsgi;
    scgi_temp_path {work}/nginx-scgi;
    keepalive_requests 100000;
    server {{
        listen {host}:{port};
        location / {{ default_type text/plain; return 200 "ok\\n"; }}
    }}
}}
"""


def start_nginx(procs: Processes, *, workers: int = 1) -> str:
    """A loopback nginx answering 200 ``ok`` on every path; returns its base URL."""
    nginx = require("nginx")["nginx"]
    port = free_port()
    conf = procs.work / "nginx.conf"
    conf.write_text(NGINX_CONF.format(workers=workers, work=procs.work, host=LOOPBACK, port=port))
    procs.start(
        [nginx, "-p", str(procs.work), "-c", str(conf), "-g", "daemon off;"], log_name="nginx.log"
    )
    base = f"http://{LOOPBACK}:{port}"
    wait_for(f"{base}/")
    return base


def daemon_config(
    procs: Processes,
    services_toml: str,
    *,
    interval_seconds: float,
    timeout_seconds: float = 5,
    jitter_seconds: float = 0,
    max_concurrency: int = 256,
    store_url: str | None = None,
    per_host_concurrency: int | None = None,
) -> tuple[Path, str]:
    """Write a daemon config for the given ``[services.*]`` tables; returns (path, base URL).

    The timeout is capped at the interval (the daemon refuses a timeout longer than the interval).
    """
    timeout_seconds = min(timeout_seconds, interval_seconds)
    port = free_port()
    url = store_url or f"sqlite:///{procs.work}/events.db"
    config = procs.work / "daemon.toml"
    config.write_text(
        'environment = "test"\n'
        f'[server]\nhost = "{LOOPBACK}"\nport = {port}\n'
        f'[store]\nurl = "{url}"\nspool_path = "{procs.work}/spool.db"\n'
        f'[projector]\nsnapshot_path = "{procs.work}/snapshot.json"\n'
        '[log]\nlevel = "warning"\nformat = "json"\n'
        f"[scheduler]\njitter_seconds = {jitter_seconds}\nmax_concurrency = {max_concurrency}\n"
        + (
            f"per_host_concurrency = {per_host_concurrency}\n"
            if per_host_concurrency is not None
            else ""
        )
        + f"[defaults]\ninterval_seconds = {interval_seconds}\ntimeout_seconds = {timeout_seconds}\n"
        + services_toml
    )
    return config, f"http://{LOOPBACK}:{port}"


def http_services(count: int, target_base: str, prefix: str = "s") -> str:
    """``count`` HTTP service tables, each on its own path of the target."""
    return "".join(
        f'[services.{prefix}{i}]\nkind = "http"\nurl = "{target_base}/{prefix}{i}"\n'
        for i in range(count)
    )


def start_daemon(
    procs: Processes, config: Path, base: str, *, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """``python -m uptime_daemon --config CONFIG run``, waited for until ``/health`` answers."""
    daemon = procs.start(
        [sys.executable, "-m", "uptime_daemon", "--config", str(config), "run"],
        log_name="daemon.log",
        env={**os.environ, **(env or {})},
    )
    try:
        wait_for(f"{base}/health", seconds=120, process=daemon)
    except SystemExit:
        log = (procs.work / "daemon.log").read_text(errors="replace").strip().splitlines()
        sys.exit(f"the daemon did not start: {log[-1][:2000] if log else 'no output'}")
    return daemon


def wrk(url: str, *, threads: int = 1, connections: int = 16, seconds: int = 10) -> dict[str, Any]:
    """Run wrk against ``url``; requests/s and latency percentiles in ms."""
    command = require("wrk")["wrk"]
    out = subprocess.run(
        [command, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def ms(label: str) -> float | None:
        match = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        if match is None:
            return None
        return round(
            float(match.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)], 3
        )

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "requests_per_second": float(rps.group(1)) if rps else None,
        "requests": int(total.group(1)) if total else None,
        "non_2xx": int(errors.group(1)) if errors else 0,
        "p50_ms": ms("50%"),
        "p90_ms": ms("90%"),
        "p99_ms": ms("99%"),
    }


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = re.search(r"model name\s+:\s+(.*)", Path("/proc/cpuinfo").read_text())
    return {
        "cores": os.cpu_count(),
        "cpu": model.group(1) if model else None,
        "python": sys.version.split()[0],
    }


def stored_payloads(
    db: Path, types: Sequence[str] | None = None
) -> Iterator[tuple[str, bytes, bytes]]:
    """``(type, data, metadata)`` of every event in the SQLite file, in commit order, page by page.

    Read through the store, never its tables: names are interned and payloads compressed there.
    """
    import asyncio  # noqa: PLC0415 - only the benches that read a store need it

    from uptime_daemon.store.sqlite import SqliteEventStore  # noqa: PLC0415

    loop = asyncio.new_event_loop()  # one store opened once, read a page at a time
    store = loop.run_until_complete(SqliteEventStore.open(db))
    try:
        after: int | None = None
        while True:
            page = loop.run_until_complete(store.read_all(after=after, limit=PAYLOAD_PAGE))
            for event in page:
                if types is None or event.type in types:
                    yield event.type, event.data, event.metadata
            if len(page) < PAYLOAD_PAGE:
                return
            after = page[-1].position
    finally:
        loop.run_until_complete(store.close())
        loop.close()


PAYLOAD_PAGE: Final = 20_000


@dataclass(frozen=True)
class FilePages:
    """An SQLite file's pages after a TRUNCATE checkpoint, and the bytes each b-tree holds."""

    page_size: int
    pages: int
    free_pages: int
    btrees: dict[str, int]
    """b-tree (table or index) → bytes; empty when SQLite was built without ``dbstat``."""

    @property
    def used_bytes(self) -> int:
        """Bytes of the pages in use (free pages, left by deletes, are reused, not counted)."""
        return (self.pages - self.free_pages) * self.page_size


def file_pages(db: Path) -> FilePages:
    """Checkpoint the WAL into ``db`` and measure its pages (the store must be closed)."""
    import sqlite3  # noqa: PLC0415 - only the storage benches need it

    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        page_size, pages, free = (
            int(conn.execute(f"PRAGMA {name}").fetchone()[0])
            for name in ("page_size", "page_count", "freelist_count")
        )
        try:
            rows = conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall()
        except sqlite3.OperationalError:
            rows = []  # SQLite built without the dbstat table
    return FilePages(page_size, pages, free, {str(name): int(total) for name, total in rows})
