"""``/streams``: browse the daemon's streams; the seeds' user-data streams, when enabled.

The daemon's own streams (``service-uptime-*``, ``system-*``) are read-only here: nothing outside
the daemon may write its evidence. The seeds' ``user-{userId}-{type}`` streams are accepted only
with ``[streams] user_data = true``; they are private (a token is needed to list or read them) and
each write is idempotent by the client's ``eventId``.
"""

from __future__ import annotations

import asyncio
import re
import uuid
import weakref
from typing import Final

import orjson
from aiohttp import web

from uptime_daemon import events
from uptime_daemon.api import models, views
from uptime_daemon.api.access import Role, role_of
from uptime_daemon.api.endpoint import JSON, Api, bad_request, json_error_exception, not_found
from uptime_daemon.api.keys import CLOCK, PROJECTOR, SETTINGS, STORE
from uptime_daemon.clock import to_iso_millis
from uptime_daemon.cluster import members
from uptime_daemon.config.model import DatabaseService, Settings
from uptime_daemon.errors import ConcurrencyConflict, StreamNotFound
from uptime_daemon.maintenance import STREAM as MAINTENANCE_STREAM
from uptime_daemon.store import (
    SYSTEM_STREAM_PREFIX,
    UPTIME_STREAM_PREFIX,
    EventStore,
    Expected,
    NewEvent,
    StreamState,
)
from uptime_daemon.store import RecordedEvent as StoredEvent

api = Api()

DAEMON_STREAM: Final = re.compile(
    rf"^(?:{UPTIME_STREAM_PREFIX}|{SYSTEM_STREAM_PREFIX})[a-z0-9-]{{1,100}}$"
)
USER_STREAM: Final = re.compile(
    rf"^user-(?P<user>{models.USER_ID_PATTERN[1:-1]})-(?P<type>{'|'.join(models.USER_DATA_TYPES)})$"
)
USER_INDEX_STREAM: Final = f"{SYSTEM_STREAM_PREFIX}user-streams"
"""One ``UserStreamCreated`` per user-data stream, in creation order: what ``/streams`` pages over.
Private like the streams it names."""
USER_STREAM_CREATED: Final = "UserStreamCreated"
USER_DATA_UPDATED: Final = "UserDataUpdated"
IDEMPOTENCY_WINDOW: Final = 1000
"""A repeated ``eventId`` is recognised among a stream's newest this-many events."""
_WRITE_ATTEMPTS: Final = 3
_NAMESPACE: Final = uuid.UUID("0f7b7a52-3c1e-4d55-9a1e-6c2b9e4d8a31")
"""Fixed forever: stored event ids derive from it and the client's ``eventId``."""


def is_private(name: str) -> bool:
    """A stream only a token holder may list or read."""
    return name.startswith("user-") or name == USER_INDEX_STREAM


def _kind(name: str) -> models.StreamKind:
    if name.startswith(UPTIME_STREAM_PREFIX):
        return "service"
    return "user" if name.startswith("user-") else "system"


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


def _readable_name(request: web.Request) -> str:
    """The path's stream name when this caller may read it; else a 404 (that names why)."""
    name = request.match_info["name"]
    if DAEMON_STREAM.match(name) is not None and name != USER_INDEX_STREAM:
        return name
    if USER_STREAM.match(name) is not None or name == USER_INDEX_STREAM:
        if not request.app[SETTINGS].current.streams.user_data:
            raise not_found(
                "user_data_disabled",
                "user-data streams are off; set [streams] user_data = true to use them",
                "name",
            )
        return name  # the access middleware has already required a token for these
    raise not_found(
        "unknown_stream",
        "only service-uptime-*, system-* and (when enabled) user-{userId}-{type} streams exist here",
        "name",
    )


# --- browsing -------------------------------------------------------------------------------------


def _system_candidates(settings: Settings) -> list[str]:
    fixed = {"system-health-check", MAINTENANCE_STREAM, members.STREAM}
    fixed |= {s.stream for s in settings.services.values() if isinstance(s, DatabaseService)}
    return sorted(fixed)


