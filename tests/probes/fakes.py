"""Test doubles for probe tests: a hand-driven clock, an in-memory event store, a loopback resolver."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiohttp.abc import AbstractResolver, ResolveResult

from uptime_daemon.errors import StreamNotFound
from uptime_daemon.store import (
    CaughtUp,
    Expected,
    NewEvent,
    RecordedEvent,
    StreamMetadata,
    StreamPrefix,
    StreamState,
)


@dataclass
class ManualClock:
    """Time moves only when a test (or a test server) says so."""

    wall: datetime = datetime(2030, 1, 1, tzinfo=UTC)
    seconds: float = 0.0

    def now(self) -> datetime:
        return self.wall

    def monotonic(self) -> float:
        return self.seconds

    def advance(self, seconds: float) -> None:
        self.seconds += seconds


class LoopbackResolver(AbstractResolver):
    """RFC 6761 names only, answered locally: ``localhost`` is 127.0.0.1, ``*.invalid`` does not exist.

    The sandbox's resolver is a remote server, and a probe test must never leave the machine. Any other
    name is a test bug. ``delay`` advances a ``ManualClock`` to stand in for a slow resolver.
    """

    def __init__(self, clock: ManualClock | None = None, delay_seconds: float = 0.0) -> None:
        self.asked: list[str] = []
        self._clock = clock
        self._delay_seconds = delay_seconds

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        if self._clock is not None:
            self._clock.advance(self._delay_seconds)
        if host == "localhost":
            return [
                ResolveResult(
                    hostname=host,
                    host="127.0.0.1",
                    port=port,
                    family=socket.AF_INET,
                    proto=0,
                    flags=socket.AI_NUMERICHOST,
                )
            ]
        if host.endswith(".invalid"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        raise AssertionError(f"test tried to resolve {host!r}, which would leave the machine")

    async def close(self) -> None:
        return None


@dataclass
class FakeStore:
    """An in-memory ``EventStore`` with soft delete and per-call failure injection.

    ``fail`` maps a method name to the error it raises; ``intruder`` is appended right after each
    of our appends (another daemon writing to the same stream); ``lose_writes`` drops appends.
    """

    streams: dict[str, list[RecordedEvent]] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    metadata: dict[str, StreamMetadata] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    fail: dict[str, Exception] = field(default_factory=dict)
    intruder: NewEvent | None = None
    lose_writes: bool = False
    position: int = 0

    @property
    def backend(self) -> str:
        return "fake"

    def _enter(self, method: str, stream: str) -> None:
        self.calls.append((method, stream))
        if method in self.fail:
            raise self.fail[method]

    def _record(self, stream: str, event: NewEvent) -> None:
        events = self.streams.setdefault(stream, [])
        self.position += 1
        events.append(
            RecordedEvent(
                id=event.id,
                type=event.type,
                data=event.data,
                metadata=event.metadata,
                stream=stream,
                revision=events[-1].revision + 1 if events else 0,
                position=self.position,
                recorded_at=datetime(2030, 1, 1, tzinfo=UTC),
            )
        )

    async def append(
        self, stream: str, events: Sequence[NewEvent], expected: Expected = StreamState.ANY
    ) -> int:
        self._enter("append", stream)
        self.deleted.discard(stream)  # appending revives a soft-deleted stream
        if not self.lose_writes:
            for event in events:
                self._record(stream, event)
        if self.intruder is not None:
            self._record(stream, self.intruder)
        return self.position

    async def read_stream(
        self,
        stream: str,
        *,
        backwards: bool = False,
        limit: int | None = None,
        from_revision: int | None = None,
    ) -> list[RecordedEvent]:
        self._enter("read_stream", stream)
        if stream not in self.streams or stream in self.deleted:
            raise StreamNotFound(stream)
        events = list(reversed(self.streams[stream])) if backwards else list(self.streams[stream])
        return events[:limit] if limit is not None else events

    async def read_all(
        self,
        *,
        after: int | None = None,
        stream_prefix: StreamPrefix = None,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        raise NotImplementedError

    async def subscribe(
        self, *, after: int | None = None, stream_prefix: StreamPrefix = None
    ) -> AsyncIterator[RecordedEvent | CaughtUp]:
        raise NotImplementedError
        yield CaughtUp(None)  # pragma: no cover - makes this an async generator

    async def set_stream_metadata(
        self, stream: str, *, max_age_seconds: int | None = None, max_count: int | None = None
    ) -> None:
        self._enter("set_stream_metadata", stream)
        self.metadata[stream] = StreamMetadata(max_age_seconds=max_age_seconds, max_count=max_count)

    async def get_stream_metadata(self, stream: str) -> StreamMetadata:
        self._enter("get_stream_metadata", stream)
        return self.metadata.get(stream, StreamMetadata())

    async def truncate_before(self, stream: str, revision: int) -> None:
        self._enter("truncate_before", stream)
        if stream not in self.streams or stream in self.deleted:
            raise StreamNotFound(stream)
        self.streams[stream] = [e for e in self.streams[stream] if e.revision >= revision]

    async def delete_stream(self, stream: str, expected: Expected = StreamState.ANY) -> None:
        self._enter("delete_stream", stream)
        if stream not in self.streams or stream in self.deleted:
            raise StreamNotFound(stream)
        self.deleted.add(stream)

    async def ping(self) -> float:
        return 0.0

    async def close(self) -> None:
        return None
