"""A wire-compatible KurrentDB stand-in for tests: grpcio on the protobuf modules inside kurrentdbclient.

No real KurrentDB can run here (no .NET, no container engine), so the KurrentDB adapter is tested
with the real ``AsyncKurrentDBClient`` over a real loopback socket against this server. It behaves
like KurrentDB where the daemon relies on it (see ``shared/reference/kurrentdb.md``), and it is
measured against the client's own test suite for a single insecure node (see the README for the
figure and the command). It reproduces:

* ``Streams.BatchAppend`` and ``Streams.Append`` (client-streaming: options, then the proposed
  messages; the sync client's single-event append): expected-version checks, ``WrongExpectedVersion``
  in-band (``StreamDeleted`` in-band for BatchAppend, as a status for Append), idempotent re-append
  of the same event ids, commit positions with gaps, and revival of a soft-deleted stream with its
  revisions continuing.
* ``Streams.Read``: stream reads (start/end/revision, both directions, ``$tb``/``$maxCount``/
  ``$maxAge`` applied), ``$all`` reads (inclusive forwards, prefix or regex filters on stream name or
  event type), catch-up subscriptions to ``$all`` (from the start, after a position, or from the end)
  and to one stream (from the start, after a revision, or from the end): confirmation first,
  exclusive start, checkpoints when filtered, ``caught_up`` with its position or revision, then
  live. A tombstoned stream, and its ``$$`` metadata stream, read as deleted.
* ``Streams.Delete`` / ``Streams.Tombstone`` with KurrentDB's consistency check: the expected
  revision is checked against the stream's last revision even when it is soft-deleted (deleting it
  again with that revision succeeds, with a stale one is a wrong version, with ``stream_exists`` it
  "is deleted"); a stream that never existed is "not found" (actual version -1) unless tombstoned
  with ``any``/``no_stream``; a tombstoned one "is deleted"; both say "Delete failed due to
  WrongExpectedVersion" in the exact text the client parses. A soft delete writes
  ``{"$tb": Int64.MaxValue}`` as the whole new metadata; writing metadata of a soft-deleted stream
  undeletes it (``$tb`` = last + 1); a tombstone is a ``$streamDeleted`` record at revision
  Int64.MaxValue.
* ``Gossip.Read``: one leader (advertised as ``host``), or a scripted view for discovery and cluster
  tests, members in it reported dead (``is_alive`` false) on request.
* Fault injection: ``stop()``/``start()`` on the same port, ``stall_seconds`` (past a deadline),
  ``unavailable`` (every call aborts ``UNAVAILABLE``), ``not_leader`` (appends refused, leader named).

Run as a process (``python tests/kurrentdb_standin.py PORT``) it prints its port;
``--advertise-host`` names the host gossip advertises (KurrentDB's ``AdvertiseHostToClientAs``) and
``--startup-records`` begins the log as a freshly started node does (the ``$$$scavenges`` metadata).

It does not reproduce: TLS and authentication, clusters and replication (the gossip view is
scripted), persistent subscriptions, projections and the ``$et-``/``$ce-`` streams they write,
``resolve_links``, ``fell_behind``, ``ConsumerTooSlow``, scavenging, or the v2 append sessions. It
keeps three answers of the daemon's store contract (``tests/store/contract.py``) where KurrentDB's
differ: deleting an already soft-deleted stream with ``any`` is "not found" (KurrentDB: done); after
a soft delete, appends report a wrong version's actual version as "no stream" (KurrentDB: the
last revision) and refuse ``stream_exists`` as a wrong version (KurrentDB: "stream deleted").

It is a test fixture; nothing under ``src/`` imports it.
"""

from __future__ import annotations

import argparse
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
DELETED: Final = "deleted"
EXPECTED_CODES: Final = {"any": -2, "no_stream": -1, "stream_exists": -4}
"""How the server writes the expected-version states in its status texts."""
SCAVENGE_HISTORY_MAX_AGE_SECONDS: Final = 30 * 86_400
NO_STREAM_REVISION_20_6_0: Final = 2**64 - 1

