"""Closed days of hourly buckets on disk, beside the snapshot, so memory holds only the recent ones.

At 10,000 services the projection's hours held for ``projector.retention_days`` (90: 2,160 an
hour each) were 133 bytes a service-hour packed: 2.7 GiB. Only the last hours are written to (the
current one and the one before); windows read their older hours once and keep what they summed
(``Hours.add_window``). So the projector moves every record's whole days before its last three
hours into this file (``runner.cold_before_day``, ``Hours.evict``), one blob a day (``Hours.to_bytes``'s format), and
a record keeps only which days are here and under which id.

A blob is never changed: a day written to again (a late check, a rollup, the retention cutting
into it) is read back into memory and its blob let go (``release``); the next eviction writes a new
one. What the file must agree with is the snapshot, which names the ids each record holds:

* ids grow (``put``), and a new blob reaches the file (``Flush``) in the same thread call that
  writes the snapshot naming it, before the snapshot's rename: a crash between the two leaves blobs
  no snapshot names;
* a released blob is still named by the snapshot on disk until the next one is written, so it is
  deleted only with the flush after that (``_carried``);
* at load, every id the snapshot names must be here (``missing``), or the snapshot is not used:
  the projection is folded from zero;
* a projector's first write keeps only what its projection names (``Flush.keep``): what a crash
  left, or what a projection folded from zero no longer names, goes then. Only a projector that
  writes snapshots writes here; one that only reads them (an offline command) deletes nothing.

The file is a cache of the log like the snapshot: losing it costs a replay, never an event.
"""

from __future__ import annotations

import sqlite3
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

SUFFIX: Final = ".hours.db"
"""The file's name beside the snapshot: ``projection.json`` → ``projection.hours.db``."""
_SCHEMA: Final = "CREATE TABLE IF NOT EXISTS days (id INTEGER PRIMARY KEY, data BLOB NOT NULL)"


class ColdDaysError(RuntimeError):
    """A day the projection names cannot be read from the file.

    Deleted or damaged under the daemon: ``uptime-daemon replay`` rebuilds both from the log.
    """


def path_beside(snapshot: Path) -> Path:
    """Where the cold days of the snapshot at ``snapshot`` live."""
    return snapshot.with_suffix(SUFFIX)


@dataclass(frozen=True, slots=True)
class Flush:
    """What one snapshot's write adds to the file and deletes from it."""

    added: dict[int, bytes]
    deleted: tuple[int, ...]
    keep: tuple[array[int], ...] | None = None
    """On a projector's first write: every blob not in these is deleted (left by a crash, or by
    the projection this one replaced)."""


