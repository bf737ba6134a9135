"""The single writer: appends by group commit, idempotency and expected state, metadata, deletes."""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

import structlog

from uptime_daemon.errors import (
    ConcurrencyConflict,
    EventStoreError,
    EventStoreUnavailable,
    StreamNotFound,
)
from uptime_daemon.store import Digest, Expected, NewEvent, RecordedEvent, StreamState
from uptime_daemon.store.sqlite.codec import Encoder
from uptime_daemon.store.sqlite.connection import Connections, transaction, unavailable
from uptime_daemon.store.sqlite.head import Commit, Head
from uptime_daemon.store.sqlite.scavenge import Scavenger
from uptime_daemon.store.sqlite.schema import sequence
from uptime_daemon.store.sqlite.streams import StreamRow, allows, stream_row

# The package's name, as before it was split into modules: log lines keep their logger name.
log = structlog.get_logger(__package__)

MAX_BATCH: Final = 512
"""Appends committed together at most (bounds one transaction's size and latency)."""
_ID_CHUNK: Final = 500
"""Event ids looked up per query (well under SQLite's limit on bound parameters)."""
_INSERT: Final = (
    "INSERT INTO events "
    "(stream_id, revision, id, type_id, metadata_id, dictionary_id, data, recorded_at, "
    "digest_key, digest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


_Appended = tuple[int, int | None]
"""An append's last position, and the first revision it wrote (``None``: it wrote nothing)."""
_Outcome = _Appended | BaseException


@dataclass(slots=True)
class _Append:
    stream: str
    events: tuple[NewEvent, ...]
    expected: Expected
    future: asyncio.Future[int] = field(repr=False)


class Writer:
    """Every write, on the writer thread; appends through one queue drained by one task.

    After each batch the task moves the ``Head`` and wakes subscribers. Metadata writes and deletes
    are rare and go straight to the writer thread, which runs one thing at a time.
    """

    def __init__(
        self,
        connections: Connections,
        head: Head,
        scavenger: Scavenger,
        *,
        clock_now: Callable[[], datetime],
        digest: Digest | None = None,
    ) -> None:
        self._connections = connections
        self._head = head
        self._scavenger = scavenger
        self._now = clock_now
        self._encoder = Encoder(digest)
        self._queue: asyncio.Queue[_Append | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.transactions = 0
        self.appends = 0

    # --- appends: queue, group commit ----------------------------------------------------------

    def load(self, conn: sqlite3.Connection) -> None:
        """On the writer thread, before the first append: the file's compression dictionary."""
        self._encoder.load(conn)

    def start(self) -> None:
        """Start the task that drains the queue."""
        self._task = asyncio.create_task(self._write_loop(), name="sqlite-writer")

    async def append(self, stream: str, events: tuple[NewEvent, ...], expected: Expected) -> int:
        """Queue a checked append and wait for the outcome of its own SAVEPOINT."""
        request = _Append(stream, events, expected, asyncio.get_running_loop().create_future())
        self._queue.put_nowait(request)
        return await request.future

    async def stop(self) -> None:
        """Commit every append already queued, then let the task end."""
        if self._task is not None:
            self._queue.put_nowait(None)
            await asyncio.wait({self._task})  # never cancels it, whatever happens here

    def fail_leftovers(self) -> None:
        """Appends still queued if the writer task died or close() was cancelled: none may hang."""
        while not self._queue.empty():
            request = self._queue.get_nowait()
            if request is not None and not request.future.done():
                request.future.set_exception(EventStoreUnavailable("store is closed"))
        if self._task is not None and not self._task.done():
            self._queue.put_nowait(None)  # it finishes its batch, then stops

    async def _write_loop(self) -> None:
        """Drain the queue batch by batch until ``stop()`` queues the ``None`` sentinel."""
        while True:
            first = await self._queue.get()
            if first is None:
                return
            batch, stopping = [first], False
            while len(batch) < MAX_BATCH and not self._queue.empty():
                request = self._queue.get_nowait()
                if request is None:
                    stopping = True
                    break
                batch.append(request)
            await self._commit(batch)
            if stopping:
                return
            await self._tend_payloads()
            await self._scavenger.run_if_due()

    async def _tend_payloads(self) -> None:
        """Between batches: train the payload dictionary once, then shrink the raw backlog.

        One recompress pass after every batch, more while no append is waiting: the backlog
        shrinks even under constant load, and an append never waits for more than one pass.
        """
        try:
            if self._encoder.training_due:
                await self._connections.write(self._encoder.train)
            passes = 0
            while self._encoder.recompress_due and (passes == 0 or self._queue.empty()):
                await self._connections.write(self._encoder.recompress)
                passes += 1
        except EventStoreError as exc:
            log.warning("store_payload_compression_failed", error=str(exc))

    async def _commit(self, batch: list[_Append]) -> None:
        """Write one batch and settle every caller's future; never raises, so the loop lives on."""
        recorded = self._now().timestamp()
        outcomes: list[_Outcome]
        try:
            outcomes, before, head = await self._connections.write(
                functools.partial(self._write_batch, batch=batch, recorded=recorded)
            )
        except Exception as exc:  # noqa: BLE001 - every waiting caller must hear of it
            if not isinstance(exc, EventStoreError):
                log.error("store_write_failed", appends=len(batch), error=repr(exc))  # noqa: TRY400
            outcomes = [self._batch_failure(exc) for _ in batch]
        else:
            self.transactions += 1
            self.appends += len(batch)
            self._scavenger.count_appends(len(batch))
            self._head.position = max(self._head.position, head)
            tail = self._head.tail
            if tail.followed:
                tail.add(Commit(before, head, _recorded(batch, outcomes, recorded)))
            else:
                tail.clear()
        for request, outcome in zip(batch, outcomes, strict=True):
            if request.future.done():  # the caller gave up waiting; the write stands
                continue
            if isinstance(outcome, BaseException):
                request.future.set_exception(outcome)
            else:
                request.future.set_result(outcome[0])
        await self._head.announce()

    def _batch_failure(self, exc: Exception) -> EventStoreUnavailable:
        """One fresh exception per caller when the whole transaction failed, chained to the cause."""
        if isinstance(exc, EventStoreUnavailable):
            error = EventStoreUnavailable(*exc.args)
        else:
            error = EventStoreUnavailable(
                f"sqlite {self._connections.path}: writer failed: {exc!r}"
            )
        error.__cause__ = exc
        return error

    def _write_batch(
        self, conn: sqlite3.Connection, *, batch: list[_Append], recorded: float
    ) -> tuple[list[_Outcome], int, int]:
        """On the writer thread: one transaction, one SAVEPOINT per request.

        The outcomes, and the file's sequence before and after: under the write lock, every
        position in between is one this batch wrote.
        """
        try:
            with transaction(conn, "BEGIN IMMEDIATE"):
                before = sequence(conn)
                outcomes = [self._append_in_savepoint(conn, request, recorded) for request in batch]
                after = sequence(conn)
        except BaseException:
            self._encoder.forget_uncommitted()
            raise
        self._encoder.committed()
        return outcomes, before, after

    def _append_in_savepoint(
        self, conn: sqlite3.Connection, request: _Append, recorded: float
    ) -> _Outcome:
        conn.execute("SAVEPOINT append")
        mark = self._encoder.mark()
        try:
            appended = _append_one(conn, self._encoder, request, recorded)
        except (EventStoreError, sqlite3.Error) as exc:
            if not conn.in_transaction:
                raise  # SQLite already rolled back the whole transaction: the batch fails as one
            self._encoder.forget_since(mark)
            conn.execute("ROLLBACK TO append")
            conn.execute("RELEASE append")
            if isinstance(exc, EventStoreError):
                return exc
            return unavailable(self._connections.path, exc)
        conn.execute("RELEASE append")
        return appended

    # --- stream management ---------------------------------------------------------------------

    async def set_stream_metadata(
        self, stream: str, *, max_age_seconds: int | None, max_count: int | None
    ) -> None:
        """Write retention into the stream's row, creating the row if needed.

        A stream with no events yet gets a row holding only its metadata, so retention set before
        the first append (as the database probe does) is in force from the first event.
        """

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO streams (name, last_revision, max_age_seconds, max_count) "
                "VALUES (?, -1, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "max_age_seconds = excluded.max_age_seconds, max_count = excluded.max_count",
                (stream, max_age_seconds, max_count),
            )

        await self._connections.write(write)

    async def delete_stream(self, stream: str, expected: Expected) -> None:
        """Hide every current event in one transaction; the check and the hiding see the same row."""

        def write(conn: sqlite3.Connection) -> None:
            with transaction(conn, "BEGIN IMMEDIATE"):
                row = stream_row(conn, stream)
                if row is not None and row.visible_revision is None and expected is StreamState.ANY:
                    return  # deleted already: again with ``any`` is a no-op, as on KurrentDB
                if row is None or row.visible_revision is None:
                    raise StreamNotFound(stream)
                if not row.allows(expected):
                    raise ConcurrencyConflict(stream, expected, row.visible_revision)
                conn.execute(
                    "UPDATE streams SET deleted = 1, truncate_before = ? WHERE name = ?",
                    (row.last_revision + 1, stream),
                )

        await self._connections.write(write)


def _append_one(
    conn: sqlite3.Connection, encoder: Encoder, request: _Append, recorded: float
) -> _Appended:
    stream, events, expected = request.stream, request.events, request.expected
    row = stream_row(conn, stream)
    stream_id = encoder.find_name(conn, stream)
    if events and stream_id is not None:
        replayed = _replayed_position(conn, request, row, stream_id)
        if replayed is not None:
            return replayed, None
    if not allows(row, expected):
        raise ConcurrencyConflict(stream, expected, None if row is None else row.visible_revision)
    if not events:
        return (0 if stream_id is None else _last_position(conn, stream_id)), None
    if stream_id is None:
        stream_id = encoder.name_id(conn, stream)
    first = 0 if row is None else row.last_revision + 1
    conn.executemany(
        _INSERT,
        [
            (
                stream_id,
                first + i,
                e.id.bytes,
                encoder.name_id(conn, e.type),
                encoder.metadata_id(conn, e.metadata),
                *encoder.pack(e.data),
                recorded,
                *encoder.digested(conn, e.type, e.data),
            )
            for i, e in enumerate(events)
        ],
    )
    conn.execute(
        "INSERT INTO streams (name, last_revision) VALUES (?, ?) ON CONFLICT (name) "
        "DO UPDATE SET last_revision = excluded.last_revision, deleted = 0",
        (stream, first + len(events) - 1),
    )
    return int(conn.execute("SELECT last_insert_rowid()").fetchone()[0]), first


def _recorded(
    batch: list[_Append], outcomes: list[_Outcome], recorded: float
) -> tuple[RecordedEvent, ...]:
    """The events a committed batch wrote, as a read of the file returns them, in log order.

    An append's events have consecutive positions ending at its outcome's, and consecutive
    revisions from the first it wrote; a replayed or empty append wrote none.
    """
    at = datetime.fromtimestamp(recorded, UTC)
    written: list[RecordedEvent] = []
    for request, outcome in zip(batch, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            continue
        last, first = outcome
        if first is None:
            continue
        start = last - len(request.events) + 1
        written.extend(
            RecordedEvent(
                id=event.id,
                type=event.type,
                data=event.data,
                metadata=event.metadata,
                stream=request.stream,
                revision=first + offset,
                position=start + offset,
                recorded_at=at,
            )
            for offset, event in enumerate(request.events)
        )
    return tuple(written)


def _last_position(conn: sqlite3.Connection, stream_id: int) -> int:
    # Within a stream positions rise with revisions, so the index on (stream, revision) finds it.
    row = conn.execute(
        "SELECT position FROM events WHERE stream_id = ? ORDER BY revision DESC LIMIT 1",
        (stream_id,),
    ).fetchone()
    return 0 if row is None else int(row[0])


def _replayed_position(
    conn: sqlite3.Connection, request: _Append, row: StreamRow | None, stream_id: int
) -> int | None:
    """The original position when this exact batch is stored already; conflict on a partial one.

    KurrentDB's rule: the ids must sit in the stream consecutively and in order, and
    ``expected`` must be ``ANY`` or what held before the original write.
    """
    ids = [event.id.bytes for event in request.events]
    found: list[tuple[bytes, int, int]] = []
    for start in range(0, len(ids), _ID_CHUNK):
        chunk = ids[start : start + _ID_CHUNK]
        marks = ",".join("?" * len(chunk))
        found += conn.execute(
            f"SELECT id, revision, position FROM events WHERE stream_id = ? AND id IN ({marks})",  # noqa: S608 - placeholders only
            (stream_id, *chunk),
        ).fetchall()
    if not found:
        return None
    found.sort(key=lambda hit: hit[1])
    first = found[0][1]
    same_batch = [hit[0] for hit in found] == ids and [hit[1] for hit in found] == list(
        range(first, first + len(ids))
    )
    expected, before = request.expected, first - 1
    revived_here = row is not None and row.truncate_before == first
    held_before = (
        expected == StreamState.ANY
        or (expected == StreamState.NO_STREAM and (before == -1 or revived_here))
        or (expected == StreamState.STREAM_EXISTS and before >= 0 and not revived_here)
        or (isinstance(expected, int) and expected == before)
    )
    if same_batch and held_before:
        return int(found[-1][2])
    raise ConcurrencyConflict(
        request.stream, expected, None if row is None else row.visible_revision
    )
