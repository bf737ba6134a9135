"""Real servers for the socket probes' tests: redis-server, dnsmasq, the evil targets; and the caller.

Each server runs in its own process on a free loopback port, in a temporary directory, and is
ready (its port answers) when its context manager yields. ``with_deadline`` applies the per-probe
deadline exactly as ``runner.probe_with_deadline`` does, so a hanging probe is cut off the same way.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import dns.exception
import dns.message
import dns.query
import pytest
import trustme

from tests.conftest import ROOT, free_port
from tests.polling import until, wait_until
from uptime_daemon.config.model import CheckPolicy
from uptime_daemon.probes.base import ProbeContext, ProbeFn
from uptime_daemon.results import ProbeResult

ServiceT = TypeVar("ServiceT", bound=CheckPolicy)

REDIS_PASSWORD = "s3cret-Pa55"  # noqa: S105 - a throwaway test server's
START_SECONDS = 10.0
STOP_SECONDS = 10.0


async def with_deadline(
    probe: ProbeFn[ServiceT], service: ServiceT, ctx: ProbeContext
) -> tuple[ProbeResult | None, float]:
    """The probe under ``asyncio.timeout(service.timeout_seconds)``, as the runner runs it.

    Returns the result (``None`` when the deadline cut the probe off) and the elapsed seconds.
    """
    started = time.monotonic()
    try:
        async with asyncio.timeout(service.timeout_seconds):
            result = await probe(service, ctx)
    except TimeoutError:
        return None, time.monotonic() - started
    return result, time.monotonic() - started


def open_fds() -> int:
    """This process's open file descriptors."""
    return sum(1 for _ in Path("/proc/self/fd").iterdir())


async def assert_nothing_leaks(
    probe: ProbeFn[ServiceT], service: ServiceT, ctx: ProbeContext, *, rounds: int = 10
) -> list[ProbeResult | None]:
    """Run ``rounds`` probes at once under their deadlines, and check that nothing is left behind.

    Each probe ends within its deadline (+1 s); afterwards the open fds (±2) and tasks are back
    where they were.
    """
    fds, tasks = open_fds(), len(asyncio.all_tasks())
    outcomes = await asyncio.gather(*(with_deadline(probe, service, ctx) for _ in range(rounds)))
    for _, elapsed in outcomes:
        assert elapsed < service.timeout_seconds + 1.0
    # Sockets are freed by the loop's next callbacks after an abort: wait for them, not for time.
    await until(lambda: open_fds() <= fds + 2, within=5, what=f"open fds back to {fds} (±2)")
    assert abs(open_fds() - fds) <= 2
    assert len(asyncio.all_tasks()) == tasks
    return [result for result, _ in outcomes]


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_SECONDS)


def _started(command: list[str], log: Path, ready: Callable[[], bool]) -> subprocess.Popen[bytes]:
    """Start ``command`` (output to ``log``) and wait until ``ready()``; fail with its log if not."""
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until(
            lambda: ready() or proc.poll() is not None, within=START_SECONDS, what=command[0]
        )
    except AssertionError:
        _stop(proc)
        raise
    if proc.poll() is not None:
        pytest.fail(f"{command[0]} exited with {proc.returncode}:\n{log.read_text()}")
    return proc


