"""Fixtures for probe tests: the production session (resolving only locally) and stores."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.probes.fakes import FakeStore, LoopbackResolver
from uptime_daemon.clock import SystemClock
from uptime_daemon.probes.base import ProbeContext
from uptime_daemon.probes.session import make_client_session
from uptime_daemon.store.sqlite import SqliteEventStore


@pytest.fixture
def resolver() -> LoopbackResolver:
    """A resolver that answers ``localhost`` and ``*.invalid`` without leaving the machine."""
    return LoopbackResolver()


@pytest.fixture
async def session(resolver: LoopbackResolver) -> AsyncIterator[aiohttp.ClientSession]:
    """The production probe session."""
    async with make_client_session(resolver=resolver) as client:
        yield client


@pytest.fixture
def fake_store() -> FakeStore:
    """An in-memory store."""
    return FakeStore()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteEventStore]:
    """A real embedded store."""
    opened = await SqliteEventStore.open(tmp_path / "events.db")
    yield opened
    await opened.close()


@pytest.fixture
def ctx(session: aiohttp.ClientSession, fake_store: FakeStore) -> ProbeContext:
    """A probe context; its own base URL is the discard port (tests use absolute URLs)."""
    return ProbeContext(
        session=session, clock=SystemClock(), store=fake_store, self_base_url="http://127.0.0.1:9"
    )
