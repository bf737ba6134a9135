"""The database probe: a write/read round trip on a temporary system stream of the event store.

The stream (``system-health-check`` by default) carries ``$maxAge``/``$maxCount`` metadata so it
stays temporary. The probe keeps no state between checks: it reads the metadata on every check and
writes it only when it differs from the service's settings (first check, or after a config change),
so a store that lost it, or another daemon that set other values, is corrected on the next check.

The start-up ``connection_test`` appends to ``connection-test``, reads it back and soft-deletes it.
These fixed names are never tombstoned: a tombstoned name can never be written again, while appending
to a soft-deleted stream revives it, so the test can run on every start.
"""

from __future__ import annotations

import uuid
from typing import Final

import orjson

from uptime_daemon.clock import Clock, to_iso_millis
from uptime_daemon.config.model import DatabaseService
from uptime_daemon.errors import EventStoreError
from uptime_daemon.probes._classify import describe
from uptime_daemon.probes.base import ProbeContext
from uptime_daemon.results import FailureReason, Phase, ProbeResult
from uptime_daemon.store import EventStore, NewEvent, StreamState

HEALTH_CHECK_EVENT: Final = "HealthCheckPerformed"
CONNECTION_TEST_STREAM: Final = "connection-test"
CONNECTION_TEST_EVENT: Final = "ConnectionTested"
READ_BACK_WINDOW: Final = 16
"""When the stream's last event is not ours (other daemons share the stream), look this far back."""


class _Mismatch(Exception):
    """The store did not return what was just written."""


async def _round_trip(
    store: EventStore, stream: str, event_type: str, clock: Clock
) -> dict[Phase, float]:
    """Append one event, read it back from the stream's end; return the write and read times."""
    event = NewEvent(
        id=uuid.uuid4(),
        type=event_type,
        data=orjson.dumps({"timestamp": to_iso_millis(clock.now())}),
    )
    started = clock.monotonic()
    await store.append(stream, [event], StreamState.ANY)
    written = clock.monotonic()
    recent = await store.read_stream(stream, backwards=True, limit=1)
    if not recent or recent[0].id != event.id:
        recent = await store.read_stream(stream, backwards=True, limit=READ_BACK_WINDOW)
        if all(recorded.id != event.id for recorded in recent):
            raise _Mismatch(f"event {event.id} written to {stream} but not read back")
    return {Phase.WRITE: written - started, Phase.READ: clock.monotonic() - written}


def _store_error(exc: Exception, duration_seconds: float) -> ProbeResult:
    return ProbeResult(
        ok=False,
        duration_seconds=duration_seconds,
        failure=FailureReason.STORE_ERROR,
        detail=describe(exc),  # the class name first; credentials in a store URL are masked
    )


async def probe_database(service: DatabaseService, ctx: ProbeContext) -> ProbeResult:
    """Write then read back one ``HealthCheckPerformed`` event on the health-check stream."""
    started = ctx.clock.monotonic()
    try:
        metadata = await ctx.store.get_stream_metadata(service.stream)
        if (metadata.max_age_seconds, metadata.max_count) != (
            service.max_age_seconds,
            service.max_count,
        ):
            await ctx.store.set_stream_metadata(
                service.stream, max_age_seconds=service.max_age_seconds, max_count=service.max_count
            )
        phases = await _round_trip(ctx.store, service.stream, HEALTH_CHECK_EVENT, ctx.clock)
    except (EventStoreError, _Mismatch) as exc:
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
        phases = await _round_trip(store, CONNECTION_TEST_STREAM, CONNECTION_TEST_EVENT, clock)
        await store.delete_stream(
            CONNECTION_TEST_STREAM, StreamState.ANY
        )  # soft: never a tombstone
    except (EventStoreError, _Mismatch) as exc:
        return _store_error(exc, clock.monotonic() - started)
    return ProbeResult(
        ok=True,
        duration_seconds=clock.monotonic() - started,
        detail=f"wrote, read back and soft-deleted {CONNECTION_TEST_STREAM} on {store.backend}",
        phases=phases,
    )