Expected = int | str
"""An expected revision, or the proto's name for a state: ``any``, ``no_stream``, ``stream_exists``."""
Message = tuple[str, str, str, bytes, bytes]
"""A proposed event: id, type, content type, data, custom metadata."""


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


@dataclass(frozen=True, slots=True)
class Appended:
    """What an append came to: written (or replayed), a wrong expected version, or a deleted stream."""

    record: Record | None = None
    revision: int = -1
    """The stream's last revision when nothing was written."""
    conflict: int | None = None
    """The actual version reported for a wrong expected version (-1: no stream)."""
    deleted: bool = False


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

    def raw_metadata(self, name: str) -> dict[str, Any] | None:
        """The stream's latest ``$metadata`` as a JSON object; ``None`` if absent or not an object."""
        meta = self.streams.get(f"$${name}")
        if meta is None or not meta.records:
            return None
        try:
            value = orjson.loads(meta.records[-1].data)
        except orjson.JSONDecodeError:
            return None
        return value if isinstance(value, dict) else None

    def metadata(self, name: str) -> dict[str, Any]:
        return self.raw_metadata(name) or {}

    def soft_deleted(self, name: str) -> bool:
        return self.metadata(name).get("$tb") == MAX_REVISION

    def reads_deleted(self, name: str) -> bool:
        """Tombstoned; the ``$$`` metadata stream of a tombstoned stream reads as deleted too."""
        names = (name, name[2:]) if name.startswith("$$") else (name,)
        return any((s := self.streams.get(n)) is not None and s.tombstoned for n in names)

    def last(self, name: str) -> int:
        """The last revision ever written, whatever ``$tb`` hides (the server's raw last number)."""
        stream = self.streams.get(name)
        return stream.last if stream is not None else -1

    def write(self, name: str, events: list[Message], revision: int | None = None) -> list[Record]:
        stream = self.stream(name)
        written = []
        for event_id, kind, content_type, data, metadata in events:
            self.position += POSITION_GAP + len(data)
            record = Record(
                name,
                stream.last + 1 if revision is None else revision,
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

    def write_metadata(self, name: str, meta: dict[str, Any]) -> Record:
        (record,) = self.write(
            f"$${name}",
            [(str(uuid.uuid4()), "$metadata", "application/json", orjson.dumps(meta), b"")],
        )
        return record

    def write_startup_records(self) -> None:
        """What a freshly started node writes first: the scavenge history's retention and ACL."""
        acl = {"$r": "$ops", "$w": [], "$d": [], "$mr": [], "$mw": []}
        self.write_metadata(
            "$scavenges", {"$maxAge": SCAVENGE_HISTORY_MAX_AGE_SECONDS, "$acl": acl}
        )

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


def _now() -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=int(time.time()))


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


def _expected(options: Any, oneof: str, revision: str) -> Expected:
    """The expected revision of append or delete options, whose oneofs are named differently."""
    kind: str = options.WhichOneof(oneof)
    return int(getattr(options, revision)) if kind == revision else kind


def _messages(proposed: Any) -> list[Message]:
    return [
        (
            m.id.string,
            m.metadata.get("type", ""),
            m.metadata.get("content-type", ""),
            m.data,
            m.custom_metadata,
        )
        for m in proposed
    ]


