"""Bringing a file to the current schema on open: create it, or upgrade version 1 in place.

The version 1 → 2 upgrade rewrites every event, so on a large file it takes a while and must
survive being stopped. It copies the log in chunks of positions into ``events_next``, each chunk
its own transaction that also moves the progress row (``migration_progress``): a killed process
resumes after the last committed chunk, never copies an event twice and never loses one, and the
version 1 table stays whole and readable until the swap. The swap (drop the old table, rename the
new one, build its indexes, carry the ``AUTOINCREMENT`` sequence over so positions are never
reused, set ``user_version``) is one transaction. Then ``VACUUM`` gives the space back: the old
rows are gone but their pages would stay in the file. The progress row says "vacuum" until that
is done, so an interrupted VACUUM is run again on the next open.

Version 2 → 3 adds the digest columns (an instant ``ALTER TABLE``), then fills them for the events
already stored (phase "digest", between the swap and the VACUUM when coming from version 1): chunk
by chunk, each its own transaction moving the progress row, so it resumes as the copy does. Only a
process given the ``Digest`` (the daemon and ``uptime-daemon upgrade-store`` always are) can fill
them: one without leaves the phase (and the VACUUM after it) to the next that has it, and uses the
file meanwhile; an event without its digest replays from its payload, as before.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final
from uuid import UUID

import structlog

from uptime_daemon.errors import EventStoreUnavailable
from uptime_daemon.store import Digest
from uptime_daemon.store.sqlite import schema
from uptime_daemon.store.sqlite.codec import (
    TRAIN_AFTER,
    Decoder,
    Encoder,
    store_dictionary,
    train,
)
from uptime_daemon.store.sqlite.connection import BUSY_TIMEOUT_SECONDS, transaction, unavailable

# The package's name, as the other modules of the store log under.
log = structlog.get_logger(__package__)

CHUNK: Final = 20_000
"""Events copied per transaction: one log line and one progress step each."""
Progress = Callable[[int, int], None]
"""Called after each committed chunk with (events copied so far, events to copy in all)."""

VERSION_1_DDL: Final = (
    """
    CREATE TABLE events (
        position    INTEGER PRIMARY KEY AUTOINCREMENT,
        stream      TEXT    NOT NULL,
        revision    INTEGER NOT NULL,
        id          TEXT    NOT NULL,
        type        TEXT    NOT NULL,
        data        BLOB    NOT NULL,
        metadata    BLOB    NOT NULL,
        recorded_at REAL    NOT NULL,
        UNIQUE (stream, revision),
        UNIQUE (stream, id)
    )
    """,
    """
    CREATE TABLE streams (
        name            TEXT    PRIMARY KEY,
        last_revision   INTEGER NOT NULL,
        truncate_before INTEGER NOT NULL DEFAULT 0,
        deleted         INTEGER NOT NULL DEFAULT 0,
        max_age_seconds INTEGER,
        max_count       INTEGER
    ) WITHOUT ROWID
    """,
)
"""Schema version 1 exactly as the build before it created it: what this module upgrades from
(kept so tests and ``bench/storage.py`` can build such a file, never executed here)."""
_NEXT: Final = "events_next"
_PROGRESS: Final = """
    CREATE TABLE migration_progress (
        id             INTEGER PRIMARY KEY CHECK (id = 1),
        phase          TEXT    NOT NULL,   -- 'copy', then 'digest', then 'vacuum'
        copied_through INTEGER NOT NULL,   -- highest position copied (digested)
        copied         INTEGER NOT NULL,
        total          INTEGER NOT NULL
    )
