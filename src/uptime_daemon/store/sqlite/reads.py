"""Reads on the reader thread: one stream, the ``$all`` log, subscriptions, metadata and ping."""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, Final

from uptime_daemon.errors import StreamNotFound
from uptime_daemon.store import (
    CaughtUp,
    DigestRow,
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
_DIGEST_ROWS: Final = (
    "SELECT e.position, e.stream_id, e.revision, e.type_id, e.digest_key, e.digest, "
    "CASE WHEN e.digest IS NULL OR e.digest_key IS NULL THEN e.dictionary_id END, "
    "CASE WHEN e.digest IS NULL OR e.digest_key IS NULL THEN e.data END, "
    "e.recorded_at FROM events AS e"
)
"""A ``codec.DigestRowV3``: the payload read only for an event without a digest."""
PAYLOAD_CHUNK: Final = 500
"""Positions looked up per query by ``read_payloads`` (well under SQLite's bound-parameter limit)."""


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
        rows = _rows(conn, decoder, _LOG_ROWS, after=after, prefix=prefix, limit=limit)
        return decoder.log_rows(conn, rows)

    return await connections.read(read)


async def read_digest_rows(
    connections: Connections, decoder: Decoder, *, after: int, prefix: StreamPrefix, limit: int
) -> list[DigestRow]:
    """``read_log_rows`` with each event's digest in place of its payload where it has one."""

    def read(conn: sqlite3.Connection) -> list[DigestRow]:
        rows = _rows(conn, decoder, _DIGEST_ROWS, after=after, prefix=prefix, limit=limit)
        return decoder.digest_rows(conn, rows)

    return await connections.read(read)


async def read_payloads(
    connections: Connections, decoder: Decoder, positions: Sequence[int]
) -> dict[int, bytes]:
    """The payloads at ``positions`` still in the file, by position (one snapshot)."""

    def read(conn: sqlite3.Connection) -> dict[int, bytes]:
        found: dict[int, bytes] = {}
        wanted = sorted(set(positions))
        for start in range(0, len(wanted), PAYLOAD_CHUNK):
            chunk = wanted[start : start + PAYLOAD_CHUNK]
            marks = ",".join("?" * len(chunk))
            for position, dictionary_id, data in conn.execute(
                f"SELECT position, dictionary_id, data FROM events WHERE position IN ({marks})",  # noqa: S608 - placeholders only
                chunk,
            ):
                found[position] = decoder.payload(conn, dictionary_id, data)
        return found

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

    Once caught up, what followed the cursor comes from the commits the head holds in memory
    when they reach back to it (``Tail.since``: the same events a read would give, without the
    reader thread and the decoding, one per check at a low rate); otherwise from the file.
    """
    head.ensure_open()
    check_at_least("after", after, 0)
    wanted = prefixes(prefix)
    cursor = after or 0
    last_yielded = after
    caught_up = False
    with head.tail.following():  # the writer holds commits only while followed
        while True:
            head.ensure_open()
            held = head.tail.since(cursor, wanted) if caught_up else None
            if held is None:
                page, snapshot_head = await connections.read(
                    functools.partial(
                        _page, decoder=decoder, after=cursor, prefix=prefix, limit=SUBSCRIPTION_PAGE
                    )
                )
            else:
                page, snapshot_head = held
            for event in page:
                head.ensure_open()
                last_yielded = cursor = event.position
                yield event
            if held is None and len(page) == SUBSCRIPTION_PAGE:
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
    rows = _rows(conn, decoder, _EVENTS, after=after, prefix=prefix, limit=limit)
    return decoder.events(conn, rows), sequence(conn)


LITERAL_IDS: Final = 256
"""Up to this many matching streams, the ids go into the query (``IN (?, …)``); past it (the
projector's ``service-uptime-`` prefix at 10,000 services) the rows are read by position and kept
in Python, where a set lookup costs less than SQLite building a 10,000-entry list for every page."""
_SCAN_CHUNK: Final = 2000


def _rows(
    conn: sqlite3.Connection,
    decoder: Decoder,
    select: str,
    *,
    after: int,
    prefix: StreamPrefix,
    limit: int | None,
) -> list[Any]:
    """Rows of ``select`` (``stream_id`` second) after ``after`` in log order, of the prefix's streams.

    The scan walks the primary key from ``after``; a prefix is the set of interned stream ids whose
    names start with it (``Decoder.stream_ids``, kept up to date as names are added).
    """
    wanted = prefixes(prefix)
    if not wanted:
        return conn.execute(
            f"{select} WHERE e.position > ? ORDER BY e.position LIMIT ?",
            (after, -1 if limit is None else limit),
        ).fetchall()
    ids = decoder.stream_ids(conn, wanted)
    if not ids:
        return []
    if len(ids) <= LITERAL_IDS:
        marks = ",".join("?" * len(ids))
        return conn.execute(
            f"{select} WHERE e.position > ? AND +e.stream_id IN ({marks}) "
            "ORDER BY e.position LIMIT ?",
            (after, *ids, -1 if limit is None else limit),
        ).fetchall()
    found: list[Any] = []
    cursor = conn.execute(
        f"{select} WHERE e.position > ? ORDER BY e.position",
        (after,),
    )
    while limit is None or len(found) < limit:
        chunk = cursor.fetchmany(_SCAN_CHUNK)
        found += [row for row in chunk if row[1] in ids]
        if len(chunk) < _SCAN_CHUNK:
            break
    return found if limit is None else found[:limit]
