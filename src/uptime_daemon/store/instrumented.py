"""An ``EventStore`` decorator that records what health output and metrics need about appends.

It wraps any adapter, so the numbers mean the same whatever the backend: appends and failures
counted, the last append's time and position, and an optional hook that receives each append's
duration (the metrics layer plugs in there).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from time import perf_counter
from typing import Protocol

from uptime_daemon.errors import EventStoreError
from uptime_daemon.store import (
    CaughtUp,
    DigestReader,
    DigestRow,
    EventStore,
    Expected,
    LogRow,
    NewEvent,
    RecordedEvent,
    StreamMetadata,
    StreamPrefix,
    StreamState,
    read_digests,
    read_log,
)


class AppendObserver(Protocol):
    """Told about every append: how long it took, how many events, whether it succeeded."""

    def __call__(self, duration_seconds: float, events: int, *, ok: bool) -> None:
        """Record one append."""


class InstrumentedStore:
    """Delegates every call; counts appends."""

    def __init__(
        self,
        inner: EventStore,
        *,
        now: Callable[[], datetime],
        on_append: AppendObserver | None = None,
    ) -> None:
        self.inner = inner
        self._now = now
        self._on_append = on_append
        self.appends = 0
        self.append_failures = 0
        self.last_append_at: datetime | None = None
        self.last_append_position: int | None = None
        self.last_append_error: str | None = None
        """Why the most recent append failed; ``None`` once one succeeds again."""

    @property
    def backend(self) -> str:
        """The wrapped adapter's backend name."""
        return self.inner.backend

    async def append(
        self, stream: str, events: Sequence[NewEvent], expected: Expected = StreamState.ANY
    ) -> int:
        """Append through the adapter, recording the outcome."""
        started = perf_counter()
        try:
            position = await self.inner.append(stream, events, expected)
        except EventStoreError as exc:
            self.append_failures += 1
            self.last_append_error = f"{type(exc).__name__}: {exc}"
            if self._on_append is not None:
                self._on_append(perf_counter() - started, len(events), ok=False)
            raise
        self.appends += 1
        self.last_append_error = None
        self.last_append_at = self._now()
        self.last_append_position = position
        if self._on_append is not None:
            self._on_append(perf_counter() - started, len(events), ok=True)
        return position

    async def read_stream(
        self,
        stream: str,
        *,
        backwards: bool = False,
        limit: int | None = None,
        from_revision: int | None = None,
    ) -> list[RecordedEvent]:
        """Delegate."""
        return await self.inner.read_stream(
            stream, backwards=backwards, limit=limit, from_revision=from_revision
        )

    async def read_all(
        self,
        *,
        after: int | None = None,
        stream_prefix: StreamPrefix = None,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        """Delegate."""
        return await self.inner.read_all(after=after, stream_prefix=stream_prefix, limit=limit)

    def subscribe(
        self, *, after: int | None = None, stream_prefix: StreamPrefix = None
    ) -> AsyncIterator[RecordedEvent | CaughtUp]:
        """Delegate."""
        return self.inner.subscribe(after=after, stream_prefix=stream_prefix)

    async def set_stream_metadata(
        self, stream: str, *, max_age_seconds: int | None = None, max_count: int | None = None
    ) -> None:
        """Delegate."""
        await self.inner.set_stream_metadata(
            stream, max_age_seconds=max_age_seconds, max_count=max_count
        )

    async def get_stream_metadata(self, stream: str) -> StreamMetadata:
        """Delegate."""
        return await self.inner.get_stream_metadata(stream)

    async def delete_stream(self, stream: str, expected: Expected = StreamState.ANY) -> None:
        """Delegate."""
        await self.inner.delete_stream(stream, expected)

    async def truncate_before(self, stream: str, revision: int) -> None:
        """Delegate."""
        await self.inner.truncate_before(stream, revision)

    async def read_log_rows(
        self, *, after: int | None, stream_prefix: StreamPrefix, limit: int
    ) -> list[LogRow]:
        """The adapter's bulk read when it has one (``store.read_log``)."""
        return await read_log(self.inner, after=after, stream_prefix=stream_prefix, limit=limit)

    async def read_digest_rows(
        self, *, after: int | None, stream_prefix: StreamPrefix, limit: int
    ) -> list[DigestRow]:
        """The adapter's digests when it keeps them (``store.read_digests``)."""
        return await read_digests(self.inner, after=after, stream_prefix=stream_prefix, limit=limit)

    async def read_payloads(self, positions: Sequence[int]) -> dict[int, bytes]:
        """Delegate; an adapter without digests returns no row without a payload, so none to fetch."""
        if isinstance(self.inner, DigestReader):
            return await self.inner.read_payloads(positions)
        return {}

    async def ping(self) -> float:
        """Delegate."""
        return await self.inner.ping()

    async def close(self) -> None:
        """Delegate."""
        await self.inner.close()
