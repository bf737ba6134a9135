"""A wire-compatible KurrentDB stand-in for tests: grpcio on the protobuf modules inside kurrentdbclient.

No real KurrentDB can run here (no .NET, no container engine), so the KurrentDB adapter is tested
with the real ``AsyncKurrentDBClient`` over a real loopback socket against this server. It behaves
like KurrentDB where the daemon relies on it (see ``shared/reference/kurrentdb.md``):

* ``Streams.BatchAppend``: expected-version checks with in-band ``WrongExpectedVersion`` /
  ``StreamDeleted`` details, idempotent re-append of the same event ids, commit positions with gaps.
* ``Streams.Read``: stream reads (start/end/revision, both directions, ``$tb``/``$maxCount``/``$maxAge``
  applied), ``$all`` reads (inclusive forwards, prefix or regex filters on stream name or event
  type), catch-up subscriptions (confirmation first, exclusive start, checkpoints, ``caught_up`` with
  its position, then live).
* ``Streams.Delete`` (soft: ``$tb`` = Int64.MaxValue, revived by the next append with revisions
  continuing) and ``Streams.Tombstone``, with the exact status texts the client parses.
* ``Gossip.Read``: one leader, or a three-member view for discovery tests.
* Fault injection: ``stop()``/``start()`` on the same port, ``stall_seconds`` (past a deadline),
  ``unavailable`` (every call aborts ``UNAVAILABLE``), ``not_leader`` (appends refused, leader named).

It is a test fixture; nothing under ``src/`` imports it.
"""

from __future__ import annotations

import asyncio
import functools
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Final, cast

import grpc
import orjson
from google.protobuf import any_pb2, empty_pb2, timestamp_pb2
from kurrentdbclient.protos.v1 import (
    gossip_pb2,
    gossip_pb2_grpc,
    shared_pb2,
    status_pb2,
    streams_pb2,
    streams_pb2_grpc,
)

MAX_REVISION: Final = 9_223_372_036_854_775_807
TICKS_PER_SECOND: Final = 10_000_000
POSITION_GAP: Final = 137  # real positions are byte offsets: monotonic, never +1
CORRUPTED_IDEMPOTENCY: Final = object()


@dataclass(slots=True)
class Record:
    stream: str
    revision: int
    id: str
    type: str
    content_type: str
    data: bytes
    metadata: bytes
    created_ticks: int
    position: int


@dataclass(slots=True)
class Stream:
    records: list[Record] = field(default_factory=list)
    tombstoned: bool = False

    @property
    def last(self) -> int:
        return self.records[-1].revision if self.records else -1


class Log:
    """The in-memory database shared across server restarts."""

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        self.now = now
        """Server clock (seconds): ``created`` ticks and ``$maxAge`` use it, so tests can move it."""
        self.all: list[Record] = []
        self.streams: dict[str, Stream] = {}
        self.position = 0
        self.changed = asyncio.Condition()

    def stream(self, name: str) -> Stream:
        return self.streams.setdefault(name, Stream())

    def metadata(self, name: str) -> dict[str, Any]:
        meta = self.streams.get(f"$${name}")
        if meta is None or not meta.records:
            return {}
        value = orjson.loads(meta.records[-1].data)
        return value if isinstance(value, dict) else {}

    def soft_deleted(self, name: str) -> bool:
        return self.metadata(name).get("$tb") == MAX_REVISION

    def write(self, name: str, events: list[tuple[str, str, str, bytes, bytes]]) -> list[Record]:
        stream = self.stream(name)
        written = []
        for event_id, kind, content_type, data, metadata in events:
            self.position += POSITION_GAP + len(data)
            record = Record(
                name,
                stream.last + 1,
                event_id,
                kind,
                content_type,
                data,
                metadata,
                int(self.now() * TICKS_PER_SECOND),
                self.position,
            )
            stream.records.append(record)
            self.all.append(record)
            written.append(record)
        return written

    def visible(self, name: str) -> list[Record] | None:
        """The stream as a read sees it; ``None`` when not found."""
        stream = self.streams.get(name)
        if stream is None or not stream.records or self.soft_deleted(name):
            return None
        meta = self.metadata(name)
        floor = int(meta.get("$tb", 0))
        records = [r for r in stream.records if r.revision >= floor]
        if "$maxCount" in meta:
            records = records[-int(meta["$maxCount"]) :]
        if "$maxAge" in meta:
            oldest = (self.now() - float(meta["$maxAge"])) * TICKS_PER_SECOND
            records = [r for r in records if r.created_ticks >= oldest]
        return records