"""
_COPY: Final = 1
"""The version whose events are copied into a new table."""
_ADD_DIGESTS: Final = 2
"""The version whose table gains the digest columns in place."""
_INSERT_NEXT: Final = (
    f"INSERT INTO {_NEXT} (position, stream_id, revision, id, type_id, metadata_id, "  # noqa: S608 - a constant
    "dictionary_id, data, recorded_at, digest_key, digest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def migrate(
    conn: sqlite3.Connection,
    *,
    path: Path,
    progress: Progress | None = None,
    chunk: int = CHUNK,
    digest: Digest | None = None,
) -> None:
    """Bring the file at ``path`` to ``SCHEMA_VERSION``; refuse a file from a newer build.

    Safe to run from several processes at once: every step re-reads the version and the progress
    under the write lock, so only one of them does each piece of work.
    """
    _refuse_newer(schema.version(conn), path)
    if schema.version(conn) == 0:
        _create(conn, path)
    if schema.version(conn) == _COPY:
        _upgrade_v1(conn, path=path, progress=progress, chunk=chunk, digest=digest)
    if schema.version(conn) == _ADD_DIGESTS:
        _add_digest_columns(conn, path)
    if _phase(conn) == "digest":
        _fill_digests(conn, path=path, progress=progress, chunk=chunk, digest=digest)
    if _phase(conn) == "vacuum":
        _vacuum(conn, path)


def migrate_file(
    path: Path,
    *,
    progress: Progress | None = None,
    chunk: int = CHUNK,
    digest: Digest | None = None,
) -> None:
    """Upgrade the store file at ``path`` now, outside the daemon (for a CLI command).

    Blocking: call it from a thread (``asyncio.to_thread``) in async code. Raises
    ``EventStoreUnavailable`` for a missing or unreadable file, or one from a newer build.
    """
    if not path.is_file():
        raise EventStoreUnavailable(f"sqlite {path}: no such file")
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_SECONDS)
    except sqlite3.Error as exc:
        raise unavailable(path, exc) from exc
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        migrate(conn, path=path, progress=progress, chunk=chunk, digest=digest)
    except sqlite3.Error as exc:
        raise unavailable(path, exc) from exc
    finally:
        conn.close()


def _refuse_newer(version: int, path: Path) -> None:
    if version > schema.SCHEMA_VERSION:
        raise EventStoreUnavailable(
            f"sqlite {path}: schema version {version} is newer than this build "
            f"understands ({schema.SCHEMA_VERSION}); upgrade uptime-daemon"
        )


def _create(conn: sqlite3.Connection, path: Path) -> None:
    """The current schema in a new file, unless another process created one meanwhile."""
    with transaction(conn, "BEGIN IMMEDIATE"):
        version = schema.version(conn)
        _refuse_newer(version, path)
        if version == 0:
            schema.create(conn)


def _phase(conn: sqlite3.Connection) -> str | None:
    """The upgrade's phase, or ``None`` when no upgrade is under way (the usual case, one lookup)."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'migration_progress'"
    ).fetchone()
    if exists is None:
        return None
    row = conn.execute("SELECT phase FROM migration_progress").fetchone()
    return None if row is None else str(row[0])


# --- version 1 → 2 ---------------------------------------------------------------------------------


def _upgrade_v1(
    conn: sqlite3.Connection,
    *,
    path: Path,
    progress: Progress | None,
    chunk: int,
    digest: Digest | None,
) -> None:
    """Copy chunk after chunk until the log is all copied, then swap in the same transaction.

    With a ``Digest``, events are digested as they are copied; the digest phase after the swap
    then finds only those copied by a process without one (if any) still to fill.
    """
    _begin_v1(conn, path)
    encoder = Encoder(digest)
    encoder.load_dictionary(conn)
    _in_chunks(
        conn,
        encoder,
        path=path,
        progress=progress,
        ongoing=lambda: schema.version(conn) == _COPY,
        step=lambda: _copy_chunk(conn, encoder, chunk),
        finish=lambda: _swap(conn),
        events=("store_migrating", "store_migrated"),
        from_version=_COPY,
        to_version=schema.SCHEMA_VERSION,
    )


def _in_chunks(
    conn: sqlite3.Connection,
    encoder: Encoder,
    *,
    path: Path,
    progress: Progress | None,
    ongoing: Callable[[], bool],
    step: Callable[[], tuple[int, int, int]],
    finish: Callable[[], object],
    events: tuple[str, str],
    **fields: object,
) -> None:
    """One phase of an upgrade, a chunk per transaction; logged and reported chunk by chunk.

    ``step`` moves one chunk and says ``(done, total, moved)``; when it moves nothing, ``finish``
    ends the phase in that same transaction. The copy and the digest fill differ only in these.
    Each transaction first re-checks ``ongoing`` under the write lock: another process may have
    finished the phase meanwhile, and then this one stops.
    """
    doing, did = events
    started, moved_here = time.perf_counter(), 0
    while True:
        with transaction(conn, "BEGIN IMMEDIATE"):
            if not ongoing():
                return
            done, total, moved = step()
            if moved == 0:
                finish()
        encoder.committed()
        if moved == 0:
            log.info(
                did,
                path=str(path),
                events=done,
                duration_seconds=round(time.perf_counter() - started, 3),
                **fields,
            )
            return
        moved_here += moved
        elapsed = time.perf_counter() - started
        log.info(
            doing,
            path=str(path),
            done=done,
            total=total,
            events_per_second=round(moved_here / elapsed) if elapsed else None,
            **fields,
        )
        if progress is not None:
            progress(done, total)


