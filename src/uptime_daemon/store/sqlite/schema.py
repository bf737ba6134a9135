"""The versioned schema: its tables, and the position sequence its ``AUTOINCREMENT`` keeps.

Version 2 is the compact format (issue #18): an event row holds integers where version 1 held
strings. Stream names and event types are interned in ``names``; each distinct metadata value is
stored once in ``metadata``; the id is its 16 bytes; ``data`` is compressed with a zstd dictionary
trained on the file's own payloads (``dictionaries``; ``dictionary_id`` 0 means stored raw).
Version 3 adds each event's digest (``digest_key``, ``digest``): what the layer above extracted
from the payload at append time (``store.Digest``, the checks' facts in 21 bytes), its key interned
in ``names``, so a replay need not read the payload at all. Both are ``NULL`` for an event without
one; such events replay from their payloads, as every event did before.
``upgrade.py`` brings an older file here; this module only says what version 3 looks like.
"""

from __future__ import annotations

import sqlite3
from typing import Final

SCHEMA_VERSION: Final = 3
EVENTS: Final = "events"
"""The events table; ``sqlite_sequence`` keeps its highest position under this name."""

_EVENT_COLUMNS: Final = """(
    position      INTEGER PRIMARY KEY AUTOINCREMENT,
    stream_id     INTEGER NOT NULL,   -- names.id
    revision      INTEGER NOT NULL,
    id            BLOB    NOT NULL,   -- the event id's 16 bytes
    type_id       INTEGER NOT NULL,   -- names.id
    metadata_id   INTEGER NOT NULL,   -- metadata.id
    dictionary_id INTEGER NOT NULL,   -- dictionaries.id, or 0: data is stored raw
    data          BLOB    NOT NULL,
    recorded_at   REAL    NOT NULL,   -- Unix seconds, exactly the float version 1 stored
    digest_key    INTEGER,            -- names.id of the digest's key; both NULL: no digest
    digest        BLOB
)"""
DIGEST_COLUMNS: Final = ("digest_key INTEGER", "digest BLOB")
"""What version 3 added to version 2's events table (``ALTER TABLE … ADD COLUMN``)."""

EVENT_INDEXES: Final = (
    # Reads of one stream, expected-revision checks and scavenging walk (stream, revision).
    "CREATE UNIQUE INDEX events_stream_revision ON events (stream_id, revision)",
    # Idempotent appends look ids up: id first, so the lookup needs no stream; stream_id second
    # keeps version 1's UNIQUE (stream, id) for one byte or two per entry.
    "CREATE UNIQUE INDEX events_id ON events (id, stream_id)",
)

_SIDE_TABLES: Final = (
    """
    CREATE TABLE names (   -- stream names, event types, digest keys
        id   INTEGER PRIMARY KEY,
        name TEXT    NOT NULL UNIQUE
    )
    """,
    """
    CREATE TABLE metadata (
        id    INTEGER PRIMARY KEY,
        value BLOB    NOT NULL UNIQUE
    )
    """,
    """
    CREATE TABLE dictionaries (
        id    INTEGER PRIMARY KEY CHECK (id > 0),
        value BLOB    NOT NULL
    )
    """,
)

STREAMS: Final = """
    CREATE TABLE streams (
        name            TEXT    PRIMARY KEY,
        last_revision   INTEGER NOT NULL,
        truncate_before INTEGER NOT NULL DEFAULT 0,
        deleted         INTEGER NOT NULL DEFAULT 0,
        max_age_seconds INTEGER,
        max_count       INTEGER
    ) WITHOUT ROWID
"""
"""Unchanged since version 1: one row per stream, keyed by its name."""


def create_events_table(conn: sqlite3.Connection, name: str) -> None:
    """The events table under ``name`` (the upgrade fills it as ``events_next``, then renames it)."""
    conn.execute(f"CREATE TABLE {name} {_EVENT_COLUMNS}")


def create_side_tables(conn: sqlite3.Connection) -> None:
    """``names``, ``metadata`` and ``dictionaries``: what event rows refer to by integer id."""
    for statement in _SIDE_TABLES:
        conn.execute(statement)


def create(conn: sqlite3.Connection) -> None:
    """The whole current schema in an empty file (inside the caller's transaction)."""
    create_side_tables(conn)
    create_events_table(conn, EVENTS)
    for statement in EVENT_INDEXES:
        conn.execute(statement)
    conn.execute(STREAMS)
    set_version(conn, SCHEMA_VERSION)


def version(conn: sqlite3.Connection) -> int:
    """The schema version the file says it has (0: a new, empty file)."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def set_version(conn: sqlite3.Connection, value: int) -> None:
    """Record the schema version (a PRAGMA takes no bound parameters)."""
    conn.execute(f"PRAGMA user_version = {int(value)}")


def sequence(conn: sqlite3.Connection) -> int:
    """The highest position ever issued (survives deletes of the tail, unlike ``MAX(position)``)."""
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (EVENTS,)).fetchone()
    return 0 if row is None else int(row[0])