class StandIn:
    """The gRPC services, with fault-injection switches the tests flip."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self.host = "127.0.0.1"
        """The host gossip advertises for this node."""
        self.port = 0
        self.stall_seconds = 0.0
        self.unavailable = False
        self.not_leader: tuple[str, int] | None = None
        self.members: list[tuple[str, int, Any]] | None = None
        """Gossip view: ``(host, port, VNodeState)``; default is this node alone, as leader."""
        self.dead: set[tuple[str, int]] = set()
        """``(host, port)`` of members the view reports dead: ``is_alive`` false, last state kept,
        as KurrentDB's gossip reports a member it lost until the dead-member removal period."""
        self.calls: list[str] = []

    async def _faults(self, context: grpc.aio.ServicerContext, name: str) -> None:
        self.calls.append(name)
        if self.stall_seconds:
            await asyncio.sleep(self.stall_seconds)
        if self.unavailable:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "injected: node unavailable")

    async def _refuse_unless_leader(self, context: grpc.aio.ServicerContext) -> None:
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

    @staticmethod
    async def _abort_deleted(context: grpc.aio.ServicerContext, name: str) -> None:
        await context.abort(
            grpc.StatusCode.FAILED_PRECONDITION, f"Event stream '{name}' is deleted."
        )

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
                    is_alive=(host, port) not in self.dead,
                    http_end_point=gossip_pb2.EndPoint(address=host, port=port),
                )
                for host, port, state in members
            ]
        )

    # --- Streams.BatchAppend and Streams.Append ------------------------------------------------

    async def BatchAppend(
        self,
        request_iterator: AsyncIterator[streams_pb2.BatchAppendReq],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[streams_pb2.BatchAppendResp]:
        async for request in request_iterator:
            await self._faults(context, "BatchAppend")
            await self._refuse_unless_leader(context)
            yield await self._batch_append(request)

    async def _batch_append(
        self, request: streams_pb2.BatchAppendReq
    ) -> streams_pb2.BatchAppendResp:
        options = request.options
        name = options.stream_identifier.stream_name.decode()
        expected = _expected(options, "expected_stream_position", "stream_position")
        outcome = await self._append(name, expected, _messages(request.proposed_messages))
        response = streams_pb2.BatchAppendResp(
            correlation_id=request.correlation_id, stream_identifier=options.stream_identifier
        )
        if outcome.deleted:
            packed = any_pb2.Any()
            packed.Pack(shared_pb2.StreamDeleted(stream_identifier=options.stream_identifier))
            response.error.CopyFrom(_status("Stream deleted", packed))
        elif outcome.conflict is not None:
            response.error.CopyFrom(_status("WrongExpectedVersion", _wev_detail(outcome.conflict)))
        else:
            response.success.CopyFrom(self._success(outcome.record, outcome.revision))
        return response

    async def Append(
        self,
        request_iterator: AsyncIterator[streams_pb2.AppendReq],
        context: grpc.aio.ServicerContext,
    ) -> streams_pb2.AppendResp:
        """The single-stream append: one ``options`` message, then the proposed messages."""
        await self._faults(context, "Append")
        await self._refuse_unless_leader(context)
        requests = [request async for request in request_iterator]
        if not requests or any(
            r.WhichOneof("content") != ("options" if i == 0 else "proposed_message")
            for i, r in enumerate(requests)
        ):  # the server throws InvalidOperationException, which gRPC reports as UNKNOWN
            await context.abort(grpc.StatusCode.UNKNOWN, "Exception was thrown by handler.")
        options = requests[0].options
        name = options.stream_identifier.stream_name.decode()
        expected = _expected(options, "expected_stream_revision", "revision")
        outcome = await self._append(
            name, expected, _messages(r.proposed_message for r in requests[1:])
        )
        if outcome.deleted:
            await self._abort_deleted(context, name)
        if outcome.conflict is not None:
            return streams_pb2.AppendResp(
                wrong_expected_version=self._wrong_expected(expected, outcome.conflict)
            )
        success = streams_pb2.AppendResp.Success()
        revision = outcome.record.revision if outcome.record else outcome.revision
        if revision < 0:
            success.no_stream.SetInParent()
        else:
            success.current_revision = revision
        if outcome.record is None:
            success.no_position.SetInParent()
        else:
            success.position.commit_position = outcome.record.position
            success.position.prepare_position = outcome.record.position
        return streams_pb2.AppendResp(success=success)

    @staticmethod
    def _wrong_expected(
        expected: Expected, actual: int
    ) -> streams_pb2.AppendResp.WrongExpectedVersion:
        """Both generations of the fields, as the server fills them (20.6.0 and current)."""
        wrong = streams_pb2.AppendResp.WrongExpectedVersion()
        if isinstance(expected, int):
            wrong.expected_revision = wrong.expected_revision_20_6_0 = expected
        elif expected == "no_stream":
            wrong.expected_no_stream.SetInParent()
            wrong.expected_revision_20_6_0 = NO_STREAM_REVISION_20_6_0
        elif expected == "stream_exists":
            wrong.expected_stream_exists.SetInParent()
            wrong.stream_exists_20_6_0.SetInParent()
        else:
            wrong.expected_any.SetInParent()
            wrong.any_20_6_0.SetInParent()
        if actual < 0:
            wrong.current_no_stream.SetInParent()
            wrong.no_stream_20_6_0.SetInParent()
        else:
            wrong.current_revision = wrong.current_revision_20_6_0 = actual
        return wrong

    async def _append(self, name: str, expected: Expected, messages: list[Message]) -> Appended:
        """The expected-version check and the write, shared by both append RPCs."""
        stream = self.log.streams.get(name)
        if stream is not None and stream.tombstoned:
            return Appended(deleted=True)
        deleted = self.log.soft_deleted(name)
        last = stream.last if stream is not None else -1
        actual = -1 if deleted else last
        replay = self._idempotent(stream, [m[0] for m in messages], expected)
        if replay is CORRUPTED_IDEMPOTENCY:
            return Appended(conflict=actual)
        if isinstance(replay, Record):
            return Appended(record=replay)
        ok = (
            expected == "any"
            or (expected == "no_stream" and actual == -1)
            or (expected == "stream_exists" and actual >= 0)
            or expected in {actual, last}
        )
        if not ok:
            return Appended(conflict=actual)
        original = name[2:] if name.startswith("$$") else None
        undeletes = original is not None and self.log.soft_deleted(original)
        async with self.log.changed:
            written = self.log.write(name, messages)
            if deleted:  # revive: revisions continue, $tb re-pointed past the old events
                self.log.write_metadata(name, self.log.metadata(name) | {"$tb": last + 1})
            written_meta = self.log.raw_metadata(original) if original is not None else None
            if original is not None and undeletes and written_meta is not None:
                # Metadata written to a soft-deleted stream undeletes it, past its old events.
                self.log.write_metadata(
                    original, written_meta | {"$tb": self.log.last(original) + 1}
                )
            self.log.changed.notify_all()
        return Appended(record=written[-1] if written else None, revision=last)

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
    def _idempotent(stream: Stream | None, ids: list[str], expected: Expected) -> object | None:
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
        before = first - 1
        if (
            expected == "any"
            or (expected == "no_stream" and before == -1)
            or (expected == "stream_exists" and before >= 0)
            or expected == before
        ):
            return run[-1]
        return None

    # --- Streams.Read ---------------------------------------------------------------------------

    async def _read(
        self, request: streams_pb2.ReadReq, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[streams_pb2.ReadResp]:
        await self._faults(context, "Read")
        options = request.options
        subscription = options.WhichOneof("count_option") == "subscription"
        if options.WhichOneof("stream_option") == "stream":
            reader = (
                self._subscribe_stream(options, context)
                if subscription
                else self._read_stream(options, context)
            )
            async for response in reader:
                yield response
            return
        matches = self._filter(options)
        which = options.all.WhichOneof("all_option")
        start = options.all.position.commit_position if which == "position" else None
        if subscription:
            # Where to resume is fixed now, before the confirmation lets the client append more.
            index = 0 if which == "start" else len(self.log.all)
            if start is not None:
                index = next((i for i, r in enumerate(self.log.all) if r.position > start), index)
            async for response in self._subscribe(options, matches, index):
                yield response
            return
        for record in self._read_all(options, matches, which, start):
            yield _event(record)

    def _read_all(
        self, options: Any, matches: Any, which: str | None, start: int | None
    ) -> list[Record]:
        """``$all``: inclusive of ``start`` forwards, exclusive backwards; ``count`` after filtering."""
        records = list(self.log.all)
        if options.read_direction == streams_pb2.ReadReq.Options.Forwards:
            if which == "end":
                records = []
            elif start is not None:
                records = [r for r in records if r.position >= start]
        else:
            records.reverse()
            if start is not None:
                records = [r for r in records if r.position < start]
        return [r for r in records if matches(r)][: options.count]

    async def _read_stream(
        self, options: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[streams_pb2.ReadResp]:
        name = options.stream.stream_identifier.stream_name.decode()
        if self.log.reads_deleted(name):
            await self._abort_deleted(context, name)
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

    @staticmethod
    def _confirmation() -> streams_pb2.ReadResp:
        return streams_pb2.ReadResp(
            confirmation=streams_pb2.ReadResp.SubscriptionConfirmation(
                subscription_id=str(uuid.uuid4())
            )
        )

    async def _subscribe(
        self, options: Any, matches: Any, index: int
    ) -> AsyncIterator[streams_pb2.ReadResp]:
        """``$all``: replay from ``index`` in the log, ``caught_up``, then live."""
        yield self._confirmation()
        filtered = options.WhichOneof("filter_option") == "filter"
        interval = (
            max(1, options.filter.max * options.filter.checkpointIntervalMultiplier)
            if filtered
            else 0
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
                            timestamp=_now(),
                        )
                    )
            if not caught_up:
                caught_up = True
                head = self.log.all[index - 1].position if index else 0
                yield streams_pb2.ReadResp(
                    caught_up=streams_pb2.ReadResp.CaughtUp(
                        timestamp=_now(),
                        position=streams_pb2.ReadResp.Position(
                            commit_position=head, prepare_position=head
                        ),
                    )
                )
            async with self.log.changed:
                await self.log.changed.wait_for(functools.partial(self._grown_past, index))

    async def _subscribe_stream(
        self, options: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[streams_pb2.ReadResp]:
        """One stream: catch up through stream reads past the checkpoint, ``caught_up``, then live.

        As the server's ``StreamSubscription``: the checkpoint is the revision already seen (-1 from
        the start, the last revision at subscription time from the end); catch-up applies ``$tb``/
        ``$maxCount``/``$maxAge`` like a read, live events are every new record of the stream; a
        tombstone ends the subscription with "is deleted", before confirmation if already there.
        """
        name = options.stream.stream_identifier.stream_name.decode()
        if self.log.reads_deleted(name):
            await self._abort_deleted(context, name)
        which = options.stream.WhichOneof("revision_option")
        last_at_subscription = self.log.last(name)
        seen = len(self.log.all)
        yield self._confirmation()
        checkpoint = {
            "start": -1,
            "end": last_at_subscription,
            "revision": int(options.stream.revision),
        }[which]
        if checkpoint < last_at_subscription:
            if self.log.reads_deleted(name):
                await self._abort_deleted(context, name)
            for record in self.log.visible(name) or []:
                if record.revision > checkpoint:
                    checkpoint = record.revision
                    yield _event(record)
        caught_up = streams_pb2.ReadResp.CaughtUp(timestamp=_now())
        if checkpoint >= 0:
            caught_up.stream_revision = checkpoint
        yield streams_pb2.ReadResp(caught_up=caught_up)
        while True:
            while seen < len(self.log.all):
                record = self.log.all[seen]
                seen += 1
                if record.stream == name and record.revision > checkpoint:
                    checkpoint = record.revision
                    yield _event(record)
                    if record.type == "$streamDeleted":
                        await self._abort_deleted(context, name)
            async with self.log.changed:
                await self.log.changed.wait_for(functools.partial(self._grown_past, seen))

    def _grown_past(self, index: int) -> bool:
        return len(self.log.all) > index

    # --- Streams.Delete / Tombstone -------------------------------------------------------------

    def _delete_check(self, name: str, expected: Expected) -> int | str | None:
        """KurrentDB's check before a delete: ``None`` (go ahead), ``DELETED`` or the actual version.

        An actual version of -1 is the client's "not found". The server checks one new event id
        against the stream's last revision as written, so a soft-deleted stream keeps its last
        revision: deleting it again with that revision, ``any`` or ``no_stream`` goes ahead, a
        stale revision is wrong, and ``stream_exists`` "is deleted".
        """
        stream = self.log.streams.get(name)
        if stream is not None and stream.tombstoned:
            return DELETED
        last = self.log.last(name)
        soft = self.log.soft_deleted(name)
        if expected == "stream_exists":
            if soft:
                return DELETED
            return -1 if last < 0 and self.log.last(f"$${name}") < 0 else None
        if expected == "any":
            return None
        wanted = -1 if expected == "no_stream" else int(expected)
        if wanted < last:
            return None if expected == "no_stream" and soft else last
        return last if wanted > last else None

    async def _refuse_delete(
        self, context: grpc.aio.ServicerContext, name: str, expected: Expected
    ) -> None:
        check = self._delete_check(name, expected)
        if check == DELETED:
            await self._abort_deleted(context, name)
        if isinstance(check, int):
            await self._wev(context, name, expected, check)

    @staticmethod
    async def _wev(
        context: grpc.aio.ServicerContext, name: str, expected: Expected, actual: int
    ) -> None:
        """Delete and tombstone both say "Delete", as the server does."""
        code = EXPECTED_CODES.get(str(expected), expected)
        await context.abort(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"Delete failed due to WrongExpectedVersion. Stream: {name}, Expected version: {code}, Actual version: {actual}",
        )

    async def Delete(
        self, request: streams_pb2.DeleteReq, context: grpc.aio.ServicerContext
    ) -> streams_pb2.DeleteResp:
        await self._faults(context, "Delete")
        options = request.options
        name = options.stream_identifier.stream_name.decode()
        expected = _expected(options, "expected_stream_revision", "revision")
        await self._refuse_delete(context, name, expected)
        never_existed = self.log.last(name) < 0 and self.log.last(f"$${name}") < 0
        if never_existed:
            await self._wev(context, name, expected, -1)
        async with self.log.changed:
            record = self.log.write_metadata(name, {"$tb": MAX_REVISION})
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
        expected = _expected(request.options, "expected_stream_revision", "revision")
        await self._refuse_delete(context, name, expected)
        async with self.log.changed:
            (record,) = self.log.write(
                name,
                [(str(uuid.uuid4()), "$streamDeleted", "application/octet-stream", b"", b"")],
                revision=MAX_REVISION,
            )
            self.log.stream(name).tombstoned = True
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

    async def Append(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
        return await self.standin.Append(request_iterator, context)

    async def Delete(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return await self.standin.Delete(request, context)

    async def Tombstone(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return await self.standin.Tombstone(request, context)


class StandInServer:
    """Start, stop and restart the stand-in on one loopback port, keeping its data."""

    def __init__(self, log: Log | None = None, *, bind: str = "127.0.0.1") -> None:
        self.log = log or Log()
        self.service = StandIn(self.log)
        self.bind = bind
        """The address to listen on: loopback, or a test network namespace's link address."""
        self._server: grpc.aio.Server | None = None

    @property
    def url(self) -> str:
        return f"kurrentdb://{self.bind}:{self.service.port}?tls=false"

    async def start(self) -> None:
        server = grpc.aio.server()
        streams_pb2_grpc.add_StreamsServicer_to_server(_Streams(self.service), server)  # type: ignore[no-untyped-call]
        gossip_pb2_grpc.add_GossipServicer_to_server(_Gossip(self.service), server)  # type: ignore[no-untyped-call]
        self.service.port = server.add_insecure_port(f"{self.bind}:{self.service.port}")
        await server.start()
        self._server = server

    async def stop(self, grace: float | None = None) -> None:
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None


class ThreadedStandIn:
    """The stand-in on its own event loop thread, for tests whose thread blocks on a subprocess."""

    def __init__(self, *, bind: str = "127.0.0.1") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="standin", daemon=True)
        self._thread.start()
        self.server = StandInServer(bind=bind)

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


async def _serve_forever(port: int, advertise_host: str, *, startup_records: bool) -> None:
    server = StandInServer()
    if startup_records:
        server.log.write_startup_records()
    server.service.port = port
    server.service.host = advertise_host
    await server.start()
    print(server.service.port, flush=True)
    await asyncio.Event().wait()


def _main() -> None:
    parser = argparse.ArgumentParser(description="The KurrentDB stand-in on 127.0.0.1.")
    parser.add_argument("port", type=int, nargs="?", default=0, help="0 for any free port")
    parser.add_argument(
        "--advertise-host",
        default="127.0.0.1",
        help="the host gossip names for this node (KurrentDB's AdvertiseHostToClientAs)",
    )
    parser.add_argument(
        "--startup-records",
        action="store_true",
        help="begin the log with the records a freshly started node writes",
    )
    args = parser.parse_args()
    asyncio.run(
        _serve_forever(args.port, args.advertise_host, startup_records=args.startup_records)
    )


if __name__ == "__main__":
    _main()