def _begin_v1(conn: sqlite3.Connection, path: Path) -> None:
    """Create the new tables and the progress row, and train the dictionary, once per file."""
    with transaction(conn, "BEGIN IMMEDIATE"):
        if schema.version(conn) != _COPY or _phase(conn) is not None:
            return  # done meanwhile, or resuming
        total = int(conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])
        log.info("store_migration_started", path=str(path), from_version=_COPY, total=total)
        schema.create_side_tables(conn)
        schema.create_events_table(conn, _NEXT)
        conn.execute(_PROGRESS)
        conn.execute(
            "INSERT INTO migration_progress (id, phase, copied_through, copied, total) "
            "VALUES (1, 'copy', 0, 0, ?)",
            (total,),
        )
        if total >= TRAIN_AFTER:
            dictionary = train(_sample_payloads(conn, TRAIN_AFTER))
            if dictionary is not None:
                store_dictionary(conn, dictionary)


def _sample_payloads(conn: sqlite3.Connection, count: int) -> list[bytes]:
    """``count`` payloads spread evenly over the whole log (one key lookup each, no scan)."""
    low, high = conn.execute("SELECT MIN(position), MAX(position) FROM events").fetchone()
    step = max(1, (high - low + 1) // count)
    samples = []
    for start in range(low, high + 1, step):
        row = conn.execute(
            "SELECT data FROM events WHERE position >= ? ORDER BY position LIMIT 1", (start,)
        ).fetchone()
        samples.append(bytes(row[0]))
    return samples[:count]


def _copy_chunk(conn: sqlite3.Connection, encoder: Encoder, chunk: int) -> tuple[int, int, int]:
    """Copy the next ``chunk`` events and move the progress row: (done, total, copied now)."""
    through, done, total = conn.execute(
        "SELECT copied_through, copied, total FROM migration_progress"
    ).fetchone()
    rows = conn.execute(
        "SELECT position, stream, revision, id, type, data, metadata, recorded_at FROM events "
        "WHERE position > ? ORDER BY position LIMIT ?",
        (through, chunk),
    ).fetchall()
    if not rows:
        return done, total, 0
    conn.executemany(
        _INSERT_NEXT,
        [
            (
                position,
                encoder.name_id(conn, stream),
                revision,
                UUID(uid).bytes,
                encoder.name_id(conn, kind),
                encoder.metadata_id(conn, bytes(metadata)),
                *encoder.pack(bytes(data)),
                recorded,
                *encoder.digested(conn, kind, bytes(data)),
            )
            for position, stream, revision, uid, kind, data, metadata, recorded in rows
        ],
    )
    done += len(rows)
    conn.execute(
        "UPDATE migration_progress SET copied_through = ?, copied = ?",
        (rows[-1][0], done),
    )
    return done, total, len(rows)


def _swap(conn: sqlite3.Connection) -> None:
    """Everything is copied: the new table takes the old one's name, indexes and sequence."""
    issued = schema.sequence(conn)
    conn.execute(f"DROP TABLE {schema.EVENTS}")
    conn.execute(f"ALTER TABLE {_NEXT} RENAME TO {schema.EVENTS}")
    for statement in schema.EVENT_INDEXES:
        conn.execute(statement)
    conn.execute("DELETE FROM sqlite_sequence WHERE name IN (?, ?)", (schema.EVENTS, _NEXT))
    conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (schema.EVENTS, issued))
    _start_digest_phase(conn)
    schema.set_version(conn, schema.SCHEMA_VERSION)


# --- version 2 → 3 ---------------------------------------------------------------------------------


