"""Fixtures for probe tests: the production session and a real SQLite store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from uptime_daemon.clock import SystemClock
from uptime_daemon.probes.base import ProbeContext
from uptime_daemon.probes.http import make_client_session
from uptime_daemon.store.sqlite import SqliteEventStore


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """The production probe session."""
    async with make_client_session() as client:
        yield client


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteEventStore]:
    """A real embedded store."""
    opened = await SqliteEventStore.open(tmp_path / "events.db")
    yield opened
    await opened.close()


@pytest.fixture
def ctx(session: aiohttp.ClientSession, store: SqliteEventStore) -> ProbeContext:
    """A probe context; its own base URL points nowhere (tests use absolute URLs)."""
    return ProbeContext(
        session=session, clock=SystemClock(), store=store, self_base_url="http://127.0.0.1:9"
    )
