"""The compact SQLite format (schema 2): the in-place upgrade from version 1, and what it saves.

Version 1 files are built here from the frozen version 1 DDL (copied below as it shipped, never
imported from the code under test), so the upgrade is checked against the real old format.
"""

from __future__ import annotations

import asyncio
import random
import selectors
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import orjson
import pytest
from structlog.testing import capture_logs

from uptime_daemon import events
from uptime_daemon.errors import EventStoreUnavailable
from uptime_daemon.store import NewEvent, RecordedEvent
from uptime_daemon.store.sqlite import SCHEMA_VERSION, SqliteEventStore, migrate_file
from uptime_daemon.store.sqlite.codec import TRAIN_AFTER
from uptime_daemon.store.sqlite.upgrade import VERSION_1_DDL as V1_DDL

METADATA: Final = b'{"schemaVersion":2,"producer":"uptime-daemon"}'
START: Final = datetime(2026, 12, 6, 19, 0, tzinfo=UTC)

V1Row = tuple[int, str, int, str, str, bytes, bytes, float]
"""``(position, stream, revision, id, type, data, metadata, recorded_at)`` as version 1 stored it."""


@dataclass(frozen=True, slots=True)
class V1File:
    path: Path
    events: list[V1Row]
    streams: list[tuple[object, ...]]
    sequence: int


def check_payload(rng: random.Random, service: str, at: datetime) -> bytes:
    """A ``ServiceStatusChanged`` body shaped like the daemon's, with its varying fields varied."""
    ok = rng.random() > 0.05
    stamp = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return orjson.dumps(
        {
            "serviceName": service,
            "status": "up" if ok else "down",
            "timestamp": stamp,
            "duration": 0,
            "metadata": {"responseTime": rng.randint(3, 900), "performanceGrade": "excellent"},
            "eventId": f"evt_{int(at.timestamp() * 1000)}_{rng.getrandbits(24):06x}",
            "schemaVersion": 2,
            "previousStatus": None,
            "changed": rng.random() < 0.01,
            "instance": "vm",
            "location": "default",
            "scheduledAt": stamp,
            "intervalMs": 30000,
            "timeoutMs": 5000,
            "quorum": {"k": 1, "of": ["default"]},
            "probe": {
                "kind": "http",
                "ok": ok,
                "reason": None if ok else "timeout",
                "detail": "200 OK" if ok else "no answer within 5 s",
                "httpStatus": 200 if ok else None,
                "phases": {
                    "connect": round(rng.uniform(0.0005, 0.05), 6),
                    "first_byte": round(rng.uniform(0.0005, 0.2), 6),
                    "body": round(rng.uniform(0.00001, 0.001), 6),
                },
            },
        }
    )


def v1_events(count: int, seed: int = 7) -> Iterator[tuple[str, str, bytes, bytes, float]]:
    """``(stream, type, data, metadata, recorded_at)`` for ``count`` events over a few streams."""
    rng = random.Random(seed)
    services = [f"svc-{i}" for i in range(40)] + ["ünïcode-☃"]
    for i in range(count):
        at = START + timedelta(microseconds=i * 30_001_337 + rng.randint(0, 999_999))
        recorded = at.timestamp()
        if i % 500 == 7:
            yield "system-health-check", "HealthChecked", b"{}", b"", recorded
            continue
        service = services[i % len(services)]
        metadata = METADATA if i % 97 else orjson.dumps({"correlation": i})
        if i < len(services):
            yield f"service-uptime-{service}", "StreamCreated", b'{"n":1}', METADATA, recorded
        else:
            data = check_payload(rng, service, at)
            yield f"service-uptime-{service}", "ServiceStatusChanged", data, metadata, recorded


