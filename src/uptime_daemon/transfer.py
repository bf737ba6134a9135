"""Moving the uptime log: JSON-lines export/import, and migration from SQLite to KurrentDB.

Every event keeps its id and is appended with the exact expected revision it had at the source, so
both import and migration are idempotent (KurrentDB guarantees idempotency for exact expected
revisions, not for ``any``): running them twice duplicates nothing, and a conflicting target — a
stream that already holds other events — is reported, never merged silently. Migration records
the last source position it copied and resumes from there.

Only ``service-uptime-*`` streams and the rollups of their compacted checks
(``system-uptime-rollup-*``) are moved: other ``system-*`` streams are temporary by design.

A stream whose oldest events were compacted away starts past revision 0 at the source; at the
target it starts at 0, its revisions shifted by where the source's began (``Renumbering``) — the
projection never depends on a raw stream's revisions, only on the order of its events.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TextIO
from uuid import UUID

import orjson
import structlog

from uptime_daemon.clock import parse_iso, to_iso_millis
from uptime_daemon.errors import ConcurrencyConflict, UptimeDaemonError
from uptime_daemon.projector.rollup import ROLLUP_STREAM_PREFIX
from uptime_daemon.store import (
    UPTIME_STREAM_PREFIX,
    EventStore,
    NewEvent,
    RecordedEvent,
    StreamState,
)

log = structlog.get_logger(__name__)

PAGE: Final = 1000
MOVED: Final = (UPTIME_STREAM_PREFIX, ROLLUP_STREAM_PREFIX)
"""The streams export, import and migration move."""


class TransferError(UptimeDaemonError):
    """A line could not be read, or the target holds different events than the source."""


@dataclass(frozen=True, slots=True)
class Progress:
    """What a transfer did."""

    events: int
    appends: int
    last_position: int | None


def _body(data: bytes, key: str) -> dict[str, Any]:
    """Exact bytes, as readable as possible: JSON when it re-serializes identically, else text, else base64."""
    if not data:
        return {key: None}
    try:
        value = orjson.loads(data)
        if orjson.dumps(value) == data:
            return {key: value}
        return {f"{key}Text": data.decode("utf-8")}
    except (orjson.JSONDecodeError, UnicodeDecodeError):
        try:
            return {f"{key}Text": data.decode("utf-8")}
        except UnicodeDecodeError:
            return {f"{key}Base64": base64.b64encode(data).decode()}


def to_line(event: RecordedEvent) -> bytes:
    """One JSON line per event; JSON payloads stay readable, anything else is base64."""
    record: dict[str, Any] = {
        "stream": event.stream,
        "revision": event.revision,
        "position": event.position,
        "id": str(event.id),
        "type": event.type,
        "recordedAt": to_iso_millis(event.recorded_at),
    }
    record |= _body(event.data, "data") | _body(event.metadata, "metadata")
    return orjson.dumps(record) + b"\n"


def _payload(line: dict[str, Any], key: str) -> bytes:
    if f"{key}Base64" in line:
        return base64.b64decode(line[f"{key}Base64"])
    if f"{key}Text" in line:
        return str(line[f"{key}Text"]).encode("utf-8")
    value = line.get(key)
    return b"" if value is None else orjson.dumps(value)


def from_line(text: str, number: int) -> tuple[str, int, NewEvent]:
    """``(stream, source revision, event)`` from one exported line; ``TransferError`` names the line."""
    try:
        line = orjson.loads(text)
        event = NewEvent(
            id=UUID(line["id"]),
            type=str(line["type"]),
            data=_payload(line, "data"),
            metadata=_payload(line, "metadata"),
        )
        revision = int(line["revision"])
        if "recordedAt" in line:
            parse_iso(line["recordedAt"])
        return str(line["stream"]), revision, event
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise TransferError(f"line {number}: {type(exc).__name__}: {exc}") from exc


async def _pages(store: EventStore, after: int | None) -> AsyncIterator[list[RecordedEvent]]:
    while page := await store.read_all(after=after, stream_prefix=MOVED, limit=PAGE):
        yield page
        after = page[-1].position
        if len(page) < PAGE:
            return


async def export_jsonl(store: EventStore, out: TextIO) -> Progress:
    """Write every uptime event and rollup, in commit order."""
    count, last = 0, None
    async for page in _pages(store, None):
        out.writelines(to_line(event).decode() for event in page)
        count += len(page)
        last = page[-1].position
    return Progress(events=count, appends=0, last_position=last)


Renumbering = dict[str, int]
"""Stream → the source revision its first event had (the target's revision 0)."""


async def _append_run(
    target: EventStore, stream: str, first_revision: int, run: list[NewEvent]
) -> None:
    expected = StreamState.NO_STREAM if first_revision == 0 else first_revision - 1
    try:
        await target.append(stream, run, expected)
    except ConcurrencyConflict as exc:
        raise TransferError(
            f"{stream}: the target holds different events at revision {first_revision} "
            f"(actual revision {exc.actual}); refusing to merge"
        ) from exc


async def _append_runs(
    target: EventStore, items: Iterable[tuple[str, int, NewEvent]], shift: Renumbering
) -> int:
    """Append consecutive events of one stream together, each run with its exact expected revision.

    ``shift`` remembers where each stream began at the source (kept across calls, and across a
    resumed migration), so a stream compacted at the source starts at 0 at the target.
    """
    appends = 0
    run: list[NewEvent] = []
    run_stream, first_revision = "", 0
    for stream, source_revision, event in items:
        revision = source_revision - shift.setdefault(stream, source_revision)
        if run and (stream != run_stream or revision != first_revision + len(run)):
            await _append_run(target, run_stream, first_revision, run)
            appends += 1
            run = []
        if not run:
            run_stream, first_revision = stream, revision
        run.append(event)
    if run:
        await _append_run(target, run_stream, first_revision, run)
        appends += 1
    return appends


async def import_jsonl(target: EventStore, lines: Iterable[str]) -> Progress:
    """Append exported events with their ids and revisions; a re-import writes nothing new."""
    batch: list[tuple[str, int, NewEvent]] = []
    shift: Renumbering = {}
    count = appends = 0
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        batch.append(from_line(text, number))
        if len(batch) >= PAGE:
            appends += await _append_runs(target, batch, shift)
            count += len(batch)
            batch = []
    appends += await _append_runs(target, batch, shift)
    return Progress(events=count + len(batch), appends=appends, last_position=None)


def checkpoint_path(source_db: Path, target_url: str) -> Path:
    """Where a migration to ``target_url`` records its progress (credentials never in the name)."""
    digest = hashlib.sha256(target_url.rsplit("@", maxsplit=1)[-1].encode()).hexdigest()[:12]
    return source_db.with_name(f"{source_db.name}.migrate-{digest}.json")


async def migrate(
    source: EventStore, target: EventStore, checkpoint: Path, *, restart: bool = False
) -> Progress:
    """Copy the uptime log to ``target``, resuming after the last position copied."""
    after: int | None = None
    shift: Renumbering = {}
    # A few bytes per thousand events, in a one-shot command: blocking file I/O is fine here.
    if checkpoint.exists() and not restart:  # noqa: ASYNC240
        saved = orjson.loads(checkpoint.read_bytes())  # noqa: ASYNC240
        after, shift = saved.get("position"), dict(saved.get("firstRevisions", {}))
        log.info("migration_resuming", after=after)
    count = appends = 0
    last = after
    async for page in _pages(source, after):
        appends += await _append_runs(
            target,
            [(e.stream, e.revision, NewEvent(e.id, e.type, e.data, e.metadata)) for e in page],
            shift,
        )
        count += len(page)
        last = page[-1].position
        saved = {"position": last, "firstRevisions": shift}
        checkpoint.write_bytes(orjson.dumps(saved))  # noqa: ASYNC240
        log.info("migration_progress", events=count, position=last)
    return Progress(events=count, appends=appends, last_position=last)
