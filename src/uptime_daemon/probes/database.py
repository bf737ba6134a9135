"""The database probe: a server named by URL (its own module each), or this daemon's own store.

Without a URL: a write/read round trip on a temporary system stream of the event store
(``round_trip.py``, shared with the KurrentDB check).

The start-up ``connection_test`` appends to ``connection-test``, reads it back and soft-deletes it.
These fixed names are never tombstoned: a tombstoned name can never be written again, while appending
to a soft-deleted stream revives it, so the test can run on every start.
"""

from __future__ import annotations

from typing import Final

from uptime_daemon.clock import Clock
from uptime_daemon.config.model import DatabaseService
from uptime_daemon.errors import EventStoreError
from uptime_daemon.probes._classify import describe
from uptime_daemon.probes.base import ProbeContext, ProbeFn
from uptime_daemon.probes.round_trip import HEALTH_CHECK_EVENT, keep_temporary, round_trip
from uptime_daemon.results import FailureReason, ProbeResult
from uptime_daemon.store import EventStore, StreamState

CONNECTION_TEST_STREAM: Final = "connection-test"
CONNECTION_TEST_EVENT: Final = "ConnectionTested"


def _store_error(exc: Exception, duration_seconds: float) -> ProbeResult:
    return ProbeResult(
        ok=False,
        duration_seconds=duration_seconds,
        failure=FailureReason.STORE_ERROR,
        detail=describe(exc),  # the class name first; credentials in a store URL are masked
    )


async def probe_database(service: DatabaseService, ctx: ProbeContext) -> ProbeResult:
    """The database the service names: its server by URL, else this daemon's own store."""
    flavour = service.flavour
    if flavour == "own":
        return await probe_own_store(service, ctx)
    return await SERVERS[flavour](service, ctx)


async def probe_own_store(service: DatabaseService, ctx: ProbeContext) -> ProbeResult:
    """Write then read back one ``HealthCheckPerformed`` event on the health-check stream."""
    started = ctx.clock.monotonic()
    try:
        await keep_temporary(ctx.store, service)
        phases = await round_trip(ctx.store, service.stream, HEALTH_CHECK_EVENT, ctx.clock)
    except EventStoreError as exc:
        return _store_error(exc, ctx.clock.monotonic() - started)
    return ProbeResult(
        ok=True,
        duration_seconds=ctx.clock.monotonic() - started,
        detail=f"wrote and read back {service.stream} on {ctx.store.backend}",
        phases=phases,
    )


async def connection_test(store: EventStore, clock: Clock) -> ProbeResult:
    """Validate the store at start-up: append, read back, then soft delete ``connection-test``."""
    started = clock.monotonic()
    try:
        phases = await round_trip(store, CONNECTION_TEST_STREAM, CONNECTION_TEST_EVENT, clock)
        await store.delete_stream(
            CONNECTION_TEST_STREAM, StreamState.ANY
        )  # soft: never a tombstone
    except EventStoreError as exc:
        return _store_error(exc, clock.monotonic() - started)
    return ProbeResult(
        ok=True,
        duration_seconds=clock.monotonic() - started,
        detail=f"wrote, read back and soft-deleted {CONNECTION_TEST_STREAM} on {store.backend}",
        phases=phases,
    )


async def _kurrentdb(service: DatabaseService, ctx: ProbeContext) -> ProbeResult:
    from uptime_daemon.probes.kurrentdb import probe_kurrentdb  # noqa: PLC0415 - see SERVERS

    return await probe_kurrentdb(service, ctx)


async def _postgresql(service: DatabaseService, ctx: ProbeContext) -> ProbeResult:
    from uptime_daemon.probes.sql import probe_postgresql  # noqa: PLC0415 - see SERVERS

    return await probe_postgresql(service, ctx)


async def _mysql(service: DatabaseService, ctx: ProbeContext) -> ProbeResult:
    from uptime_daemon.probes.sql import probe_mysql  # noqa: PLC0415 - see SERVERS

    return await probe_mysql(service, ctx)


async def _redis(service: DatabaseService, ctx: ProbeContext) -> ProbeResult:
    from uptime_daemon.probes.redis import probe_redis  # noqa: PLC0415 - see SERVERS

    return await probe_redis(service, ctx)


SERVERS: Final[dict[str, ProbeFn[DatabaseService]]] = {
    "kurrentdb": _kurrentdb,
    "postgresql": _postgresql,
    "mysql": _mysql,
    "redis": _redis,
}
"""A database URL's server → its probe. Each imports its module on its first check: a driver is
megabytes of modules that a daemon without such a server never needs."""
