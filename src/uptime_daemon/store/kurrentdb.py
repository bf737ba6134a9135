"""The production event store: KurrentDB through ``kurrentdbclient.AsyncKurrentDBClient``.

Client errors are translated at one boundary, ``_translated``, into our tree (``raise … from e``):
``WrongCurrentVersionError`` → ``ConcurrencyConflict``, ``NotFoundError`` → ``StreamNotFound``,
``StreamIsDeletedError`` → ``StreamDeleted``, anything else from the client →
``EventStoreUnavailable``. Nothing outside the client's tree is caught: an ``AttributeError`` is a bug.

Semantics the protocol fixes and KurrentDB provides or this adapter supplies:

* ``read_all(after=p)`` and ``subscribe(after=p)`` are exclusive of ``p``. KurrentDB's ``$all`` read
  from a position is inclusive, so the event at ``p`` is dropped here.
* Subscriptions go to ``$all`` filtered server-side by stream-name prefix. Errors raised while
  iterating are never retried by the client: they surface as ``EventStoreUnavailable`` and the
  projector resubscribes from its own checkpoint.
* ``set_stream_metadata`` merges into the stream's existing metadata so a soft delete's ``$tb`` or
  an operator's ``$acl`` is never overwritten.
* Appends are idempotent by event id on the server, which makes the client's own retries safe.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from kurrentdbclient import AsyncKurrentDBClient
from kurrentdbclient import NewEvent as ClientEvent
from kurrentdbclient import RecordedEvent as ClientRecordedEvent
from kurrentdbclient import StreamState as ClientState
from kurrentdbclient.exceptions import (
    KurrentDBClientError,
    NotFoundError,
    ProgrammingError,
    StreamIsDeletedError,
    WrongCurrentVersionError,
)

from uptime_daemon.errors import (
    ConcurrencyConflict,
    EventStoreError,
    EventStoreUnavailable,
    InvalidArgument,
    StreamDeleted,
    StreamNotFound,
)
from uptime_daemon.store import (
    CaughtUp,
    Expected,
    NewEvent,
    RecordedEvent,
    StreamMetadata,
    StreamPrefix,
    StreamState,
    prefixes,
)

READ_ALL_LIMIT: Final = 2**62
RECONNECT_OPTIONS: Final = (
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
)
_STATES: Final = {
    StreamState.ANY: ClientState.ANY,
    StreamState.NO_STREAM: ClientState.NO_STREAM,
    StreamState.STREAM_EXISTS: ClientState.EXISTS,
}


def connection_uri(
    url: str,
    *,
    username: str | None = None,
    password: str | None = None,
    use_tls: bool = False,
    verify_cert: bool = True,
    ca_file: str | None = None,
) -> str:
    """Build the client URI from our settings; values already in ``url`` win."""
    parts = urlsplit(url)
    query = {key.lower(): value for key, value in parse_qsl(parts.query)}
    params = dict(parse_qsl(parts.query))
    if "tls" not in query:
        params["tls"] = "true" if use_tls else "false"
    if not verify_cert and "tlsverifycert" not in query:
        params["tlsVerifyCert"] = "false"
    if ca_file and "tlscafile" not in query:
        params["tlsCaFile"] = ca_file
    netloc = parts.netloc
    if username and "@" not in netloc:
        credentials = quote(username, safe="")
        if password:
            credentials += ":" + quote(password, safe="")
        netloc = f"{credentials}@{netloc}"
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(params), ""))


def _client_expected(expected: Expected) -> int | ClientState:
    return expected if isinstance(expected, int) else _STATES[expected]


def _actual(error: WrongCurrentVersionError) -> int | None:
    actual: Any = getattr(error, "actual_version", None)
    return actual if isinstance(actual, int) and actual >= 0 else None


def _recorded(event: ClientRecordedEvent) -> RecordedEvent:
    recorded_at = event.recorded_at or datetime.now(UTC)
    return RecordedEvent(
        id=event.id,
        type=event.type,
        data=bytes(event.data),
        metadata=bytes(event.metadata),
        stream=event.stream_name,
        revision=event.stream_position,
        position=event.commit_position,
        recorded_at=recorded_at,
    )


def _unavailable(error: Exception) -> EventStoreUnavailable:
    return EventStoreUnavailable(f"kurrentdb: {type(error).__name__}: {error}"[:500])


def _ours(error: KurrentDBClientError, stream: str | None, expected: Expected) -> EventStoreError:
    """Our error for one of the client's; without a stream (``$all``, ``ping``) it is unavailability."""
    if stream is not None:
        if isinstance(error, WrongCurrentVersionError):
            return ConcurrencyConflict(stream, expected, _actual(error))
        if isinstance(error, NotFoundError):
            return StreamNotFound(stream)
        if isinstance(error, StreamIsDeletedError):
            return StreamDeleted(stream)
    return _unavailable(error)