def write_v1(path: Path, count: int) -> V1File:
    """A version 1 file: gaps in positions, a scavenged tail, soft deletes and retention rows."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    for statement in V1_DDL:
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    revisions: dict[str, int] = {}
    rows = []
    for stream, kind, data, metadata, recorded in v1_events(count):
        revision = revisions[stream] = revisions.get(stream, -1) + 1
        rows.append((stream, revision, str(uuid.uuid4()), kind, data, metadata, recorded))
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO events (stream, revision, id, type, data, metadata, recorded_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    conn.executemany(
        "INSERT INTO streams (name, last_revision) VALUES (?, ?)", sorted(revisions.items())
    )
    # What a scavenge leaves: holes, and a deleted tail the sequence still remembers.
    conn.execute("DELETE FROM events WHERE stream = 'system-health-check' AND revision < 2")
    conn.execute("DELETE FROM events WHERE position > (SELECT MAX(position) - 3 FROM events)")
    conn.execute(
        "UPDATE streams SET deleted = 1, truncate_before = last_revision + 1 "
        "WHERE name = 'service-uptime-svc-3'"
    )
    conn.execute(
        "UPDATE streams SET max_age_seconds = 3600, truncate_before = 2 "
        "WHERE name = 'system-health-check'"
    )
    conn.execute("UPDATE streams SET max_count = 5 WHERE name = 'service-uptime-svc-4'")
    conn.execute(
        "INSERT INTO streams (name, last_revision, max_count) VALUES ('metadata-only', -1, 9)"
    )
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    file = V1File(path, *_snapshot_v1(conn))
    conn.close()
    return file


def _snapshot_v1(conn: sqlite3.Connection) -> tuple[list[V1Row], list[tuple[object, ...]], int]:
    events = conn.execute(
        "SELECT position, stream, revision, id, type, data, metadata, recorded_at "
        "FROM events ORDER BY position"
    ).fetchall()
    return events, streams_rows(conn), sequence(conn)


def streams_rows(conn: sqlite3.Connection) -> list[tuple[object, ...]]:
    return conn.execute("SELECT * FROM streams ORDER BY name").fetchall()


def sequence(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()[0])


def as_v1(event: RecordedEvent) -> V1Row:
    """A read event in version 1's row shape, ``recorded_at`` back to Unix seconds."""
    return (
        event.position,
        event.stream,
        event.revision,
        str(event.id),
        event.type,
        event.data,
        event.metadata,
        event.recorded_at.timestamp(),
    )


def user_version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


async def assert_same_log(old: V1File) -> None:
    """Open (upgrading if needed) and compare every event, every streams row and the sequence."""
    store = await SqliteEventStore.open(old.path, digest=events.check_digest)
    try:
        read = await store.read_all()
        rows = await store.read_log_rows(after=None, stream_prefix=None, limit=len(old.events) + 1)
        # ``recorded_at`` as callers saw it from version 1: a datetime at microsecond precision...
        assert [as_v1(e) for e in read] == [
            (*row[:7], datetime.fromtimestamp(row[7], UTC).timestamp()) for row in old.events
        ]
        # ... and in a LogRow the float version 1 stored, bit for bit.
        assert rows == [(p, s, r, t, d, at) for p, s, r, _, t, d, _, at in old.events]
        prefixed = await store.read_all(stream_prefix=("service-uptime-svc-1", "system-"))
        assert [e.position for e in prefixed] == [
            row[0] for row in old.events if row[1].startswith(("service-uptime-svc-1", "system-"))
        ]
        name = "service-uptime-svc-4"  # max_count 5 still applies
        last = next(row[1] for row in old.streams if row[0] == name)
        assert isinstance(last, int)
        assert [e.revision for e in await store.read_stream(name)] == [
            row[2] for row in old.events if row[1] == name and row[2] > last - 5
        ]
        position = await store.append("after-upgrade", [NewEvent(uuid.uuid4(), "T", b"{}")])
        assert position == old.sequence + 1
    finally:
        await store.close()
    with sqlite3.connect(old.path) as conn:
        assert streams_rows(conn) == sorted(
            [*old.streams, ("after-upgrade", 0, 0, 0, None, None)], key=lambda row: str(row[0])
        )
        assert int(conn.execute("PRAGMA user_version").fetchone()[0]) == SCHEMA_VERSION


# --- the upgrade -----------------------------------------------------------------------------------


async def test_a_version_1_file_is_upgraded_on_open_with_every_field_kept(tmp_path: Path) -> None:
    """Events (all fields), streams rows, positions with their holes and the sequence survive."""
    old = write_v1(tmp_path / "events.db", 3 * TRAIN_AFTER)
    assert len({row[5] for row in old.events}) > 100  # realistic, varied payloads
    with capture_logs() as logs:
        await assert_same_log(old)
    steps = [e for e in logs if e["event"] == "store_migrating"]
    assert steps
    assert steps[-1]["done"] == steps[-1]["total"] == len(old.events)
    assert any(e["event"] == "store_vacuumed" for e in logs)
    with sqlite3.connect(old.path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert "migration_progress" not in tables
        assert "events_next" not in tables
        compressed = conn.execute("SELECT COUNT(*) FROM events WHERE dictionary_id > 0").fetchone()
        assert compressed[0] > len(old.events) // 2


async def test_an_interrupted_upgrade_resumes_without_duplicates_or_losses(tmp_path: Path) -> None:
    """A progress callback that raises after two chunks stops the loop for real; a rerun finishes."""
    old = write_v1(tmp_path / "events.db", 3000)
    seen: list[tuple[int, int]] = []

    class Interrupted(Exception):
        pass

    def stop_after_two(done: int, total: int) -> None:
        seen.append((done, total))
        if len(seen) == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        migrate_file(old.path, progress=stop_after_two, chunk=500)
    assert seen == [(500, len(old.events)), (1000, len(old.events))]
    # Still a whole version 1 file, with the copy's progress beside it.
    assert user_version(old.path) == 1
    with sqlite3.connect(old.path) as conn:
        assert _snapshot_v1(conn) == (old.events, old.streams, old.sequence)
        assert conn.execute("SELECT copied FROM migration_progress").fetchone() == (1000,)
        assert conn.execute("SELECT COUNT(*) FROM events_next").fetchone() == (1000,)
    resumed: list[int] = []
    migrate_file(
        old.path,
        progress=lambda done, _: resumed.append(done),
        chunk=500,
        digest=events.check_digest,
    )
    assert resumed[0] == 1500  # picked up after the last committed chunk
    await assert_same_log(old)


def test_a_killed_upgrade_resumes_on_the_next_open(tmp_path: Path) -> None:
    """SIGKILL mid-copy (a chunk's transaction open): the next open finishes it, losing nothing."""
    old = write_v1(tmp_path / "events.db", 20_000)
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys; from pathlib import Path; "
                "from uptime_daemon.store.sqlite import migrate_file; "
                "migrate_file(Path(sys.argv[1]), chunk=40, "
                "progress=lambda done, total: print('copied', done, flush=True))"
            ),
            str(old.path),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        reported = _read_lines(child, 3, deadline=time.monotonic() + 60)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        assert child.stdout is not None
        child.stdout.close()
    assert reported == ["copied 40", "copied 80", "copied 120"]
    assert user_version(old.path) == 1  # killed in the middle, not after the end
    asyncio.run(assert_same_log(old))


