"""The write/read round trip on a temporary stream: the own-store check and the KurrentDB check.

The stream (``system-health-check`` by default) carries ``$maxAge``/``$maxCount`` metadata so it
stays temporary. No state is kept between checks: the metadata is read on every check and written
only when it differs from the service's settings (first check, or after a config change), so a
store that lost it, or another daemon that set other values, is corrected on the next check.
"""

from __future__ import annotations

import uuid
from typing import Final

import orjson

from uptime_daemon.clock import Clock, to_iso_millis
from uptime_daemon.config.model import DatabaseService
from uptime_daemon.errors import EventStoreError
from uptime_daemon.results import Phase
from uptime_daemon.store import EventStore, NewEvent, StreamState

HEALTH_CHECK_EVENT: Final = "HealthCheckPerformed"
READ_BACK_WINDOW: Final = 16
"""When the stream's last event is not ours (other daemons share the stream), look this far back."""


class NotReadBack(EventStoreError):
    """The store did not return what was just written."""


async def keep_temporary(store: EventStore, service: DatabaseService) -> None:
    """Set the health-check stream's retention when it differs from the service's."""
    metadata = await store.get_stream_metadata(service.stream)
    if (metadata.max_age_seconds, metadata.max_count) != (
        service.max_age_seconds,
        service.max_count,
    ):
        await store.set_stream_metadata(
            service.stream, max_age_seconds=service.max_age_seconds, max_count=service.max_count
        )


async def round_trip(
    store: EventStore, stream: str, event_type: str, clock: Clock
) -> dict[Phase, float]:
    """Append one event, read it back from the stream's end; the write and read times.

    Raises the store's errors, or ``NotReadBack``.
    """
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
            raise NotReadBack(f"event {event.id} written to {stream} but not read back")
    return {Phase.WRITE: written - started, Phase.READ: clock.monotonic() - written}