def _add_digest_columns(conn: sqlite3.Connection, path: Path) -> None:
    """Add the (empty) digest columns and the progress row: version 3 from here on."""
    with transaction(conn, "BEGIN IMMEDIATE"):
        if schema.version(conn) != _ADD_DIGESTS:
            return  # another process did it meanwhile
        log.info("store_migration_started", path=str(path), from_version=_ADD_DIGESTS)
        for column in schema.DIGEST_COLUMNS:
            conn.execute(f"ALTER TABLE {schema.EVENTS} ADD COLUMN {column}")
        conn.execute(_PROGRESS)
        conn.execute(
            "INSERT INTO migration_progress (id, phase, copied_through, copied, total) "
            "VALUES (1, 'digest', 0, 0, 0)"
        )
        _start_digest_phase(conn)
        schema.set_version(conn, schema.SCHEMA_VERSION)


def _start_digest_phase(conn: sqlite3.Connection) -> None:
    """Point the progress row at the events still without a digest (inside a transaction)."""
    total = conn.execute("SELECT COUNT(*) FROM events WHERE digest IS NULL").fetchone()
    conn.execute(
        "UPDATE migration_progress SET phase = 'digest', copied_through = 0, copied = 0, total = ?",
        (int(total[0]),),
    )


def _fill_digests(
    conn: sqlite3.Connection,
    *,
    path: Path,
    progress: Progress | None,
    chunk: int,
    digest: Digest | None,
) -> None:
    """Digest the stored events chunk by chunk (resumable), then hand over to the VACUUM."""
    if digest is None:  # left for a process that has it; meanwhile payloads are what replays
        return
    encoder, decoder = Encoder(digest), Decoder()
    _in_chunks(
        conn,
        encoder,
        path=path,
        progress=progress,
        ongoing=lambda: _phase(conn) == "digest",
        step=lambda: _digest_chunk(conn, encoder, decoder, chunk),
        finish=lambda: conn.execute("UPDATE migration_progress SET phase = 'vacuum'"),
        events=("store_digesting", "store_digested"),
    )


def _digest_chunk(
    conn: sqlite3.Connection, encoder: Encoder, decoder: Decoder, chunk: int
) -> tuple[int, int, int]:
    """Digest the next ``chunk`` events without one; move the progress row: (done, total, now)."""
    through, done, total = conn.execute(
        "SELECT copied_through, copied, total FROM migration_progress"
    ).fetchone()
    rows = conn.execute(
        f"SELECT position, type_id, dictionary_id, data FROM {schema.EVENTS} "  # noqa: S608 - a constant
        "WHERE position > ? AND digest IS NULL ORDER BY position LIMIT ?",
        (through, chunk),
    ).fetchall()
    if not rows:
        return done, total, 0
    updates = []
    for position, type_id, dictionary_id, data in rows:
        kind = decoder.name(conn, type_id)
        key_id, packed = encoder.digested(conn, kind, decoder.payload(conn, dictionary_id, data))
        if packed is not None:
            updates.append((key_id, packed, position))
    conn.executemany(
        f"UPDATE {schema.EVENTS} SET digest_key = ?, digest = ? WHERE position = ?",  # noqa: S608 - a constant
        updates,
    )
    done += len(rows)
    conn.execute(
        "UPDATE migration_progress SET copied_through = ?, copied = ?", (rows[-1][0], done)
    )
    return done, total, len(rows)


def _vacuum(conn: sqlite3.Connection, path: Path) -> None:
    """Give the old table's pages back to the file system, then forget the upgrade."""
    before = _file_bytes(path)
    started = time.perf_counter()
    log.info("store_vacuuming", path=str(path), file_bytes=before)
    conn.execute("VACUUM")
    conn.execute("DROP TABLE IF EXISTS migration_progress")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    log.info(
        "store_vacuumed",
        path=str(path),
        file_bytes_before=before,
        file_bytes=_file_bytes(path),
        duration_seconds=round(time.perf_counter() - started, 3),
    )


def _file_bytes(path: Path) -> int:
    """The database file and its WAL, as the disk sees them."""
    wal = path.with_name(path.name + "-wal")
    return sum(each.stat().st_size for each in (path, wal) if each.exists())