@contextlib.contextmanager
def _translated(stream: str | None = None, expected: Expected = StreamState.ANY) -> Iterator[None]:
    """The boundary: every client call runs inside it, and only the client's own errors are caught."""
    try:
        yield
    except KurrentDBClientError as exc:
        raise _ours(exc, stream, expected) from exc


def _prefix_filter(stream_prefix: StreamPrefix) -> dict[str, Any]:
    """``read_all`` / ``subscribe_to_all`` arguments that keep streams with the prefix(es), on the server."""
    wanted = prefixes(stream_prefix)
    if not wanted:
        return {}
    return {
        "filter_include": list(wanted),
        "filter_by_stream_name": True,
        "filter_by_prefix": True,
    }


class KurrentDBEventStore:
    """The ``EventStore`` protocol over one ``AsyncKurrentDBClient``.

    A closed store refuses every call with ``EventStoreUnavailable("store is closed")`` before it
    reaches the client: the client's ``close()`` deletes its connection attribute, so a closed
    client would answer ``AttributeError`` instead.
    """

    backend: Final = "kurrentdb"

    def __init__(self, client: AsyncKurrentDBClient, *, timeout_seconds: float) -> None:
        """Use ``open``."""
        self._client = client
        self._timeout = timeout_seconds
        self._closed = False

    @classmethod
    async def open(
        cls, uri: str, *, timeout_seconds: float = 5.0, root_certificates: bytes | None = None
    ) -> KurrentDBEventStore:
        """Create the client and connect (single host: no RPC yet; cluster: gossip discovery)."""
        try:
            with _translated():
                client = AsyncKurrentDBClient(uri, root_certificates=root_certificates)
                # gRPC's reconnect backoff grows to 120 s and is shared by every channel to the same
                # address, so after a long outage the store would stay "unreachable" for up to two
                # minutes after it came back. Cap it: recovery within seconds, light retry load.
                client.grpc_options += RECONNECT_OPTIONS
                await client.connect()
        except ValueError as exc:  # the client's URI parser refuses a malformed URI
            raise _unavailable(exc) from exc
        return cls(client, timeout_seconds=timeout_seconds)

    def _check_open(self) -> None:
        if self._closed:
            raise EventStoreUnavailable("store is closed")

    async def append(
        self, stream: str, events: Sequence[NewEvent], expected: Expected = StreamState.ANY
    ) -> int:
        """Append through BatchAppend; the client retries, the server deduplicates by id."""
        self._check_open()
        batch = [
            ClientEvent(
                type=e.type,
                data=e.data,
                metadata=e.metadata,
                content_type="application/json",
                id=e.id,
            )
            for e in events
        ]
        with _translated(stream, expected):
            return await self._client.append_to_stream(
                stream,
                events=batch,
                current_version=_client_expected(expected),
                timeout=self._timeout,
            )

    async def read_stream(
        self,
        stream: str,
        *,
        backwards: bool = False,
        limit: int | None = None,
        from_revision: int | None = None,
    ) -> list[RecordedEvent]:
        """One stream; ``$maxAge``/``$maxCount``/soft delete are applied by the server."""
        self._check_open()
        with _translated(stream):
            found = await self._client.get_stream(
                stream,
                stream_position=from_revision,
                backwards=backwards,
                limit=limit or READ_ALL_LIMIT,
                timeout=self._timeout,
            )
        return [_recorded(e) for e in found]

    async def read_all(
        self,
        *,
        after: int | None = None,
        stream_prefix: StreamPrefix = None,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        """``$all`` forwards, exclusive of ``after``, filtered by stream-name prefix on the server."""
        self._check_open()
        wanted = limit or READ_ALL_LIMIT
        with _translated():
            response = await self._client.read_all(
                commit_position=after or None,
                limit=wanted + 1 if after else wanted,
                timeout=self._timeout,
                **_prefix_filter(stream_prefix),
            )
            found = [_recorded(e) async for e in response]
        if after and found and found[0].position <= after:
            found = found[1:]
        return found[:wanted]

    async def subscribe(
        self, *, after: int | None = None, stream_prefix: StreamPrefix = None
    ) -> AsyncIterator[RecordedEvent | CaughtUp]:
        """A filtered ``$all`` catch-up subscription; ``CaughtUp`` once, then live events."""
        self._check_open()
        position = after
        caught_up = False
        with _translated():
            subscription = await self._client.subscribe_to_all(
                commit_position=after or None,
                include_caught_up=True,
                **_prefix_filter(stream_prefix),
            )
        try:
            with _translated():
                async for item in subscription:
                    if getattr(item, "is_caught_up", False):
                        if not caught_up:
                            caught_up = True
                            yield CaughtUp(position)
                        continue
                    if getattr(item, "is_checkpoint", False):
                        continue
                    event = _recorded(item)
                    position = event.position
                    yield event
        finally:
            await subscription.stop()

    async def set_stream_metadata(
        self, stream: str, *, max_age_seconds: int | None = None, max_count: int | None = None
    ) -> None:
        """Merge ``$maxAge``/``$maxCount`` into the stream's metadata."""
        self._check_open()
        with _translated(stream):
            current, _ = await self._client.get_stream_metadata(stream, timeout=self._timeout)
            merged = dict(current)
            for key, value in (("$maxAge", max_age_seconds), ("$maxCount", max_count)):
                if value is None:
                    merged.pop(key, None)
                else:
                    merged[key] = value
            await self._client.set_stream_metadata(stream, metadata=merged, timeout=self._timeout)

    async def truncate_before(self, stream: str, revision: int) -> None:
        """Raise the stream's ``$tb`` to ``revision`` (never lower it), keeping the rest of its metadata.

        The server hides the events below it from stream reads at once and removes them at its next
        scavenge; ``$all`` shows them until then.
        """
        self._check_open()
        given: object = revision  # callers are untyped too: a bool is not a revision
        if isinstance(given, bool) or not isinstance(given, int) or given < 0:
            raise InvalidArgument(f"revision must be an integer >= 0, got {revision!r}")
        with _translated(stream):
            last = await self._client.get_current_version(stream, timeout=self._timeout)
            if last is ClientState.NO_STREAM:
                raise StreamNotFound(stream)
            current, version = await self._client.get_stream_metadata(stream, timeout=self._timeout)
            if int(current.get("$tb", 0)) >= revision:
                return
            await self._client.set_stream_metadata(
                stream,
                metadata=dict(current) | {"$tb": revision},
                current_version=version,
                timeout=self._timeout,
            )

    async def get_stream_metadata(self, stream: str) -> StreamMetadata:
        """``$maxAge``/``$maxCount`` and the rest of the stream's metadata."""
        self._check_open()
        with _translated(stream):
            current, _ = await self._client.get_stream_metadata(stream, timeout=self._timeout)
        extra = {k: v for k, v in current.items() if k not in {"$maxAge", "$maxCount"}}
        return StreamMetadata(
            max_age_seconds=current.get("$maxAge"), max_count=current.get("$maxCount"), extra=extra
        )

    async def delete_stream(self, stream: str, expected: Expected = StreamState.ANY) -> None:
        """Soft delete (``Streams.Delete``); never a tombstone."""
        self._check_open()
        with _translated(stream, expected):
            await self._client.delete_stream(
                stream, current_version=_client_expected(expected), timeout=self._timeout
            )

    async def ping(self) -> float:
        """One ``$all`` read of the newest position."""
        self._check_open()
        started = time.perf_counter()
        with _translated():
            await self._client.get_commit_position(timeout=self._timeout)
        return time.perf_counter() - started

    async def close(self) -> None:
        """Close the client (a closed client cannot be reused)."""
        if self._closed:
            return
        self._closed = True
        # ProgrammingError: the client's close() raises it for a client that never connected
        # ("Connection was never established"), which ``__init__`` accepts; there is nothing to close.
        with contextlib.suppress(KurrentDBClientError, ProgrammingError):
            await self._client.close()