def _uuid(value: str) -> shared_pb2.UUID:
    return shared_pb2.UUID(string=value)


def _event(record: Record) -> streams_pb2.ReadResp:
    recorded = streams_pb2.ReadResp.ReadEvent.RecordedEvent(
        id=_uuid(record.id),
        stream_identifier=shared_pb2.StreamIdentifier(stream_name=record.stream.encode()),
        stream_revision=record.revision,
        prepare_position=record.position,
        commit_position=record.position,
        metadata={
            "type": record.type,
            "content-type": record.content_type,
            "created": str(record.created_ticks),
        },
        custom_metadata=record.metadata,
        data=record.data,
    )
    return streams_pb2.ReadResp(
        event=streams_pb2.ReadResp.ReadEvent(event=recorded, commit_position=record.position)
    )


def _status(message: str, details: any_pb2.Any) -> status_pb2.Status:
    """An in-band error, as BatchAppend reports them (the client reads only the details)."""
    return status_pb2.Status(code=cast("Any", 9), message=message, details=details)


def _wev_detail(actual: int) -> any_pb2.Any:
    detail = shared_pb2.WrongExpectedVersion()
    if actual < 0:
        detail.current_no_stream.CopyFrom(empty_pb2.Empty())
    else:
        detail.current_stream_revision = actual
    packed = any_pb2.Any()
    packed.Pack(detail)
    return packed


