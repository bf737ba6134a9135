"""Reads on the reader thread: one stream, the ``$all`` log, subscriptions, metadata and ping."""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Final
from uuid import UUID

from uptime_daemon.errors import StreamNotFound
from uptime_daemon.store import (
    CaughtUp,
    LogRow,
    RecordedEvent,
    StreamMetadata,
    StreamPrefix,
    prefixes,
)
from uptime_daemon.store.sqlite.checks import check_at_least
from uptime_daemon.store.sqlite.connection import Connections
from uptime_daemon.store.sqlite.head import Head
from uptime_daemon.store.sqlite.schema import sequence
from uptime_daemon.store.sqlite.streams import stream_row

SUBSCRIPTION_PAGE: Final = 1000
"""Events read per catch-up step of a subscription."""
_MAX_CHAR: Final = 0x10FFFF
_SURROGATES: Final = range(0xD800, 0xE000)
_COLUMNS: Final = "position, stream, revision, id, type, data, metadata, recorded_at"
_LOG_ROW_COLUMNS: Final = "position, stream, revision, type, data, recorded_at"
"""``LogRow``'s fields, in its order: the driver's row tuple is the row, nothing is built per event."""


async def read_stream(
    connections: Connections,
    stream: str,
    *,
    now: float,
    backwards: bool,
    limit: int | None,
    from_revision: int | None,
) -> list[RecordedEvent]:
    """Visible events of one stream at ``now``; ``from_revision`` inclusive in either direction."""

    def read(conn: sqlite3.Connection) -> list[RecordedEvent] | None:
        row = stream_row(conn, stream)
        if row is None or row.visible_revision is None:  # missing, deleted, or metadata only
            return None
        clauses, params = ["stream = ?", "revision >= ?"], [stream, row.floor()]
        if row.max_age_seconds is not None:
            clauses.append("recorded_at >= ?")
            params.append(now - row.max_age_seconds)
        if from_revision is not None:
            clauses.append("revision <= ?" if backwards else "revision >= ?")
            params.append(from_revision)
        params.append(-1 if limit is None else limit)
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM events WHERE {' AND '.join(clauses)} "  # noqa: S608 - fixed fragments
            f"ORDER BY revision {'DESC' if backwards else 'ASC'} LIMIT ?",
            params,
        ).fetchall()
        return [_row_to_event(r) for r in rows]

    found = await connections.read(read)
    if found is None:
        raise StreamNotFound(stream)
    return found


async def read_all(
    connections: Connections, *, after: int, prefix: StreamPrefix, limit: int | None
) -> list[RecordedEvent]:
    """The global log after ``after`` (exclusive), optionally only streams with a prefix."""
    events, _ = await connections.read(
        functools.partial(_page, after=after, prefix=prefix, limit=limit)
    )
    return events


async def read_log_rows(
    connections: Connections, *, after: int, prefix: StreamPrefix, limit: int
) -> list[LogRow]:
    """``read_all`` as ``LogRow`` s, straight from the driver."""

    def read(conn: sqlite3.Connection) -> list[LogRow]:
        where, params = _log_filter(after, prefix, limit)
        rows: list[LogRow] = conn.execute(
            f"SELECT {_LOG_ROW_COLUMNS} FROM events WHERE {where} ORDER BY position LIMIT ?",  # noqa: S608 - fixed fragments
            params,
        ).fetchall()
        return rows

    return await connections.read(read)


async def subscribe(
    connections: Connections, head: Head, *, after: int | None, prefix: StreamPrefix
) -> AsyncIterator[RecordedEvent | CaughtUp]:
    """Catch up in pages, yield ``CaughtUp`` once, then follow commits as they happen.

    Catch-up and live are one loop: read the next page after the cursor from the file; when a
    page is short, everything committed up to that snapshot has been seen, so the cursor jumps
    to the snapshot's head (a quiet prefix never rescans) and the loop waits for the writer to
    announce a commit beyond it. The wait re-checks a predicate under the condition's lock, so
    a commit between the read and the wait is never missed.
    """
    head.ensure_open()
    check_at_least("after", after, 0)
    cursor = after or 0
    last_yielded = after
    caught_up = False
    while True:
        head.ensure_open()
        page, snapshot_head = await connections.read(
            functools.partial(_page, after=cursor, prefix=prefix, limit=SUBSCRIPTION_PAGE)
        )
        for event in page:
            head.ensure_open()
            last_yielded = cursor = event.position
            yield event
        if len(page) == SUBSCRIPTION_PAGE:
            continue
        cursor = max(cursor, snapshot_head)
        if not caught_up:
            caught_up = True
            yield CaughtUp(last_yielded)
        await head.wait_past(cursor)


async def stream_metadata(connections: Connections, stream: str) -> StreamMetadata:
    """Retention settings of a stream (all ``None`` when never set)."""
    row = await connections.read(functools.partial(stream_row, stream=stream))
    if row is None:
        return StreamMetadata()
    return StreamMetadata(max_age_seconds=row.max_age_seconds, max_count=row.max_count)


async def ping(connections: Connections) -> float:
    """Time one small query that touches the file, on the reader thread."""
    started = time.perf_counter()
    await connections.read(lambda conn: conn.execute("SELECT MAX(position) FROM events").fetchone())
    return time.perf_counter() - started


def _page(
    conn: sqlite3.Connection, *, after: int, prefix: StreamPrefix, limit: int | None
) -> tuple[list[RecordedEvent], int]:
    """Events after ``after`` and the highest position committed in the same snapshot."""
    where, params = _log_filter(after, prefix, limit)
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM events WHERE {where} ORDER BY position LIMIT ?",  # noqa: S608 - fixed fragments
        params,
    ).fetchall()
    return [_row_to_event(r) for r in rows], sequence(conn)


def _log_filter(after: int, prefix: StreamPrefix, limit: int | None) -> tuple[str, list[object]]:
    """The ``WHERE`` of a page of the global log, and its parameters (the ``LIMIT``'s last).

    The scan walks the primary key from ``after`` (``+stream`` keeps the planner off the stream
    index, which would sort the whole prefix range for every page).
    """
    where, params = "position > ?", list[object]([after])
    ranges = []
    for each in prefixes(prefix):
        params.append(each)
        upper = _prefix_upper(each)
        if upper is None:
            ranges.append("+stream >= ?")
        else:
            ranges.append("(+stream >= ? AND +stream < ?)")
            params.append(upper)
    if ranges:
        where += " AND (" + " OR ".join(ranges) + ")"
    params.append(-1 if limit is None else limit)
    return where, params


def _prefix_upper(prefix: str) -> str | None:
    """The smallest string above every string starting with ``prefix`` (``None``: no upper bound).

    ``stream >= prefix AND stream < upper`` is an exact prefix match with no LIKE/GLOB escaping, and
    SQLite's BINARY collation (UTF-8 bytes) orders like code points, so the range is exact.
    """
    stripped = prefix.rstrip(chr(_MAX_CHAR))
    if not stripped:
        return None
    bumped = ord(stripped[-1]) + 1
    if bumped in _SURROGATES:
        bumped = _SURROGATES.stop
    return stripped[:-1] + chr(bumped)


def _row_to_event(row: tuple[int, str, int, str, str, bytes, bytes, float]) -> RecordedEvent:
    position, stream, revision, uid, kind, data, metadata, recorded = row
    return RecordedEvent(
        id=UUID(uid),
        type=kind,
        data=bytes(data),
        metadata=bytes(metadata),
        stream=stream,
        revision=revision,
        position=position,
        recorded_at=datetime.fromtimestamp(recorded, UTC),
    )