@dataclass(frozen=True)
class Tls:
    """A certificate for ``localhost`` and ``127.0.0.1`` from a throwaway CA, as files."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def write_tls(directory: Path, leaf: trustme.LeafCert, ca: trustme.CA) -> Tls:
    """Write ``leaf`` and ``ca`` to PEM files in ``directory``."""
    tls = Tls(directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    ca.cert_pem.write_to_path(str(tls.ca_file))
    leaf.cert_chain_pems[0].write_to_path(str(tls.cert_file))
    leaf.private_key_pem.write_to_path(str(tls.key_file))
    return tls


def redis_command(
    port: int,
    directory: Path,
    *,
    password: str | None = REDIS_PASSWORD,
    replica_of: int | None = None,
    tls: Tls | None = None,
) -> list[str]:
    """The ``redis-server`` command line (in the foreground, nothing persisted)."""
    command = ["redis-server", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    command += ["--dir", str(directory), "--daemonize", "no"]
    if tls is None:
        command += ["--port", str(port)]
    else:
        command += ["--port", "0", "--tls-port", str(port), "--tls-auth-clients", "no"]
        command += ["--tls-cert-file", str(tls.cert_file), "--tls-key-file", str(tls.key_file)]
        command += ["--tls-ca-cert-file", str(tls.ca_file)]
    if password is not None:
        command += ["--requirepass", password]
    if replica_of is not None:
        command += ["--replicaof", "127.0.0.1", str(replica_of), "--masterauth", REDIS_PASSWORD]
    return command


@contextmanager
def redis_server(directory: Path, **options: Any) -> Iterator[int]:
    """A ``redis-server`` on a free port in ``directory``; yields the port."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = _started(
        redis_command(port, directory, **options), directory / "redis.log", lambda: _port_open(port)
    )
    try:
        yield port
    finally:
        _stop(proc)


def dnsmasq_command(port: int, directory: Path, records: list[str]) -> list[str]:
    """``dnsmasq`` answering only from ``records``.

    A name under ``.test`` it has no record of is NXDOMAIN (``--local``); any other name is REFUSED
    (no upstream servers).
    """
    return [
        "dnsmasq",
        "--no-daemon",
        "--conf-file=/dev/null",  # not the system's /etc/dnsmasq.conf
        "--no-resolv",
        "--no-hosts",
        f"--port={port}",
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        "--user=root",  # CI runs as root; no drop to a user that may not exist
        f"--pid-file={directory / 'dnsmasq.pid'}",
        "--local=/test/",
        *records,
    ]


def _dns_answers(port: int) -> bool:
    query = dns.message.make_query("ready.invalid.", "A")
    try:
        dns.query.udp(query, "127.0.0.1", port=port, timeout=0.2)
    except (OSError, dns.exception.Timeout):
        return False
    return True


@contextmanager
def dnsmasq(directory: Path, records: list[str]) -> Iterator[int]:
    """A ``dnsmasq`` on a free port (UDP and TCP); yields the port once it answers a query."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = dnsmasq_command(port, directory, records)
    proc = _started(command, directory / "dnsmasq.log", lambda: _dns_answers(port))
    try:
        yield port
    finally:
        _stop(proc)


@dataclass(frozen=True)
class EvilPorts:
    """``tests/evil_targets.py``: ``hang`` accepts and never answers, ``garbage`` answers junk."""

    hang: int
    trickle: int
    huge: int
    garbage: int
    ws: int


@contextmanager
def evil_targets() -> Iterator[EvilPorts]:
    """The fault suite's misbehaving targets, in their own process."""
    ports = [free_port() for _ in range(5)]
    while len(set(ports)) < len(ports):  # free_port may hand out a port twice
        ports = [free_port() for _ in range(5)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.evil_targets", *map(str, ports)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == b"ready"
        yield EvilPorts(*ports)
    finally:
        proc.kill()
        proc.wait(timeout=STOP_SECONDS)
        proc.stdout.close()


def resolve_locally(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make the running loop's ``getaddrinfo`` answer as ``fakes.LoopbackResolver`` does.

    ``localhost`` is 127.0.0.1, ``*.invalid`` does not exist, IP literals pass through, and any
    other name fails the test: a probe test never asks the sandbox's remote resolver. Returns the
    list of names asked, for assertions.
    """
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo
    asked: list[str] = []

    async def getaddrinfo(host: str, port: Any, **kwargs: Any) -> Any:
        asked.append(host)
        if host == "localhost":
            kwargs["family"] = socket.AF_INET
            return await real("127.0.0.1", port, **kwargs)
        if host.endswith(".invalid"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        ipaddress.ip_address(host)  # raises for a name that would leave the machine
        return await real(host, port, **kwargs)

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    return asked
