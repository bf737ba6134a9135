"""Reads on the reader thread: one stream, the ``$all`` log, subscriptions, metadata and ping."""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import AsyncIterator
from typing import Final

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
from uptime_daemon.store.sqlite.codec import Decoder
from uptime_daemon.store.sqlite.connection import Connections
from uptime_daemon.store.sqlite.head import Head
from uptime_daemon.store.sqlite.schema import sequence
from uptime_daemon.store.sqlite.streams import stream_row

SUBSCRIPTION_PAGE: Final = 1000
"""Events read per catch-up step of a subscription."""
_MAX_CHAR: Final = 0x10FFFF
_SURROGATES: Final = range(0xD800, 0xE000)
_EVENTS: Final = (
    "SELECT e.position, e.stream_id, e.revision, e.id, e.type_id, e.dictionary_id, e.data, "
    "m.value, e.recorded_at FROM events AS e CROSS JOIN metadata AS m ON m.id = e.metadata_id"
)
"""A ``codec.EventRow``; CROSS JOIN keeps ``events`` the outer loop, so its key drives the scan."""
_LOG_ROWS: Final = (
    "SELECT e.position, e.stream_id, e.revision, e.type_id, e.dictionary_id, e.data, "
    "e.recorded_at FROM events AS e"
)
"""A ``codec.LogRowV2``: ``LogRow``'s fields in its order, names and payload still encoded."""


async def read_stream(
    connections: Connections,
    decoder: Decoder,
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
        clauses = ["e.stream_id = (SELECT id FROM names WHERE name = ?)", "e.revision >= ?"]
        params: list[object] = [stream, row.floor()]
        if row.max_age_seconds is not None:
            clauses.append("e.recorded_at >= ?")
            params.append(now - row.max_age_seconds)
        if from_revision is not None:
            clauses.append("e.revision <= ?" if backwards else "e.revision >= ?")
            params.append(from_revision)
        params.append(-1 if limit is None else limit)
        rows = conn.execute(
            f"{_EVENTS} WHERE {' AND '.join(clauses)} "
            f"ORDER BY e.revision {'DESC' if backwards else 'ASC'} LIMIT ?",
            params,
        ).fetchall()
        return decoder.events(conn, rows)

    found = await connections.read(read)
    if found is None:
        raise StreamNotFound(stream)
    return found


async def read_all(
    connections: Connections,
    decoder: Decoder,
    *,
    after: int,
    prefix: StreamPrefix,
    limit: int | None,
) -> list[RecordedEvent]:
    """The global log after ``after`` (exclusive), optionally only streams with a prefix."""
    events, _ = await connections.read(
        functools.partial(_page, decoder=decoder, after=after, prefix=prefix, limit=limit)
    )
    return events


async def read_log_rows(
    connections: Connections, decoder: Decoder, *, after: int, prefix: StreamPrefix, limit: int
) -> list[LogRow]:
    """``read_all`` as ``LogRow`` s: the driver's rows, names looked up and payloads unpacked."""

    def read(conn: sqlite3.Connection) -> list[LogRow]:
        where, params = _log_filter(after, prefix, limit)
        rows = conn.execute(
            f"{_LOG_ROWS} WHERE {where} ORDER BY e.position LIMIT ?",
            params,
        ).fetchall()
        return decoder.log_rows(conn, rows)

    return await connections.read(read)


async def subscribe(
    connections: Connections,
    decoder: Decoder,
    head: Head,
    *,
    after: int | None,
    prefix: StreamPrefix,
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
            functools.partial(
                _page, decoder=decoder, after=cursor, prefix=prefix, limit=SUBSCRIPTION_PAGE
            )
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
    conn: sqlite3.Connection,
    *,
    decoder: Decoder,
    after: int,
    prefix: StreamPrefix,
    limit: int | None,
) -> tuple[list[RecordedEvent], int]:
    """Events after ``after`` and the highest position committed in the same snapshot."""
    where, params = _log_filter(after, prefix, limit)
    rows = conn.execute(
        f"{_EVENTS} WHERE {where} ORDER BY e.position LIMIT ?",
        params,
    ).fetchall()
    return decoder.events(conn, rows), sequence(conn)


def _log_filter(after: int, prefix: StreamPrefix, limit: int | None) -> tuple[str, list[object]]:
    """The ``WHERE`` of a page of the global log, and its parameters (the ``LIMIT``'s last).

    The scan walks the primary key from ``after``; a prefix becomes the set of interned stream
    ids whose names fall in its range, built once per query from the ``names`` index
    (``+e.stream_id`` keeps the planner off the stream index, which would sort the whole prefix
    range for every page).
    """
    where, params = "e.position > ?", list[object]([after])
    ranges = []
    for each in prefixes(prefix):
        params.append(each)
        upper = _prefix_upper(each)
        if upper is None:
            ranges.append("name >= ?")
        else:
            ranges.append("(name >= ? AND name < ?)")
            params.append(upper)
    if ranges:
        where += f" AND +e.stream_id IN (SELECT id FROM names WHERE {' OR '.join(ranges)})"  # noqa: S608 - fixed fragments
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
