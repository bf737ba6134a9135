"""The outage spool: checks keep running while the event store is unreachable; nothing is lost.

``OutageBuffer.append`` writes straight to the store while the spool is empty. When the store is
unavailable — or while anything is still spooled, so per-stream order holds — the append goes to a
bounded FIFO on disk (its own SQLite file) instead, and one flusher task replays it in order once
the store answers again. Event ids are deterministic, so an append that reached the store before a
crash and is replayed from the spool afterwards is a no-op, never a duplicate.

Past ``max_events`` new appends are dropped: counted, and logged at error level every time.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final, Protocol, TypeVar
from uuid import UUID

import orjson
import structlog

from uptime_daemon.errors import (
    ConcurrencyConflict,
    EventStoreError,
    EventStoreUnavailable,
    StreamDeleted,
)
from uptime_daemon.store import EventStore, Expected, NewEvent, StreamState

log = structlog.get_logger(__name__)

FLUSH_BATCH: Final = 200
BACKOFF_SECONDS: Final = (0.2, 0.5, 1.0, 2.0, 5.0)
T = TypeVar("T")


class Delivered(StrEnum):
    """Where an append went."""

    STORED = "stored"
    SPOOLED = "spooled"
    """The store was unreachable: the append waits on disk and will be flushed in order."""
    DROPPED = "dropped"
    """The store was unreachable and the spool full or unwritable: counted and logged, not kept."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """The outcome of one append through the outage buffer."""

    delivered: Delivered
    position: int | None = None
    """The commit position, when stored."""


class Appender(Protocol):
    """Appends that survive a store outage (the check runner's view of the outage buffer)."""

    async def append(
        self, stream: str, events: Sequence[NewEvent], expected: Expected = StreamState.ANY
    ) -> Delivery:
        """Store, spool or (spool full) drop the append; raises only for a refused append."""
        ...


@dataclass(frozen=True, slots=True)
class SpooledAppend:
    """One append waiting for the store."""

    seq: int
    stream: str
    expected: Expected
    events: tuple[NewEvent, ...]


def _encode_expected(expected: Expected) -> str:
    return str(expected) if isinstance(expected, int) else expected.value


def _decode_expected(text: str) -> Expected:
    return int(text) if text.lstrip("-").isdigit() else StreamState(text)


def _encode_events(events: Sequence[NewEvent]) -> bytes:
    return orjson.dumps(
        [
            {
                "id": str(e.id),
                "type": e.type,
                "data": base64.b64encode(e.data).decode(),
                "metadata": base64.b64encode(e.metadata).decode(),
            }
            for e in events
        ]
    )


def _decode_events(blob: bytes) -> tuple[NewEvent, ...]:
    return tuple(
        NewEvent(
            id=UUID(item["id"]),
            type=item["type"],
            data=base64.b64decode(item["data"]),
            metadata=base64.b64decode(item["metadata"]),
        )
        for item in orjson.loads(blob)
    )


class Spool:
    """A bounded FIFO of appends in a SQLite file (one thread does all its I/O)."""

    def __init__(self, path: Path, max_events: int) -> None:
        """Use ``open``."""
        self.path = path
        self.max_events = max_events
        self.depth = 0
        """Events currently spooled."""
        self.dropped = 0
        """Events refused because the spool was full (or unwritable) since start."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool")
        self._conn: sqlite3.Connection | None = None

    @classmethod
    async def open(cls, path: Path, *, max_events: int) -> Spool:
        """Open (creating if needed); what a previous run left behind is kept, to be flushed."""
        spool = cls(path, max_events)
        spool.depth = await spool._run(spool._open)
        if spool.depth:
            log.warning("spool_recovered", events=spool.depth, path=str(path))
        return spool

    async def _run(self, fn: Callable[[], T]) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn)
        except sqlite3.Error as exc:
            raise EventStoreUnavailable(f"spool {self.path}: {exc}") from exc

    def _open(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS spool (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
            "stream TEXT NOT NULL, expected TEXT NOT NULL, count INTEGER NOT NULL, events BLOB NOT NULL)"
        )
        self._conn = conn
        return int(conn.execute("SELECT COALESCE(SUM(count), 0) FROM spool").fetchone()[0])

    async def put(self, stream: str, events: Sequence[NewEvent], expected: Expected) -> bool:
        """Keep an append for later; ``False`` (and counted) when the spool is full or unwritable."""
        if self.depth + len(events) > self.max_events:
            self.dropped += len(events)
            log.error(
                "spool_full_event_dropped",
                stream=stream,
                dropped_total=self.dropped,
                limit=self.max_events,
            )
            return False
        blob = _encode_events(events)

        def write() -> None:
            assert self._conn is not None  # noqa: S101
            self._conn.execute(
                "INSERT INTO spool (stream, expected, count, events) VALUES (?, ?, ?, ?)",
                (stream, _encode_expected(expected), len(events), blob),
            )

        try:
            await self._run(write)
        except EventStoreUnavailable as exc:
            self.dropped += len(events)
            log.error(  # noqa: TRY400 - the outage, not a traceback, is the news
                "spool_write_failed_event_dropped",
                stream=stream,
                error=str(exc),
                dropped_total=self.dropped,
            )
            return False
        self.depth += len(events)
        return True

    async def peek(self, limit: int = FLUSH_BATCH) -> list[SpooledAppend]:
        """The oldest ``limit`` appends, in order."""

        def read() -> list[SpooledAppend]:
            assert self._conn is not None  # noqa: S101
            rows = self._conn.execute(
                "SELECT seq, stream, expected, events FROM spool ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
            return [
                SpooledAppend(r[0], r[1], _decode_expected(r[2]), _decode_events(r[3]))
                for r in rows
            ]

        return await self._run(read)

    async def remove(self, entry: SpooledAppend) -> None:
        """Forget an append the store now holds."""

        def delete() -> None:
            assert self._conn is not None  # noqa: S101
            self._conn.execute("DELETE FROM spool WHERE seq = ?", (entry.seq,))

        await self._run(delete)
        self.depth -= len(entry.events)

    async def close(self) -> None:
        """Close the file; spooled appends stay on disk for the next start."""
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error, RuntimeError):
                await self._run(self._conn.close)
        self._executor.shutdown(wait=True)


class OutageBuffer:
    """Direct appends while the store answers; the spool, in order, while it does not."""

    def __init__(self, store: EventStore, spool: Spool) -> None:
        self._store = store
        self.spool = spool
        self._pending = asyncio.Event()
        if spool.depth:
            self._pending.set()
        self._drained = asyncio.Event()
        if not spool.depth:
            self._drained.set()

    async def append(
        self, stream: str, events: Sequence[NewEvent], expected: Expected = StreamState.ANY
    ) -> Delivery:
        """Straight to the store while the spool is empty; else (or when unreachable) the spool.

        ``ConcurrencyConflict`` and other refusals of a reachable store propagate.
        """
        if self.spool.depth == 0:
            try:
                position = await self._store.append(stream, events, expected)
            except EventStoreUnavailable as exc:
                log.warning("store_unavailable_spooling", stream=stream, error=str(exc))
            else:
                return Delivery(Delivered.STORED, position)
        if not await self.spool.put(stream, events, expected):
            return Delivery(Delivered.DROPPED)
        self._drained.clear()
        self._pending.set()
        return Delivery(Delivered.SPOOLED)

    async def run(self) -> None:
        """The flusher: replay the spool in order whenever it has something; never returns."""
        failures = 0
        while True:
            await self._pending.wait()
            try:
                drained = await self._flush_once()
            except EventStoreUnavailable as exc:
                delay = BACKOFF_SECONDS[min(failures, len(BACKOFF_SECONDS) - 1)]
                failures += 1
                log.info(
                    "spool_flush_waiting_for_store",
                    error=str(exc),
                    retry_in_seconds=delay,
                    spooled=self.spool.depth,
                )
                await asyncio.sleep(delay)
                continue
            failures = 0
            if drained:
                self._pending.clear()
                if self.spool.depth == 0:
                    self._drained.set()
                    log.info("spool_drained")

    async def _flush_once(self) -> bool:
        """Append everything spooled, oldest first; ``True`` when the spool is empty."""
        while entries := await self.spool.peek():
            for entry in entries:
                try:
                    await self._store.append(entry.stream, entry.events, entry.expected)
                except (ConcurrencyConflict, StreamDeleted) as exc:
                    # e.g. a spooled StreamCreated for a stream that exists by now: nothing to add.
                    log.info("spooled_append_superseded", stream=entry.stream, reason=str(exc))
                except EventStoreUnavailable:
                    raise
                except EventStoreError as exc:
                    self.spool.dropped += len(entry.events)
                    log.error("spooled_append_rejected", stream=entry.stream, error=str(exc))  # noqa: TRY400
                await self.spool.remove(entry)
        return True

    async def drain(self, timeout_seconds: float) -> bool:
        """Wait (bounded) for the spool to empty, e.g. at shutdown; ``True`` when it did."""
        try:
            await asyncio.wait_for(self._drained.wait(), timeout_seconds)
        except TimeoutError:
            log.warning("spool_not_drained", spooled=self.spool.depth)
            return False
        return True
