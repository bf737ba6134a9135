"""The database probe: a write/read round trip on a temporary system stream of the event store.

The stream (``system-health-check`` by default) carries ``$maxAge``/``$maxCount`` metadata so it
stays temporary; the metadata is (re)applied when it differs, which costs one read per check. The
start-up ``connection_test`` appends to ``connection-test``, reads it back and soft-deletes it. These
fixed names are never tombstoned: a tombstoned name can never be written again.
"""

from __future__ import annotations

import uuid
from typing import Final

import orjson

from uptime_daemon.clock import Clock, to_iso_millis
from uptime_daemon.config.model import DatabaseService, HttpService, WebSocketService
from uptime_daemon.errors import EventStoreError
from uptime_daemon.probes.base import ProbeContext
from uptime_daemon.results import FailureReason, Phase, ProbeResult
from uptime_daemon.store import EventStore, NewEvent, StreamState

HEALTH_CHECK_EVENT: Final = "HealthCheckPerformed"
CONNECTION_TEST_STREAM: Final = "connection-test"
CONNECTION_TEST_EVENT: Final = "ConnectionTested"


async def _round_trip(
    store: EventStore, stream: str, event_type: str, clock: Clock
) -> dict[Phase, float]:
    """Append one event, read the stream's head back, check it is ours; return phase timings."""
    event = NewEvent(
        id=uuid.uuid4(),
        type=event_type,
        data=orjson.dumps({"checkedAt": to_iso_millis(clock.now())}),
    )
    started = clock.monotonic()
    await store.append(stream, [event], StreamState.ANY)
    written = clock.monotonic()
    head = await store.read_stream(stream, backwards=True, limit=1)
    if not head or head[0].id != event.id:
        raise _Mismatch(f"read back {head[0].id if head else 'nothing'}, wrote {event.id}")
    return {Phase.WRITE: written - started, Phase.READ: clock.monotonic() - written}


class _Mismatch(Exception):
    """The store returned something other than what was just written."""


async def probe_database(
    service: HttpService | WebSocketService | DatabaseService, ctx: ProbeContext
) -> ProbeResult:
    """Write then read back one event on the health-check stream."""
    if not isinstance(service, DatabaseService):
        raise TypeError(f"probe_database got a {type(service).__name__}")
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
        return ProbeResult(
            ok=False,
            duration_seconds=ctx.clock.monotonic() - started,
            failure=FailureReason.STORE_ERROR,
            detail=f"{type(exc).__name__}: {exc}"[:200],
        )
    return ProbeResult(
        ok=True,
        duration_seconds=ctx.clock.monotonic() - started,
        detail=f"wrote and read back {service.stream}",
        phases=phases,
    )


async def connection_test(store: EventStore, clock: Clock) -> ProbeResult:
    """Validate the store at start-up: append, read back, then soft delete ``connection-test``."""
    started = clock.monotonic()
    try:
        phases = await _round_trip(store, CONNECTION_TEST_STREAM, CONNECTION_TEST_EVENT, clock)
        await store.delete_stream(CONNECTION_TEST_STREAM)
    except (EventStoreError, _Mismatch) as exc:
        return ProbeResult(
            ok=False,
            duration_seconds=clock.monotonic() - started,
            failure=FailureReason.STORE_ERROR,
            detail=f"{type(exc).__name__}: {exc}"[:200],
        )
    return ProbeResult(
        ok=True,
        duration_seconds=clock.monotonic() - started,
        detail="append, read back and soft delete of connection-test succeeded",
        phases=phases,
    )