async def _head(store: EventStore, name: str) -> StoredEvent | None:
    try:
        head = await store.read_stream(name, backwards=True, limit=1)
    except StreamNotFound:
        return None
    return head[0] if head else None


def _info(name: str, head: StoredEvent | None) -> models.StreamInfo:
    return models.StreamInfo(
        name=name,
        kind=_kind(name),
        last_revision=None if head is None else head.revision,
        last_position=None if head is None else head.position,
    )


@api.route(
    "GET",
    "/streams",
    query=models.StreamsQuery,
    response=models.StreamList,
    tag="streams",
    summary="Browse streams, a page at a time",
    seed_path="/streams/browse",
)
async def list_streams(request: web.Request, query: models.StreamsQuery) -> models.StreamList:
    """Service uptime streams, system streams, and (to a token holder) user-data streams.

    Every service's uptime stream is listed (``lastRevision`` null before its first event), the
    daemon's system streams that exist, and — when enabled — the user-data streams.

    Per-notification ledgers (``system-notification-*``) are not listed: read them by name.
    """
    app = request.app
    settings, store = app[SETTINGS].current, app[STORE]
    services = [
        f"{UPTIME_STREAM_PREFIX}{name}"
        for name in views.service_names(settings, app[PROJECTOR].state)
    ]
    system = [
        (name, head)
        for name in _system_candidates(settings)
        if (head := await _head(store, name)) is not None
    ]
    user_count = 0
    holder = (role_of(request, settings.server.auth) or Role.NONE) > Role.NONE
    if settings.streams.user_data and holder:
        index_head = await _head(store, USER_INDEX_STREAM)
        user_count = 0 if index_head is None else index_head.revision + 1
    fixed = services + [name for name, _ in system]
    known = dict(system)
    total = len(fixed) + user_count
    start, stop = query.offset, min(total, query.offset + query.limit)
    page = [
        _info(name, known[name] if name in known else await _head(store, name))
        for name in fixed[start:stop]
    ]
    if stop > len(fixed):
        first = max(start, len(fixed)) - len(fixed)
        created = await store.read_stream(
            USER_INDEX_STREAM, from_revision=first, limit=stop - len(fixed) - first
        )
        for event in created:
            name = str(events.payload(event.data).get("streamName", ""))
            page.append(_info(name, await _head(store, name)))
    return models.StreamList(streams=page, total=total, limit=query.limit, offset=query.offset)


@api.route(
    "GET",
    "/streams/{name}/details",
    response=models.StreamDetails,
    tag="streams",
    summary="One stream's extent and retention",
    errors=(404,),
)
async def stream_details(request: web.Request, _query: None) -> models.StreamDetails:
    """First and last readable revision, event count, when it began, its newest event, retention."""
    name = _readable_name(request)
    store = request.app[STORE]
    try:
        first = await store.read_stream(name, limit=1)
        last = await store.read_stream(name, backwards=True, limit=1)
    except StreamNotFound:
        raise not_found("unknown_stream", f"no stream named {name!r}", "name") from None
    if not first or not last:
        raise not_found("unknown_stream", f"stream {name!r} has no readable event", "name")
    retention = await store.get_stream_metadata(name)
    newest = last[0]
    return models.StreamDetails(
        name=name,
        kind=_kind(name),
        first_revision=first[0].revision,
        last_revision=newest.revision,
        event_count=newest.revision - first[0].revision + 1,
        created=first[0].recorded_at,
        last_event=models.EventHead(
            event_id=str(newest.id),
            event_type=newest.type,
            revision=newest.revision,
            position=newest.position,
            recorded_at=newest.recorded_at,
        ),
        metadata=models.StreamRetention(
            max_age=retention.max_age_seconds, max_count=retention.max_count
        ),
    )


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
    """Read one stream, forwards or backwards (the seeds' ``?limit=100&direction=forwards``)."""
    name = _readable_name(request)
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


