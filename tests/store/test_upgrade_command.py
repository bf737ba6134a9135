"""``upgrade-store`` stops when it is cancelled (Ctrl-C), after a whole chunk, and resumes."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from tests.store.test_sqlite_compact import assert_same_log, user_version, write_v1
from uptime_daemon.config.load import settings_from_mapping
from uptime_daemon.daemon import offline

CHUNK = 500


async def test_a_cancelled_upgrade_stops_after_a_chunk_and_the_next_run_finishes(
    tmp_path: Path,
) -> None:
    old = write_v1(tmp_path / "events.db", 3000)
    settings = settings_from_mapping(
        {"store": {"url": f"sqlite:///{old.path}"}}, source="test", environ={}
    )
    loop = asyncio.get_running_loop()
    seen: list[int] = []
    task: asyncio.Task[offline.UpgradedStore] | None = None

    def cancel_at_first_chunk(done: int, _total: int) -> None:  # on the upgrade's thread
        seen.append(done)
        if len(seen) == 1:
            assert task is not None
            loop.call_soon_threadsafe(task.cancel)

    task = asyncio.create_task(offline.upgrade_store(settings, cancel_at_first_chunk, chunk=CHUNK))
    with pytest.raises(asyncio.CancelledError):
        await task
    # Stopped for real, part-way, on a chunk's end: without the stop it would have run to the end.
    assert user_version(old.path) == 1
    with sqlite3.connect(old.path) as conn:
        (copied,) = conn.execute("SELECT copied FROM migration_progress").fetchone()
    assert copied == seen[-1]
    assert copied % CHUNK == 0
    assert 0 < copied < len(old.events)

    resumed: list[int] = []
    done = await offline.upgrade_store(
        settings, lambda done, _total: resumed.append(done), chunk=CHUNK
    )
    assert resumed[0] == copied + CHUNK  # carried on after the last committed chunk
    assert done.version == user_version(old.path) > 1
    await assert_same_log(old)