def _read_lines(child: subprocess.Popen[bytes], count: int, *, deadline: float) -> list[str]:
    """The child's first ``count`` progress lines, waiting on its pipe until ``deadline``."""
    assert child.stdout is not None
    lines: list[str] = []
    with selectors.DefaultSelector() as selector:
        selector.register(child.stdout, selectors.EVENT_READ)
        while len(lines) < count:
            left = deadline - time.monotonic()
            assert left > 0, f"the migration reported only {lines}"
            if selector.select(left):
                line = child.stdout.readline()
                assert line, f"the migration ended early: {lines}"
                if line.startswith(b"copied "):  # not a log line
                    lines.append(line.decode().strip())
    return lines


async def test_a_file_from_a_newer_build_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(EventStoreUnavailable, match="newer than this build"):
        await SqliteEventStore.open(path)
    with pytest.raises(EventStoreUnavailable, match="newer than this build"):
        migrate_file(path)


# --- what it saves ---------------------------------------------------------------------------------


def test_the_compact_file_is_far_smaller_than_version_1(tmp_path: Path) -> None:
    """The same events: the upgraded file is under 40 % of the version 1 file, indexes included."""
    old = write_v1(tmp_path / "events.db", 5000)
    before = old.path.stat().st_size
    migrate_file(old.path, digest=events.check_digest)
    after = sum(p.stat().st_size for p in tmp_path.glob("events.db*"))
    assert after < 0.4 * before, (after, before)


# --- the payload dictionary ------------------------------------------------------------------------


def status_events(count: int, seed: int) -> list[NewEvent]:
    rng = random.Random(seed)
    return [
        NewEvent(
            uuid.uuid4(),
            "ServiceStatusChanged",
            check_payload(rng, f"svc-{i % 7}", START + timedelta(seconds=30 * i)),
            METADATA,
        )
        for i in range(count)
    ]


async def test_payloads_written_before_training_stay_readable_after_it(tmp_path: Path) -> None:
    """A new file stores payloads raw, trains once it has enough, then compresses (and reopens)."""
    path = tmp_path / "events.db"
    events = status_events(TRAIN_AFTER + 300, seed=3)
    early, late = events[:TRAIN_AFTER], events[TRAIN_AFTER:]
    store = await SqliteEventStore.open(path)
    try:
        for start in range(0, len(early), 100):
            await store.append("service-uptime-a", early[start : start + 100])
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT COUNT(*) FROM dictionaries").fetchone() == (0,)
        for start in range(0, len(late), 100):
            await store.append("service-uptime-a", late[start : start + 100])
        tiny = NewEvent(uuid.uuid4(), "Tiny", b"{}", METADATA)
        await store.append("service-uptime-a", [tiny])
        assert [e.data for e in await store.read_stream("service-uptime-a")] == [
            e.data for e in [*events, tiny]
        ]
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM dictionaries").fetchone() == (1,)
        kinds = dict(
            conn.execute(
                "SELECT dictionary_id > 0, SUM(LENGTH(data)) FROM events GROUP BY dictionary_id > 0"
            ).fetchall()
        )
        raw = conn.execute("SELECT data FROM events WHERE dictionary_id = 0").fetchall()
    assert raw == [(b"{}",)]  # too small to gain: stored as it came
    assert kinds[1] < 0.3 * sum(len(e.data) for e in events)  # the early ones recompressed too
    reopened = await SqliteEventStore.open(path)
    try:
        read = await reopened.read_log_rows(after=None, stream_prefix=None, limit=10_000)
        assert [row[4] for row in read] == [e.data for e in [*events, tiny]]
    finally:
        await reopened.close()
