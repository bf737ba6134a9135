"""Schema 3: each event's digest beside it, read back instead of its payload.

An older file's events get theirs as it is upgraded, resumably.
"""

from __future__ import annotations

import random
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import pytest
from structlog.testing import capture_logs

from tests.store.test_sqlite_compact import V1File, check_payload, user_version, write_v1
from uptime_daemon import events
from uptime_daemon.store import DigestRow, LogRow, NewEvent, read_digests
from uptime_daemon.store.sqlite import SCHEMA_VERSION, SqliteEventStore, migrate_file
from uptime_daemon.store.sqlite.codec import TRAIN_AFTER

HOOK = events.check_digest


def expected_rows(rows: list[LogRow]) -> list[DigestRow]:
    """What ``read_digest_rows`` must give for these events when every digest is stored."""
    found: list[DigestRow] = []
    for position, stream, revision, kind, data, at in rows:
        digest = HOOK(kind, data)
        if digest is None:
            found.append((position, stream, revision, kind, data, at, None, None))
        else:
            found.append((position, stream, revision, kind, None, at, *digest))
    return found


async def log_rows(store: SqliteEventStore) -> list[LogRow]:
    return await store.read_log_rows(after=None, stream_prefix=None, limit=10**9)


async def digest_rows(store: SqliteEventStore) -> list[DigestRow]:
    return await store.read_digest_rows(after=None, stream_prefix=None, limit=10**9)


async def write_mixed(store: SqliteEventStore, count: int) -> None:
    """Checks, a check that cannot be decoded, and events of other types, over a few streams."""
    rng = random.Random(3)
    start = datetime(2026, 12, 6, tzinfo=UTC)
    for i in range(count):
        service = f"svc-{i % 5}"
        if i % 17 == 3:
            batch = [NewEvent(uuid.uuid4(), "ServiceStatusChanged", b"{oops")]
        elif i % 11 == 5:
            batch = [NewEvent(uuid.uuid4(), "StreamCreated", b'{"n":1}')]
        else:
            data = check_payload(rng, service, start + timedelta(seconds=30 * i))
            batch = [NewEvent(uuid.uuid4(), "ServiceStatusChanged", data)]
        await store.append(f"service-uptime-{service}", batch)


async def test_appended_checks_are_read_back_as_their_digests(tmp_path: Path) -> None:
    """A check's row carries its digest and no payload; every other row its payload, as before."""
    store = await SqliteEventStore.open(tmp_path / "events.db", digest=HOOK)
    try:
        await write_mixed(store, 120)
        rows, digested = await log_rows(store), await digest_rows(store)
        assert digested == expected_rows(rows)
        with_digest = [row for row in digested if row[7] is not None]
        assert 0 < len(with_digest) < len(rows)  # the undecodable one and the others have none
        positions = [row[0] for row in with_digest]
        payloads = {row[0]: row[4] for row in rows}
        assert await store.read_payloads(positions) == {p: payloads[p] for p in positions}
        assert await store.read_payloads([10**9]) == {}  # not stored: simply absent
        prefixed = await store.read_digest_rows(
            after=positions[2], stream_prefix="service-uptime-svc-1", limit=7
        )
        assert (
            prefixed
            == [row for row in digested if row[0] > positions[2] and row[1].endswith("svc-1")][:7]
        )
    finally:
        await store.close()


async def test_a_store_without_the_digest_reads_every_payload(tmp_path: Path) -> None:
    store = await SqliteEventStore.open(tmp_path / "events.db")
    try:
        await write_mixed(store, 40)
        rows = await log_rows(store)
        assert await digest_rows(store) == [(*row, None, None) for row in rows]
        assert await read_digests(store, after=None, stream_prefix=None, limit=99) == [
            (*row, None, None) for row in rows
        ]
    finally:
        await store.close()


VERSION_2_EVENTS: Final = """
    CREATE TABLE events_v2 (
        position      INTEGER PRIMARY KEY AUTOINCREMENT,
        stream_id     INTEGER NOT NULL,   -- names.id
        revision      INTEGER NOT NULL,
        id            BLOB    NOT NULL,   -- the event id's 16 bytes
        type_id       INTEGER NOT NULL,   -- names.id
        metadata_id   INTEGER NOT NULL,   -- metadata.id
        dictionary_id INTEGER NOT NULL,   -- dictionaries.id, or 0: data is stored raw
        data          BLOB    NOT NULL,
        recorded_at   REAL    NOT NULL    -- Unix seconds, exactly the float version 1 stored
    )
"""
"""Version 2's events table exactly as it shipped (never imported from the code under test)."""
_V2_COLUMNS: Final = (
    "position, stream_id, revision, id, type_id, metadata_id, dictionary_id, data, recorded_at"
)


