"""Export/import and migration: complete, idempotent, resumable, and refusing to merge conflicts."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.kurrentdb_standin import StandInServer
from tests.store.contract import new
from uptime_daemon import transfer
from uptime_daemon.store import RecordedEvent
from uptime_daemon.store.kurrentdb import KurrentDBEventStore
from uptime_daemon.store.sqlite import SqliteEventStore


@pytest.fixture
async def source(tmp_path: Path) -> AsyncIterator[SqliteEventStore]:
    store = await SqliteEventStore.open(tmp_path / "source.db")
    for i in range(30):
        await store.append(f"service-uptime-s{i % 3}", [new(f"T{i}", b'{"i": %d}' % i)])
    await store.append("system-health-check", [new("HealthCheckPerformed")])
    await store.append("service-uptime-raw", [new("Raw", b"\x00not json")])
    yield store
    await store.close()


def shape(events: list[RecordedEvent]) -> list[tuple[str, int, str, str, bytes, bytes]]:
    return [(e.stream, e.revision, str(e.id), e.type, e.data, e.metadata) for e in events]


async def uptime_events(store: SqliteEventStore | KurrentDBEventStore) -> list[RecordedEvent]:
    return await store.read_all(stream_prefix="service-uptime-")


async def test_export_then_import_round_trips_and_is_idempotent(
    source: SqliteEventStore, tmp_path: Path
) -> None:
    """Every uptime event survives export → import byte for byte; importing again adds nothing."""
    out = io.StringIO()
    exported = await transfer.export_jsonl(source, out)
    assert exported.events == 31
    target = await SqliteEventStore.open(tmp_path / "target.db")
    try:
        lines = out.getvalue().splitlines()
        assert (await transfer.import_jsonl(target, lines)).events == 31
        await transfer.import_jsonl(target, lines)
        assert shape(await uptime_events(target)) == shape(await uptime_events(source))
        assert not await target.read_all(stream_prefix="system-")
    finally:
        await target.close()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        pytest.param("{not json", "line 1: JSONDecodeError", id="not-json"),
        pytest.param('{"stream": "s", "type": "T", "revision": 0}', "line 1: KeyError", id="no-id"),
        pytest.param(
            '{"stream": "s", "id": "x", "type": "T", "revision": 0}',
            "line 1: ValueError",
            id="bad-id",
        ),
    ],
)
async def test_bad_import_lines_are_named(tmp_path: Path, line: str, message: str) -> None:
    """A malformed line stops the import with its line number."""
    target = await SqliteEventStore.open(tmp_path / "target.db")
    try:
        with pytest.raises(transfer.TransferError, match=message):
            await transfer.import_jsonl(target, [line])
    finally:
        await target.close()


@pytest.fixture
async def kurrentdb() -> AsyncIterator[KurrentDBEventStore]:
    server = StandInServer()
    await server.start()
    store = await KurrentDBEventStore.open(server.url, timeout_seconds=5)
    yield store
    await store.close()
    await server.stop()


async def test_migrate_copies_everything_once_even_when_run_twice(
    source: SqliteEventStore, kurrentdb: KurrentDBEventStore, tmp_path: Path
) -> None:
    """SQLite → KurrentDB keeps ids, revisions and bytes; a second run (from zero) duplicates nothing."""
    checkpoint = tmp_path / "ckpt.json"
    first = await transfer.migrate(source, kurrentdb, checkpoint)
    assert first.events == 31
    again = await transfer.migrate(source, kurrentdb, checkpoint, restart=True)
    assert again.events == 31
    expected = {(s, r, i, t, d, m) for s, r, i, t, d, m in shape(await uptime_events(source))}
    assert {
        (s, r, i, t, d, m) for s, r, i, t, d, m in shape(await uptime_events(kurrentdb))
    } == expected
    assert len(await uptime_events(kurrentdb)) == 31


async def test_migrate_resumes_from_its_checkpoint(
    source: SqliteEventStore, kurrentdb: KurrentDBEventStore, tmp_path: Path
) -> None:
    """Later events are picked up by a resumed run; the checkpoint stops earlier ones being re-read."""
    checkpoint = tmp_path / "ckpt.json"
    await transfer.migrate(source, kurrentdb, checkpoint)
    await source.append("service-uptime-s0", [new("Later")])
    resumed = await transfer.migrate(source, kurrentdb, checkpoint)
    assert resumed.events == 1
    assert [e.type for e in await kurrentdb.read_stream("service-uptime-s0")][-1] == "Later"


async def test_migrate_refuses_to_merge_into_a_different_stream(
    source: SqliteEventStore, kurrentdb: KurrentDBEventStore, tmp_path: Path
) -> None:
    """A target stream that already holds other events is a clear error, not a silent merge."""
    await kurrentdb.append("service-uptime-s1", [new("Foreign")])
    with pytest.raises(
        transfer.TransferError, match="service-uptime-s1: the target holds different events"
    ):
        await transfer.migrate(source, kurrentdb, tmp_path / "ckpt.json")


def test_cli_output_stays_clean_when_the_daemon_logs(tmp_path: Path) -> None:
    """Logs go to stderr: ``summary --json`` prints parseable JSON even while warning about a bad snapshot."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    import orjson  # noqa: PLC0415

    database = tmp_path / "e.db"
    (tmp_path / "e.db.projection.json").write_text("{corrupt")
    config = tmp_path / "c.toml"
    config.write_text(f'[store]\nurl = "sqlite:///{database}"\n')
    done = subprocess.run(
        [sys.executable, "-m", "uptime_daemon", "--config", str(config), "summary", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout)["services"] == []
    assert "snapshot_ignored" in done.stderr