class ColdDays:
    """Immutable blobs by id in a SQLite file: written with the snapshot, read on the event loop.

    ``put``, ``release``, ``get`` and ``flush``/``flushed`` are called from the projector's thread
    (the event loop's); ``write`` runs in a worker thread with a connection of its own, while the
    projector folds nothing (it awaits the snapshot's save).
    """

    def __init__(self, path: Path) -> None:
        """Open (or create) the file; ids continue after the highest one in it."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._reader = _connect(path)
        row = self._reader.execute("SELECT max(id) FROM days").fetchone()
        self._next = (row[0] or 0) + 1
        self._pending: dict[int, bytes] = {}
        """Blobs put since the last flush: not in the file yet."""
        self._freed: list[int] = []
        """Ids in the file let go since the last flush: the snapshot on disk still names them."""
        self._carried: tuple[int, ...] = ()
        """Ids let go before the last flush: no snapshot on disk names them any more."""
        self._writer: sqlite3.Connection | None = None

    def put(self, data: bytes) -> int:
        """Keep ``data`` under a new id (in memory until the next flush)."""
        blob_id = self._next
        self._next += 1
        self._pending[blob_id] = data
        return blob_id

    def get(self, blob_id: int) -> bytes:
        """The blob under ``blob_id``; ``ColdDaysError`` when the file has lost it."""
        data = self._pending.get(blob_id)
        if data is not None:
            return data
        try:
            row = self._reader.execute("SELECT data FROM days WHERE id = ?", (blob_id,)).fetchone()
        except sqlite3.Error as exc:
            raise ColdDaysError(f"{self.path}: day {blob_id} unreadable: {exc}") from exc
        if row is None:
            raise ColdDaysError(f"{self.path}: day {blob_id} is missing")
        return bytes(row[0])

    def release(self, blob_id: int) -> None:
        """Nothing in memory names ``blob_id`` any more."""
        if self._pending.pop(blob_id, None) is None:
            self._freed.append(blob_id)

    def flush(self, keep: Iterable[array[int]] | None = None) -> Flush:
        """What the next snapshot's write must do to the file first (``write``, then ``flushed``).

        ``keep``: on a projector's first flush, the ids its projection names (pending ones too).
        """
        kept = None if keep is None else (*keep, array("q", self._freed))
        return Flush(dict(self._pending), self._carried, kept)

    def write(self, flush: Flush) -> None:
        """Add and delete in one durable transaction (in a worker thread)."""
        if not flush.added and not flush.deleted and flush.keep is None:
            return
        if self._writer is None:
            self._writer = _connect(self.path)
        with self._writer:
            if flush.keep is not None:
                _fill(self._writer, (blob for ids in flush.keep for blob in ids))
                self._writer.execute("DELETE FROM days WHERE id NOT IN (SELECT id FROM temp.ids)")
                self._writer.execute("DROP TABLE temp.ids")
            self._writer.executemany(
                "DELETE FROM days WHERE id = ?", [(blob_id,) for blob_id in flush.deleted]
            )
            self._writer.executemany(
                "INSERT OR REPLACE INTO days (id, data) VALUES (?, ?)", flush.added.items()
            )
        if flush.keep is not None:
            _shrink(self._writer)

    def flushed(self, flush: Flush) -> None:
        """The snapshot naming ``flush``'s blobs is on disk: they are read from the file now."""
        for blob_id in flush.added:
            self._pending.pop(blob_id, None)
        self._carried = tuple(self._freed)
        self._freed = []

    def missing(self, named: Iterable[int]) -> int:
        """How many of the ids ``named`` (a snapshot's) the file does not hold.

        The ids go through a temporary table rather than a set: ~880,000 of them at 10,000
        services holding 90 days, which as Python ints in a set are ~60 MB for a moment.
        """
        with self._reader:
            _fill(self._reader, named)
            (count,) = self._reader.execute(
                "SELECT count(*) FROM temp.ids WHERE id NOT IN (SELECT id FROM days)"
            ).fetchone()
            self._reader.execute("DROP TABLE temp.ids")
        _shrink(self._reader)
        return int(count)

    def bytes_on_disk(self) -> int:
        """The file's size with its write-ahead log."""
        wal = self.path.with_name(self.path.name + "-wal")
        return sum(p.stat().st_size for p in (self.path, wal) if p.exists())

    def close(self) -> None:
        """Close both connections."""
        self._reader.close()
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _fill(connection: sqlite3.Connection, ids: Iterable[int]) -> None:
    """``ids`` into the connection's temporary table ``ids`` (emptied first; dropped after use)."""
    connection.execute("CREATE TEMP TABLE IF NOT EXISTS ids (id INTEGER PRIMARY KEY)")
    connection.execute("DELETE FROM temp.ids")
    connection.executemany("INSERT OR IGNORE INTO temp.ids (id) VALUES (?)", ((i,) for i in ids))


def _shrink(connection: sqlite3.Connection) -> None:
    """Give back the pages the temporary table held (``PRAGMA shrink_memory``).

    ~880,000 ids at 10,000 services holding 90 days: SQLite kept their pages cached in the
    connection once the table was emptied. With them given back, 2,000 services read and written
    in one process held 18.6 MiB after the start's check instead of 20.7, and 20.3 after the first
    write instead of 24.4; at 10,000 services the first write's rise in RSS went from 17 to 9 MiB
    (``bench/scale.py --history-days 89``, AMD EPYC).
    """
    connection.execute("PRAGMA shrink_memory")


def _connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute(_SCHEMA)
    return connection