def as_version_2(path: Path) -> None:
    """A schema 2 file, as the build before this one left it: version 2's table, version 2."""
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute("BEGIN")
        issued = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        conn.execute(VERSION_2_EVENTS)
        conn.execute(f"INSERT INTO events_v2 SELECT {_V2_COLUMNS} FROM events")  # noqa: S608
        conn.execute("DROP TABLE events")
        conn.execute("ALTER TABLE events_v2 RENAME TO events")
        conn.execute("CREATE UNIQUE INDEX events_stream_revision ON events (stream_id, revision)")
        conn.execute("CREATE UNIQUE INDEX events_id ON events (id, stream_id)")
        conn.execute("DELETE FROM sqlite_sequence")
        conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('events', ?)", issued)
        conn.execute("PRAGMA user_version = 2")
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


async def version_2_file(tmp_path: Path, count: int) -> tuple[Path, list[LogRow]]:
    path = tmp_path / "events.db"
    store = await SqliteEventStore.open(path)
    try:
        await write_mixed(store, count)
        rows = await log_rows(store)
    finally:
        await store.close()
    as_version_2(path)
    return path, rows


async def test_a_version_2_file_gets_its_digests_on_open(tmp_path: Path) -> None:
    path, rows = await version_2_file(tmp_path, 300)
    assert user_version(path) == 2
    with capture_logs() as logs:
        store = await SqliteEventStore.open(path, digest=HOOK)
    try:
        assert await digest_rows(store) == expected_rows(rows)
        assert await log_rows(store) == rows
    finally:
        await store.close()
    assert user_version(path) == SCHEMA_VERSION == 3
    steps = [e["event"] for e in logs if e["event"].startswith("store_")]
    assert steps[-3:] == ["store_digested", "store_vacuuming", "store_vacuumed"]
    with sqlite3.connect(path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "migration_progress" not in tables


async def test_an_interrupted_digest_fill_resumes_where_it_stopped(tmp_path: Path) -> None:
    """A progress callback raising after two chunks stops it; the next run does the rest once."""
    path, rows = await version_2_file(tmp_path, 300)
    seen: list[tuple[int, int]] = []

    class Interrupted(Exception):
        pass

    def stop_after_two(done: int, total: int) -> None:
        seen.append((done, total))
        if len(seen) == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        migrate_file(path, progress=stop_after_two, chunk=50, digest=HOOK)
    assert seen == [(50, len(rows)), (100, len(rows))]
    assert user_version(path) == 3
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT phase, copied FROM migration_progress").fetchone() == (
            "digest",
            100,
        )
        filled = conn.execute("SELECT MAX(position) FROM events WHERE digest IS NOT NULL")
        assert filled.fetchone()[0] <= rows[99][0]
    # Meanwhile the file is usable: rows not digested yet are read with their payloads.
    store = await SqliteEventStore.open(path)
    try:
        partial = await digest_rows(store)
        assert partial[:100] == expected_rows(rows)[:100]
        assert partial[100:] == [(*row, None, None) for row in rows[100:]]
    finally:
        await store.close()
    resumed: list[int] = []
    migrate_file(path, progress=lambda done, _: resumed.append(done), chunk=50, digest=HOOK)
    assert resumed[0] == 150
    assert resumed[-1] == len(rows)
    store = await SqliteEventStore.open(path)
    try:
        assert await digest_rows(store) == expected_rows(rows)
    finally:
        await store.close()


async def test_an_upgrade_without_the_digest_leaves_the_fill_to_the_next_open(
    tmp_path: Path,
) -> None:
    """A process not given the digest upgrades the file and uses it; the daemon fills it later."""
    path, rows = await version_2_file(tmp_path, 60)
    store = await SqliteEventStore.open(path)
    try:
        assert await digest_rows(store) == [(*row, None, None) for row in rows]
        await store.append("after", [NewEvent(uuid.uuid4(), "T", b"{}")])
    finally:
        await store.close()
    assert user_version(path) == 3
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT phase FROM migration_progress").fetchone() == ("digest",)
    store = await SqliteEventStore.open(path, digest=HOOK)
    try:
        assert (await digest_rows(store))[:-1] == expected_rows(rows)
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "migration_progress" not in tables


async def test_a_version_1_file_is_digested_as_it_is_copied(tmp_path: Path) -> None:
    old: V1File = write_v1(tmp_path / "events.db", 2 * TRAIN_AFTER)
    migrate_file(old.path, digest=HOOK)
    store = await SqliteEventStore.open(old.path)
    try:
        rows = await log_rows(store)
        assert [row[0] for row in rows] == [row[0] for row in old.events]
        assert await digest_rows(store) == expected_rows(rows)
        assert sum(row[7] is not None for row in await digest_rows(store)) > TRAIN_AFTER
    finally:
        await store.close()
