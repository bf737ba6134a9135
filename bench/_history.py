"""Realistic uptime history written with the daemon's own code, shared by ``replay.py`` and ``api.py``.

Every event is built by ``events.status_changed`` from an ``Outcome`` of ``status.step`` and a
``ProbeResult``, exactly as ``CheckRunner`` builds it, so the stored bytes are the daemon's bytes.
Each service is checked every ``interval`` seconds, at its own phase within the interval, ending at
``end`` (normally now). Per service: an HTTP or HTTPS target with its own typical latency and a
log-normal spread, occasional slow stretches (``degraded``), rare one-probe blips (not an outage,
``failures_before_down`` is 2) and outages of a few checks to a couple of hours, failing by timeout,
refusal or a 503. Seeded, so two runs write the same log.

Appends go through the store's public ``append``; ``batch`` checks of one stream per append, in time
order across services (``batch=1`` is the daemon's own pattern: one event per append, interleaved).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import shutil
import time
from collections.abc import Coroutine, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from _common import Processes, processes

from uptime_daemon import events
from uptime_daemon.config.model import CheckPolicy
from uptime_daemon.results import CheckKind, FailureReason, Phase, ProbeResult
from uptime_daemon.status import ServiceState, Status, step
from uptime_daemon.store import EventStore, NewEvent, StreamState
from uptime_daemon.store.sqlite import SqliteEventStore

SERVICE_PREFIX: Final = "service-"
"""Service ``i`` is ``service-{i}``: the names ``_common.http_services(n, base, SERVICE_PREFIX)`` writes."""
LOCATION: Final = "default"
DEGRADED_AFTER_SECONDS: Final = 0.5
P_OUTAGE: Final = 1 / 2500
"""Chance per check that an outage starts (about one outage per service per 21 h at 30 s)."""
P_SLOW: Final = 1 / 1200
P_BLIP: Final = 1 / 800
P_TAIL: Final = 0.01
MAX_EVENTS_IN_FLIGHT: Final = 50_000


def service_names(count: int) -> list[str]:
    """The configured names of ``count`` services."""
    return [f"{SERVICE_PREFIX}{i}" for i in range(count)]


@dataclass(slots=True)
class _Target:
    """What stays the same for one service: its protocol, host and latency profile."""

    https: bool
    host: str
    address: str
    base_seconds: float
    offset_seconds: float
    cert_days: float
    state: ServiceState = field(default_factory=ServiceState.initial)
    outage_left: int = 0
    outage_mode: FailureReason = FailureReason.TIMEOUT
    slow_left: int = 0
    slow_factor: float = 1.0


@dataclass(slots=True)
class Counts:
    """What was generated, to compare with what the projection reports."""

    checks: int = 0
    failed_probes: int = 0
    down_checks: int = 0
    degraded_checks: int = 0
    incidents: int = 0
    transitions: int = 0
    payload_bytes: int = 0


class History:
    """``checks_per_service`` checks for each of ``services``, ending at ``end``; write it in steps."""

    def __init__(
        self,
        services: int,
        checks_per_service: int,
        *,
        interval_seconds: float,
        timeout_seconds: float,
        end: datetime | None = None,
        seed: int = 20240115,
    ) -> None:
        self.names = service_names(services)
        self.checks_per_service = checks_per_service
        self.interval = interval_seconds
        self.timeout = timeout_seconds
        self.policy = CheckPolicy(
            interval_seconds=interval_seconds,
            timeout_seconds=timeout_seconds,
            degraded_after_seconds=DEGRADED_AFTER_SECONDS,
        )
        end = end or datetime.now(UTC)
        # The last check of every service (at most one interval after its phase) is before ``end``.
        self.first = end - timedelta(seconds=checks_per_service * interval_seconds)
        self.created = False
        """Whether ``create_streams`` has run."""
        self.done = 0
        """Checks per service written so far."""
        self.counts = Counts()
        self._rng = random.Random(seed)  # noqa: S311 - simulation, not cryptography
        self._targets = [self._target(i) for i in range(services)]
        self._now = self.first

    def clock(self) -> datetime:
        """The simulated wall clock for the store's ``recorded_at``: the latest completion so far."""
        return self._now

    def _target(self, index: int) -> _Target:
        rng = self._rng
        https = rng.random() < 0.7
        return _Target(
            https=https,
            host=f"{SERVICE_PREFIX}{index}.internal.example.com",
            address=f"10.{index // 250 % 250}.{index % 250}.{rng.randint(2, 250)}",
            base_seconds=min(1.5, max(0.003, rng.lognormvariate(math.log(0.06), 0.8))),
            offset_seconds=rng.uniform(0, self.interval * 0.98),
            cert_days=rng.uniform(20, 89),
        )

    # --- one check -------------------------------------------------------------------------------

    def _phases(self, target: _Target, total: float, *, body: bool = True) -> dict[Phase, float]:
        rng = self._rng
        rtt = min(total / 6, target.base_seconds / 8 * rng.uniform(0.6, 1.4))
        phases = {Phase.DNS: rng.uniform(0.0004, 0.004), Phase.CONNECT: rtt}
        if target.https:
            phases[Phase.TLS] = 2 * rtt * rng.uniform(0.9, 1.3)
        rest = max(0.0, total - sum(phases.values()))
        phases[Phase.FIRST_BYTE] = rest * (0.9 if body else 1.0)
        if body:
            phases[Phase.BODY] = rest * 0.1
        return phases

    def _failure(self, target: _Target, mode: FailureReason, days_left: float) -> ProbeResult:
        rng = self._rng
        port = 443 if target.https else 80
        if mode is FailureReason.TIMEOUT:
            return ProbeResult(
                ok=False,
                duration_seconds=self.timeout + rng.uniform(0.0002, 0.02),
                failure=mode,
                detail=f"no answer within {self.timeout:g} s",
            )
        if mode is FailureReason.CONNECTION_REFUSED:
            ssl = "default" if target.https else "None"
            return ProbeResult(
                ok=False,
                duration_seconds=rng.uniform(0.001, 0.012),
                failure=mode,
                detail=f"ClientConnectorError: Cannot connect to host {target.host}:{port} "
                f"ssl:{ssl} [Connect call failed ('{target.address}', {port})]",
                phases={Phase.DNS: rng.uniform(0.0004, 0.004)},
            )
        if mode is FailureReason.HTTP_STATUS:
            total = target.base_seconds * rng.lognormvariate(0, 0.3) / 3
            code = rng.choice((502, 503, 503, 504))
            reason = {502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}[code]
            return ProbeResult(
                ok=False,
                duration_seconds=total,
                failure=mode,
                detail=f"{code} {reason}, expected 200-299",
                phases=self._phases(target, total, body=False),
                http_status=code,
                tls_days_left=days_left if target.https else None,
            )
        total = target.base_seconds * rng.lognormvariate(0, 0.3)
        return ProbeResult(
            ok=False,
            duration_seconds=total,
            failure=FailureReason.CONNECTION_ERROR,
            detail="ServerDisconnectedError: Server disconnected",
            phases=self._phases(target, total, body=False),
            tls_days_left=days_left if target.https else None,
        )

    def _probe(self, target: _Target, days_left: float) -> ProbeResult:
        rng = self._rng
        if target.outage_left == 0 and rng.random() < P_OUTAGE:
            target.outage_left = min(240, 2 + int(rng.expovariate(1 / 10)))
            target.outage_mode = rng.choice(
                (FailureReason.TIMEOUT, FailureReason.CONNECTION_REFUSED, FailureReason.HTTP_STATUS)
            )
        if target.slow_left == 0 and rng.random() < P_SLOW:
            target.slow_left = rng.randint(3, 40)
            target.slow_factor = rng.uniform(4, 20)
        if target.outage_left > 0:
            target.outage_left -= 1
            return self._failure(target, target.outage_mode, days_left)
        if rng.random() < P_BLIP:
            blip = rng.choice((FailureReason.TIMEOUT, FailureReason.CONNECTION_ERROR))
            return self._failure(target, blip, days_left)
        total = target.base_seconds * rng.lognormvariate(0, 0.35)
        if target.slow_left > 0:
            target.slow_left -= 1
            total *= target.slow_factor
        if rng.random() < P_TAIL:
            total *= rng.uniform(2, 6)
        total = min(total, self.timeout * 0.95)
        return ProbeResult(
            ok=True,
            duration_seconds=total,
            detail="200 OK",
            phases=self._phases(target, total),
            http_status=200,
            tls_days_left=days_left if target.https else None,
        )

    def _check(self, index: int, k: int) -> NewEvent:
        target = self._targets[index]
        scheduled = self.first + timedelta(
            seconds=k * self.interval + target.offset_seconds + self._rng.uniform(0, 0.05)
        )
        elapsed_days = (scheduled - self.first).total_seconds() / 86_400
        probe = self._probe(target, max(0.0, target.cert_days - elapsed_days))
        completed = scheduled + timedelta(seconds=probe.duration_seconds)
        outcome = step(
            target.state,
            ok=probe.ok,
            response_seconds=probe.duration_seconds,
            at=completed,
            policy=self.policy,
        )
        target.state = outcome.state
        counts = self.counts
        counts.checks += 1
        counts.failed_probes += not probe.ok
        counts.down_checks += outcome.status is Status.DOWN
        counts.degraded_checks += outcome.status is Status.DEGRADED
        if outcome.changed:
            counts.transitions += 1
            counts.incidents += outcome.status is Status.DOWN
        self._now = max(self._now, completed)
        event = events.status_changed(
            service=self.names[index],
            instance="bench",
            location=LOCATION,
            kind=CheckKind.HTTP,
            scheduled_at=scheduled,
            completed_at=completed,
            outcome=outcome,
            probe=probe,
            interval_seconds=self.interval,
            timeout_seconds=self.timeout,
        )
        counts.payload_bytes += len(event.data)
        return event

    # --- writing -----------------------------------------------------------------------------------

    async def create_streams(self, store: EventStore) -> None:
        """Each service's ``StreamCreated`` (expected "no stream"), as ``CheckRunner.prepare`` does."""
        created = self.first - timedelta(seconds=1)
        await _bounded(
            store.append(
                events.stream_name(name),
                [events.stream_created(name, created)],
                StreamState.NO_STREAM,
            )
            for name in self.names
        )
        self.created = True

    async def extend(self, store: EventStore, upto: int, *, batch: int = 500) -> int:
        """Write checks ``done .. upto`` of every service; return the number of events written."""
        upto = min(upto, self.checks_per_service)
        written = 0
        limit = max(1, MAX_EVENTS_IN_FLIGHT // batch)

        def appends() -> Iterator[Coroutine[Any, Any, int]]:
            nonlocal written
            for start in range(self.done, upto, batch):
                stop = min(upto, start + batch)
                for index, name in enumerate(self.names):
                    chunk = [self._check(index, k) for k in range(start, stop)]
                    written += len(chunk)
                    yield store.append(events.stream_name(name), chunk)

        await _bounded(appends(), limit=limit)
        self.done = upto
        return written


async def write_history(history: History, db: Path, upto: int, *, batch: int) -> dict[str, Any]:
    """Extend the SQLite log at ``db`` to ``upto`` checks per service; the figures of this step."""
    started = time.perf_counter()
    store = await SqliteEventStore.open(db, clock_now=history.clock, digest=events.check_digest)
    try:
        if not history.created:
            await history.create_streams(store)
        written = await history.extend(store, upto, batch=batch)
    finally:
        await store.close()
    seconds = time.perf_counter() - started
    return {
        "events": written,
        "seconds": round(seconds, 2),
        "events_per_second": round(written / seconds),
        "batch_per_append": batch,
    }


WRAPPER: Final = """
import json, os, subprocess, sys, time
started = time.perf_counter()
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
with open(sys.argv[1], "w") as out:
    json.dump({
        "exit": os.waitstatus_to_exitcode(status),
        "wall": time.perf_counter() - started,
        "cpu": usage.ru_utime + usage.ru_stime,
        "maxrss_kib": usage.ru_maxrss,
    }, out)
"""
"""A small ``python`` parent for each replay: ``wait4`` gives that one child's peak RSS.

Linux carries the parent's high-water mark across fork/vfork + exec into the child's ``ru_maxrss``,
so measuring from this (large) bench process would report our own peak; the wrapper's is ~10 MiB.
"""


async def _bounded(appends: Iterable[Coroutine[Any, Any, int]], *, limit: int = 512) -> None:
    """Run append coroutines with at most ``limit`` in flight (so group commit has work to batch)."""
    pending: set[asyncio.Task[int]] = set()
    for coro in appends:
        pending.add(asyncio.ensure_future(coro))
        if len(pending) >= limit:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            _raise_first(done)
    if pending:
        done, _ = await asyncio.wait(pending)
        _raise_first(done)


def _raise_first(done: set[asyncio.Task[int]]) -> None:
    for task in done:
        task.result()


@contextlib.contextmanager
def workspace(*, keep: bool = False) -> Iterator[Processes]:
    """``processes()`` whose work directory (a store of hundreds of MB) is removed after the stop."""
    with processes() as procs:
        try:
            yield procs
        finally:
            procs.stop_all()
            if not keep:
                shutil.rmtree(procs.work, ignore_errors=True)
