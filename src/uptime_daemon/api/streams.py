"""``/streams``: read-only browsing of ``service-uptime-*`` and ``system-*`` streams."""

from __future__ import annotations

import re
from typing import Final

from aiohttp import web

from uptime_daemon import events
from uptime_daemon.api import models, views
from uptime_daemon.api.endpoint import Api, not_found
from uptime_daemon.api.keys import PROJECTOR, SETTINGS, STORE
from uptime_daemon.config.model import DatabaseService
from uptime_daemon.errors import StreamNotFound
from uptime_daemon.store import SYSTEM_STREAM_PREFIX, UPTIME_STREAM_PREFIX
from uptime_daemon.store import RecordedEvent as StoredEvent

api = Api()

BROWSABLE: Final = re.compile(
    rf"^(?:{UPTIME_STREAM_PREFIX}|{SYSTEM_STREAM_PREFIX})[a-z0-9-]{{1,100}}$"
)


def _event(event: StoredEvent) -> models.RecordedEvent:
    return models.RecordedEvent(
        event_id=str(event.id),
        event_type=event.type,
        stream_name=event.stream,
        revision=event.revision,
        position=event.position,
        recorded_at=event.recorded_at,
        data=events.json_or_text(event.data),
        metadata=events.json_or_text(event.metadata),
    )


@api.route(
    "GET", "/streams", response=models.StreamList, tag="streams", summary="Browsable streams"
)
async def list_streams(request: web.Request, _query: None) -> models.StreamList:
    """Every service's uptime stream and the system streams that exist, with their heads."""
    settings, store = request.app[SETTINGS].current, request.app[STORE]
    names = [
        f"{UPTIME_STREAM_PREFIX}{name}"
        for name in views.service_names(settings, request.app[PROJECTOR].state)
    ]
    system = {"system-health-check"} | {
        s.stream for s in settings.services.values() if isinstance(s, DatabaseService)
    }
    names += sorted(system)
    found = []
    for name in names:
        try:
            head = await store.read_stream(name, backwards=True, limit=1)
        except StreamNotFound:
            continue
        found.append(
            models.StreamInfo(
                name=name,
                last_revision=head[0].revision if head else None,
                last_position=head[0].position if head else None,
            )
        )
    return models.StreamList(streams=found)


@api.route(
    "GET",
    "/streams/{name}/events",
    query=models.StreamEventsQuery,
    response=models.StreamEvents,
    tag="streams",
    summary="Events of one stream",
    errors=(404,),
)
async def stream_events(
    request: web.Request, query: models.StreamEventsQuery
) -> models.StreamEvents:
    """Read one ``service-uptime-*`` or ``system-*`` stream, forwards or backwards."""
    name = request.match_info["name"]
    if BROWSABLE.match(name) is None:
        raise not_found(
            "unknown_stream", "only service-uptime-* and system-* streams can be browsed", "name"
        )
    try:
        stored = await request.app[STORE].read_stream(
            name,
            backwards=query.direction == "backwards",
            limit=query.limit,
            from_revision=query.from_revision,
        )
    except StreamNotFound:
        raise not_found("unknown_stream", f"no stream named {name!r}", "name") from None
    return models.StreamEvents(
        stream_name=name, direction=query.direction, events=[_event(e) for e in stored]
    )