# --- the seeds' user-data streams -------------------------------------------------------------------


def _writable(request: web.Request, name: str) -> re.Match[str]:
    """The user-stream match for ``name``; a 403/404/400 saying why it cannot be written."""
    if DAEMON_STREAM.match(name) is not None or name.startswith(("service-", "system-", "$")):
        raise json_error_exception(
            web.HTTPForbidden,
            "read_only_stream",
            "the daemon's own streams (service-uptime-*, system-*) are never written through the API",
            "streamName",
        )
    if not request.app[SETTINGS].current.streams.user_data:
        raise not_found(
            "user_data_disabled",
            "user-data streams are off; set [streams] user_data = true to use them",
            "streamName",
        )
    match = USER_STREAM.match(name)
    if match is None:
        raise bad_request(
            "streamName",
            "a user-data stream is user-{userId}-{type}, type one of "
            + ", ".join(models.USER_DATA_TYPES),
        )
    return match


def _stored_payload(
    request: web.Request, match: re.Match[str], data: models.UserDataUpdated
) -> models.UserDataUpdated:
    """The payload as stored: the userId/type checked against the name, timestamp and id filled."""
    if data.user_id != match["user"]:
        raise bad_request("eventData.userId", f"must be {match['user']!r}, the stream's userId")
    if data.type != match["type"]:
        raise bad_request("eventData.type", f"must be {match['type']!r}, the stream's type")
    now = request.app[CLOCK].now()
    return data.model_copy(
        update={
            "timestamp": data.timestamp or now,
            "event_id": data.event_id
            or f"evt_{round(now.timestamp() * 1000)}_{uuid.uuid4().hex[:12]}",
        }
    )


_METADATA: Final = orjson.dumps({"producer": "uptime-daemon", "via": "api"})


def _encode(payload: models.UserDataUpdated) -> bytes:
    stored = payload.model_dump(mode="json", by_alias=True)
    if payload.timestamp is not None:
        stored["timestamp"] = to_iso_millis(payload.timestamp)
    return orjson.dumps(stored)


_LOCKS: Final = weakref.WeakValueDictionary[tuple[int, str], asyncio.Lock]()


def _lock(app: web.Application, name: str) -> asyncio.Lock:
    """One writer per user stream in this daemon.

    Another daemon's race is settled by the store's idempotency: the event is stored once, and only
    ``duplicate`` may then read ``false`` on both.
    """
    key = (id(app), name)
    lock = _LOCKS.get(key)
    if lock is None:
        lock = _LOCKS[key] = asyncio.Lock()
    return lock


def _find(recent: list[StoredEvent], event_id: uuid.UUID) -> StoredEvent | None:
    return next((event for event in recent if event.id == event_id), None)


def _comparable(
    stored: dict[str, object], new: models.UserDataUpdated, sent_timestamp: bool
) -> bool:
    """Whether a repeated ``eventId`` carries the same payload (a server-filled time aside)."""
    mine = orjson.loads(_encode(new))
    if not sent_timestamp:
        mine.pop("timestamp")
        stored = {k: v for k, v in stored.items() if k != "timestamp"}
    return bool(stored == mine)


async def _write(
    request: web.Request, name: str, body: models.UserDataUpdated, *, create: bool
) -> web.Response:
    match = _writable(request, name)
    sent_timestamp = body.timestamp is not None
    payload = _stored_payload(request, match, body)
    store = request.app[STORE]
    async with _lock(request.app, name):  # so a racing retry here reads as the duplicate it is
        return await _write_once(store, name, match, payload, sent_timestamp, create=create)