class StandIn:
    """The gRPC services, with fault-injection switches the tests flip."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self.host = "127.0.0.1"
        self.port = 0
        self.stall_seconds = 0.0
        self.unavailable = False
        self.not_leader: tuple[str, int] | None = None
        self.members: list[tuple[str, int, Any]] | None = None
        """Gossip view: ``(host, port, VNodeState)``; default is this node alone, as leader."""
        self.calls: list[str] = []

    async def _faults(self, context: grpc.aio.ServicerContext, name: str) -> None:
        self.calls.append(name)
        if self.stall_seconds:
            await asyncio.sleep(self.stall_seconds)
        if self.unavailable:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "injected: node unavailable")

    # --- Gossip -------------------------------------------------------------------------------

    async def _gossip(self, context: grpc.aio.ServicerContext) -> gossip_pb2.ClusterInfo:
        await self._faults(context, "Gossip.Read")
        members = self.members or [(self.host, self.port, gossip_pb2.MemberInfo.Leader)]
        return gossip_pb2.ClusterInfo(
            members=[
                gossip_pb2.MemberInfo(
                    instance_id=_uuid(str(uuid.uuid4())),
                    time_stamp=int(time.time() * TICKS_PER_SECOND),
                    state=state,
                    is_alive=True,
                    http_end_point=gossip_pb2.EndPoint(address=host, port=port),
                )
                for host, port, state in members
            ]
        )

    # --- Streams.BatchAppend ------------------------------------------------------------------

    async def BatchAppend(
        self,
        request_iterator: AsyncIterator[streams_pb2.BatchAppendReq],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[streams_pb2.BatchAppendResp]:
        async for request in request_iterator:
            await self._faults(context, "BatchAppend")
            if self.not_leader is not None:
                host, port = self.not_leader
                await context.abort(
                    grpc.StatusCode.NOT_FOUND,
                    "Leader info available",
                    trailing_metadata=(
                        ("leader-endpoint-host", host),
                        ("leader-endpoint-port", str(port)),
                    ),
                )
            yield await self._append(request)

    async def _append(self, request: streams_pb2.BatchAppendReq) -> streams_pb2.BatchAppendResp:
        options = request.options
        name = options.stream_identifier.stream_name.decode()
        stream = self.log.streams.get(name)
        response = streams_pb2.BatchAppendResp(
            correlation_id=request.correlation_id, stream_identifier=options.stream_identifier
        )
        if stream is not None and stream.tombstoned:
            packed = any_pb2.Any()
            packed.Pack(shared_pb2.StreamDeleted(stream_identifier=options.stream_identifier))
            response.error.CopyFrom(_status("Stream deleted", packed))
            return response
        deleted = self.log.soft_deleted(name)
        last = stream.last if stream is not None else -1
        actual = -1 if deleted else last
        ids = [m.id.string for m in request.proposed_messages]
        replay = self._idempotent(stream, ids, options)
        if replay is CORRUPTED_IDEMPOTENCY:
            response.error.CopyFrom(_status("WrongExpectedVersion", _wev_detail(actual)))
            return response
        if isinstance(replay, Record):
            response.success.CopyFrom(self._success(replay))
            return response
        kind = options.WhichOneof("expected_stream_position")
        ok = (
            kind == "any"
            or (kind == "no_stream" and actual == -1)
            or (kind == "stream_exists" and actual >= 0)
            or (kind == "stream_position" and options.stream_position in {actual, last})
        )
        if not ok:
            response.error.CopyFrom(_status("WrongExpectedVersion", _wev_detail(actual)))
            return response
        messages = [
            (
                m.id.string,
                m.metadata.get("type", ""),
                m.metadata.get("content-type", ""),
                m.data,
                m.custom_metadata,
            )
            for m in request.proposed_messages
        ]
        async with self.log.changed:
            if deleted:  # revive: revisions continue, $tb re-pointed past the old events
                meta = self.log.metadata(name) | {"$tb": last + 1}
                self.log.write(
                    f"$${name}",
                    [(str(uuid.uuid4()), "$metadata", "application/json", orjson.dumps(meta), b"")],
                )
            written = self.log.write(name, messages)
            self.log.changed.notify_all()
        response.success.CopyFrom(self._success(written[-1] if written else None, revision=last))
        return response

    @staticmethod
    def _success(record: Record | None, revision: int = -1) -> streams_pb2.BatchAppendResp.Success:
        success = streams_pb2.BatchAppendResp.Success()
        if record is None:
            success.current_revision = max(revision, 0)
            success.position.CopyFrom(
                shared_pb2.AllStreamPosition(commit_position=0, prepare_position=0)
            )
        else:
            success.current_revision = record.revision
            success.position.CopyFrom(
                shared_pb2.AllStreamPosition(
                    commit_position=record.position, prepare_position=record.position
                )
            )
        return success

    @staticmethod
    def _idempotent(stream: Stream | None, ids: list[str], options: Any) -> Record | object | None:
        """The original last record for an exact re-append; a marker when only part matches."""
        if stream is None or not ids:
            return None
        index = {r.id: r for r in stream.records}
        if ids[0] not in index:
            return None
        first = index[ids[0]].revision
        run = (
            stream.records[first : first + len(ids)]
            if stream.records[0].revision == 0
            else [r for r in stream.records if first <= r.revision < first + len(ids)]
        )
        if [r.id for r in run] != ids:
            return CORRUPTED_IDEMPOTENCY  # KurrentDB refuses a batch that only partly repeats one
        kind = options.WhichOneof("expected_stream_position")
        before = first - 1
        if (
            kind == "any"
            or (kind == "no_stream" and before == -1)
            or (kind == "stream_exists" and before >= 0)
            or (kind == "stream_position" and options.stream_position == before)
        ):
            return run[-1]
        return None

    # --- Streams.Read ---------------------------------------------------------------------------

    async def _read(
        self, request: streams_pb2.ReadReq, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[streams_pb2.ReadResp]:
        await self._faults(context, "Read")
        options = request.options
        if options.WhichOneof("stream_option") == "stream":
            async for response in self._read_stream(options, context):
                yield response
            return
        matches = self._filter(options)
        forwards = options.read_direction == streams_pb2.ReadReq.Options.Forwards
        which = options.all.WhichOneof("all_option")
        start = options.all.position.commit_position if which == "position" else None
        if options.WhichOneof("count_option") == "subscription":
            async for response in self._subscribe(options, matches, start):
                yield response
            return
        records = list(self.log.all)
        if forwards:
            if start is not None:
                records = [r for r in records if r.position >= start]
        else:
            records.reverse()
            if start is not None:
                records = [r for r in records if r.position < start]
        count = 0
        for record in records:
            if count >= options.count:
                break
            if matches(record):
                count += 1
                yield _event(record)

    async def _read_stream(
        self, options: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[streams_pb2.ReadResp]:
        name = options.stream.stream_identifier.stream_name.decode()
        stream = self.log.streams.get(name)
        if stream is not None and stream.tombstoned:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION, f"Event stream '{name}' is deleted."
            )
        records = self.log.visible(name)
        if records is None:
            yield streams_pb2.ReadResp(
                stream_not_found=streams_pb2.ReadResp.StreamNotFound(
                    stream_identifier=options.stream.stream_identifier
                )
            )
            return
        forwards = options.read_direction == streams_pb2.ReadReq.Options.Forwards
        which = options.stream.WhichOneof("revision_option")
        if not forwards:
            records = list(reversed(records))
        if which == "revision":
            revision = options.stream.revision
            records = [
                r
                for r in records
                if (r.revision >= revision if forwards else r.revision <= revision)
            ]
        for record in records[: options.count]:
            yield _event(record)

    @staticmethod
    def _filter(options: Any) -> Any:
        if options.WhichOneof("filter_option") != "filter":
            return lambda _record: True
        f = options.filter
        by_stream = f.WhichOneof("filter") == "stream_identifier"
        expression = f.stream_identifier if by_stream else f.event_type
        prefixes = tuple(expression.prefix)
        pattern = re.compile(expression.regex) if expression.regex else None

        def matches(record: Record) -> bool:
            subject = record.stream if by_stream else record.type
            if prefixes:
                return subject.startswith(prefixes)
            return pattern is None or pattern.search(subject) is not None

        return matches

    async def _subscribe(
        self, options: Any, matches: Any, start: int | None
    ) -> AsyncIterator[streams_pb2.ReadResp]:
        yield streams_pb2.ReadResp(
            confirmation=streams_pb2.ReadResp.SubscriptionConfirmation(
                subscription_id=str(uuid.uuid4())
            )
        )
        filtered = options.WhichOneof("filter_option") == "filter"
        interval = (
            max(1, options.filter.max * options.filter.checkpointIntervalMultiplier)
            if filtered
            else 0
        )
        index = (
            0
            if start is None
            else next(
                (i for i, r in enumerate(self.log.all) if r.position > start), len(self.log.all)
            )
        )
        scanned = 0
        caught_up = False
        while True:
            while index < len(self.log.all):
                record = self.log.all[index]
                index += 1
                scanned += 1
                if matches(record):
                    yield _event(record)
                elif filtered and scanned % interval == 0:
                    yield streams_pb2.ReadResp(
                        checkpoint=streams_pb2.ReadResp.Checkpoint(
                            commit_position=record.position,
                            prepare_position=record.position,
                            timestamp=timestamp_pb2.Timestamp(seconds=int(time.time())),
                        )
                    )
            if not caught_up:
                caught_up = True
                head = self.log.all[index - 1].position if index else 0
                yield streams_pb2.ReadResp(
                    caught_up=streams_pb2.ReadResp.CaughtUp(
                        timestamp=timestamp_pb2.Timestamp(seconds=int(time.time())),
                        position=streams_pb2.ReadResp.Position(
                            commit_position=head, prepare_position=head
                        ),
                    )
                )
            async with self.log.changed:
                await self.log.changed.wait_for(functools.partial(self._grown_past, index))

    def _grown_past(self, index: int) -> bool:
        return len(self.log.all) > index

    # --- Streams.Delete / Tombstone -------------------------------------------------------------

    @staticmethod
    def _expected(options: Any) -> int | str:
        kind: str = options.WhichOneof("expected_stream_revision")
        return int(options.revision) if kind == "revision" else kind

    async def _wev(
        self,
        context: grpc.aio.ServicerContext,
        op: str,
        name: str,
        expected: int | str,
        actual: int,
    ) -> None:
        code = {"any": -2, "no_stream": -1, "stream_exists": -4}.get(str(expected), expected)
        await context.abort(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"{op} failed due to WrongExpectedVersion. Stream: {name}, Expected version: {code}, Actual version: {actual}",
        )

    async def Delete(
        self, request: streams_pb2.DeleteReq, context: grpc.aio.ServicerContext
    ) -> streams_pb2.DeleteResp:
        await self._faults(context, "Delete")
        options = request.options
        name = options.stream_identifier.stream_name.decode()
        stream = self.log.streams.get(name)
        if stream is not None and stream.tombstoned:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION, f"Event stream '{name}' is deleted."
            )
        actual = (
            -1
            if stream is None or not stream.records or self.log.soft_deleted(name)
            else stream.last
        )
        expected = self._expected(options)
        if (
            actual == -1
            or (isinstance(expected, int) and expected != actual)
            or expected == "no_stream"
        ):
            await self._wev(context, "Delete", name, expected, actual)
        meta = self.log.metadata(name) | {"$tb": MAX_REVISION}
        async with self.log.changed:
            (record,) = self.log.write(
                f"$${name}",
                [(str(uuid.uuid4()), "$metadata", "application/json", orjson.dumps(meta), b"")],
            )
            self.log.changed.notify_all()
        return streams_pb2.DeleteResp(
            position=streams_pb2.DeleteResp.Position(
                commit_position=record.position, prepare_position=record.position
            )
        )

    async def Tombstone(
        self, request: streams_pb2.TombstoneReq, context: grpc.aio.ServicerContext
    ) -> streams_pb2.TombstoneResp:
        await self._faults(context, "Tombstone")
        name = request.options.stream_identifier.stream_name.decode()
        stream = self.log.stream(name)
        if stream.tombstoned:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION, f"Event stream '{name}' is deleted."
            )
        async with self.log.changed:
            (record,) = self.log.write(
                name, [(str(uuid.uuid4()), "$streamDeleted", "application/octet-stream", b"", b"")]
            )
            stream.tombstoned = True
            self.log.changed.notify_all()
        return streams_pb2.TombstoneResp(
            position=streams_pb2.TombstoneResp.Position(
                commit_position=record.position, prepare_position=record.position
            )
        )


class _Gossip(gossip_pb2_grpc.GossipServicer):
    def __init__(self, standin: StandIn) -> None:
        self.standin = standin

    async def Read(
        self, request: shared_pb2.Empty, context: grpc.aio.ServicerContext
    ) -> gossip_pb2.ClusterInfo:
        return await self.standin._gossip(context)


class _Streams(streams_pb2_grpc.StreamsServicer):
    def __init__(self, standin: StandIn) -> None:
        self.standin = standin

    async def Read(
        self, request: streams_pb2.ReadReq, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[streams_pb2.ReadResp]:
        async for response in self.standin._read(request, context):
            yield response

    async def BatchAppend(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
        async for response in self.standin.BatchAppend(request_iterator, context):
            yield response

    async def Delete(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return await self.standin.Delete(request, context)

    async def Tombstone(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return await self.standin.Tombstone(request, context)


class StandInServer:
    """Start, stop and restart the stand-in on one loopback port, keeping its data."""

    def __init__(self, log: Log | None = None) -> None:
        self.log = log or Log()
        self.service = StandIn(self.log)
        self._server: grpc.aio.Server | None = None

    @property
    def url(self) -> str:
        return f"kurrentdb://127.0.0.1:{self.service.port}?tls=false"

    async def start(self) -> None:
        server = grpc.aio.server()
        streams_pb2_grpc.add_StreamsServicer_to_server(_Streams(self.service), server)  # type: ignore[no-untyped-call]
        gossip_pb2_grpc.add_GossipServicer_to_server(_Gossip(self.service), server)  # type: ignore[no-untyped-call]
        self.service.port = server.add_insecure_port(f"127.0.0.1:{self.service.port}")
        await server.start()
        self._server = server

    async def stop(self, grace: float | None = None) -> None:
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None


class ThreadedStandIn:
    """The stand-in on its own event loop thread, for tests whose thread blocks on a subprocess."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="standin", daemon=True)
        self._thread.start()
        self.server = StandInServer()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> None:
        self._call(self.server.start())

    def stop(self) -> None:
        self._call(self.server.stop(0))

    def records(self, stream: str) -> list[Record]:
        async def snapshot() -> list[Record]:
            found = self.server.log.streams.get(stream)
            return list(found.records) if found else []

        result: list[Record] = self._call(snapshot())
        return result

    def close(self) -> None:
        self._call(self.server.stop(0))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


async def _serve_forever(port: int) -> None:
    server = StandInServer()
    server.service.port = port
    await server.start()
    print(server.service.port, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    import sys

    asyncio.run(_serve_forever(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