async def _write_once(
    store: EventStore,
    name: str,
    match: re.Match[str],
    payload: models.UserDataUpdated,
    sent_timestamp: bool,
    *,
    create: bool,
) -> web.Response:
    assert payload.event_id is not None  # noqa: S101 -- filled by _stored_payload
    event_id = uuid.uuid5(_NAMESPACE, f"{name}\n{payload.event_id}")
    for _ in range(_WRITE_ATTEMPTS):
        try:
            recent = await store.read_stream(name, backwards=True, limit=IDEMPOTENCY_WINDOW)
        except StreamNotFound:
            recent = []
        if (stored := _find(recent, event_id)) is not None:
            if not _comparable(events.payload(stored.data), payload, sent_timestamp):
                raise _conflict(
                    "idempotency_conflict",
                    f"eventId {payload.event_id!r} was already stored with other data",
                )
            return _result(name, payload, stored, duplicate=True, status=200)
        if create and recent:
            raise _conflict("stream_exists", f"stream {name!r} already exists; append to it")
        expected: Expected = recent[0].revision if recent else StreamState.NO_STREAM
        try:
            await store.append(
                name, [NewEvent(event_id, USER_DATA_UPDATED, _encode(payload), _METADATA)], expected
            )
        except ConcurrencyConflict:
            continue  # another writer got in first: look again (it may have been this very id)
        if not recent:
            await _index(store, name, match)
        written = _find(
            await store.read_stream(name, backwards=True, limit=IDEMPOTENCY_WINDOW), event_id
        )
        if written is not None:
            return _result(name, payload, written, duplicate=False, status=201)
        raise _conflict("write_contended", f"stream {name!r} moved on past this write; read it")
    raise _conflict("write_contended", f"stream {name!r} kept changing; try again")


def _result(
    name: str, payload: models.UserDataUpdated, event: StoredEvent, *, duplicate: bool, status: int
) -> web.Response:
    assert payload.event_id is not None  # noqa: S101
    return web.Response(
        body=models.AppendResult(
            stream_name=name,
            event_id=str(event.id),
            client_event_id=payload.event_id,
            revision=event.revision,
            position=event.position,
            duplicate=duplicate,
        ).model_dump_json(by_alias=True),
        status=status,
        content_type=JSON,
    )


def _conflict(error: str, message: str) -> web.HTTPConflict:
    return json_error_exception(web.HTTPConflict, error, message)


async def _index(store: EventStore, name: str, match: re.Match[str]) -> None:
    """Record a new user-data stream in the private index ``/streams`` pages over."""
    created = orjson.dumps({"streamName": name, "userId": match["user"], "type": match["type"]})
    await store.append(
        USER_INDEX_STREAM,
        [NewEvent(uuid.uuid5(_NAMESPACE, name), USER_STREAM_CREATED, created)],
    )


@api.route(
    "POST",
    "/streams/create",
    body=models.StreamCreateRequest,
    response=models.AppendResult,
    status=201,
    tag="streams",
    summary="Create a user-data stream with its first event",
    errors=(404, 409),
)
async def create_stream(request: web.Request, body: models.StreamCreateRequest) -> web.Response:
    """The seeds' ``POST /api/streams/create`` for ``user-{userId}-{type}`` streams only.

    Needs ``[streams] user_data = true`` and an operator token. 409 when the stream exists (unless
    this ``eventId`` is its stored event: then 200 with ``duplicate: true``); 403 for the daemon's
    own streams.
    """
    return await _write(request, body.stream_name, body.event_data, create=True)


@api.route(
    "POST",
    "/streams/{name}/events",
    body=models.StreamAppendRequest,
    response=models.AppendResult,
    status=201,
    tag="streams",
    summary="Append an event to a user-data stream",
    errors=(404, 409),
)
async def append_event(request: web.Request, body: models.StreamAppendRequest) -> web.Response:
    """The seeds' ``POST /api/streams/{name}/events``; the stream is created by its first event.

    A repeated ``eventId`` (among the stream's newest 1,000 events) stores nothing and answers 200
    with ``duplicate: true``; the same id with other data is a 409. 403 for the daemon's streams.
    """
    return await _write(request, request.match_info["name"], body.event_data, create=False)
