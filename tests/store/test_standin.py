"""The KurrentDB stand-in where it was made to answer as KurrentDB does: the real client, a real socket.

Each test pins one server behaviour that the client's own test suite (single insecure node)
exercises and the stand-in used to get wrong: catch-up subscriptions to one stream, ``$all`` from
the end, the consistency check of delete and tombstone, the single-event ``Streams.Append`` RPC,
the metadata of deleted streams, and the process mode's gossip host and start-up records.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from kurrentdbclient import AsyncKurrentDBClient, KurrentDBClient, NewEvent, StreamState
from kurrentdbclient.events import RecordedEvent
from kurrentdbclient.exceptions import (
    FailedPreconditionError,
    NotFoundError,
    StreamIsDeletedError,
    WrongCurrentVersionError,
)

from tests.kurrentdb_standin import MAX_REVISION, StandInServer, ThreadedStandIn

WAIT = 10.0
"""Seconds any expected message may take before the test fails instead of hanging."""
STANDIN = Path(__file__).resolve().parents[1] / "kurrentdb_standin.py"
ANY = StreamState.ANY
NO_STREAM = StreamState.NO_STREAM
EXISTS = StreamState.EXISTS


def new(kind: str = "Tested") -> NewEvent:
    return NewEvent(type=kind, data=b"{}")


def unique(prefix: str = "s") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def next_item(subscription: Any) -> RecordedEvent:
    """The subscription's next item, failing (not hanging) if it does not come."""
    item: RecordedEvent = await asyncio.wait_for(anext(subscription), WAIT)
    return item


async def until_caught_up(subscription: Any) -> tuple[list[str], RecordedEvent]:
    """The types of the events before ``caught_up``, and the ``caught_up`` itself."""
    replayed = []
    while not (item := await next_item(subscription)).is_caught_up:
        replayed.append(item.type)
    return replayed, item


async def drain(subscription: Any, seen: list[str]) -> None:
    """Collect the types of the items until the subscription fails (or one is late)."""
    while True:
        seen.append((await next_item(subscription)).type)


@pytest.fixture
async def standin() -> AsyncIterator[StandInServer]:
    server = StandInServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def client(standin: StandInServer) -> AsyncIterator[AsyncKurrentDBClient]:
    opened = AsyncKurrentDBClient(standin.url)
    await opened.connect()
    yield opened
    await opened.close()


@pytest.fixture
def threaded() -> Iterator[ThreadedStandIn]:
    """The stand-in on its own loop, for the blocking sync client."""
    server = ThreadedStandIn()
    server.start()
    yield server
    server.close()


@pytest.fixture
def sync_client(threaded: ThreadedStandIn) -> Iterator[KurrentDBClient]:
    opened = KurrentDBClient(threaded.url)
    yield opened
    opened.close()


# --- catch-up subscriptions to one stream -----------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "replayed"),
    [
        pytest.param({}, ["a", "b", "c"], id="from-start"),
        pytest.param({"stream_position": 0}, ["b", "c"], id="after-revision"),
        pytest.param({"from_end": True}, [], id="from-end"),
    ],
)
async def test_stream_subscription_replays_then_goes_live(
    client: AsyncKurrentDBClient, start: dict[str, Any], replayed: list[str]
) -> None:
    """Confirmation, the stream's history after the start, caught up at its revision, then live."""
    stream = unique()
    history = [new("a"), new("b"), new("c")]
    await client.append_to_stream(stream, events=history, current_version=NO_STREAM)
    subscription = await client.subscribe_to_stream(stream, include_caught_up=True, **start)
    try:
        seen, caught_up = await until_caught_up(subscription)
        assert seen == replayed
        assert caught_up.stream_position == 2
        await client.append_to_stream(unique(), events=[new("elsewhere")], current_version=ANY)
        await client.append_to_stream(stream, events=[new("d")], current_version=2)
        live = await next_item(subscription)
        assert (live.type, live.stream_name, live.stream_position) == ("d", stream, 3)
    finally:
        await subscription.stop()


async def test_stream_subscription_to_a_missing_stream_waits_for_it(
    client: AsyncKurrentDBClient,
) -> None:
    """A stream that does not exist yet is caught up at once; its first event then arrives live."""
    stream = unique()
    subscription = await client.subscribe_to_stream(stream, include_caught_up=True)
    try:
        seen, _ = await until_caught_up(subscription)
        assert seen == []
        await client.append_to_stream(stream, events=[new("first")], current_version=NO_STREAM)
        live = await next_item(subscription)
        assert (live.type, live.stream_position) == ("first", 0)
    finally:
        await subscription.stop()


async def test_stream_subscription_ends_when_the_stream_is_tombstoned(
    client: AsyncKurrentDBClient,
) -> None:
    """A live tombstone ends the subscription as deleted; a new one is refused before confirmation."""
    stream = unique()
    await client.append_to_stream(stream, events=[new()], current_version=NO_STREAM)
    subscription = await client.subscribe_to_stream(stream, include_caught_up=True)
    seen: list[str] = []
    try:
        await until_caught_up(subscription)
        await client.tombstone_stream(stream, current_version=0)
        with pytest.raises(StreamIsDeletedError):
            await drain(subscription, seen)
    finally:
        await subscription.stop()
    # The server sends the $streamDeleted record, then the error; the client drops what it has
    # queued but not yet handed over when the error arrives, so the record may or may not show.
    assert seen in ([], ["$streamDeleted"])
    last = await client.read_all(backwards=True, limit=1, filter_exclude=[])
    assert [(e.stream_name, e.type, e.stream_position) async for e in last] == [
        (stream, "$streamDeleted", MAX_REVISION)
    ]
    with pytest.raises(StreamIsDeletedError):
        await client.subscribe_to_stream(stream)


# --- $all from the end --------------------------------------------------------------------------------


async def test_subscribe_to_all_from_end_skips_history(client: AsyncKurrentDBClient) -> None:
    """From the end: caught up at the last position, and only what is appended afterwards."""
    tag = unique("end")
    old = await client.append_to_stream(f"{tag}-a", events=[new("old")], current_version=ANY)
    subscription = await client.subscribe_to_all(
        from_end=True,
        filter_include=[tag],
        filter_by_stream_name=True,
        filter_by_prefix=True,
        include_caught_up=True,
    )
    try:
        seen, caught_up = await until_caught_up(subscription)
        assert seen == []
        assert caught_up.commit_position == old
        await client.append_to_stream(f"{tag}-b", events=[new("new")], current_version=ANY)
        assert (await next_item(subscription)).type == "new"
    finally:
        await subscription.stop()


# --- tombstone and delete: the expected revision ------------------------------------------------------


@pytest.mark.parametrize(
    "expected",
    [
        pytest.param(0, id="stale-revision"),
        pytest.param(5, id="future-revision"),
        pytest.param(NO_STREAM, id="no-stream"),
    ],
)
async def test_tombstone_checks_the_expected_revision(
    client: AsyncKurrentDBClient, expected: int | StreamState
) -> None:
    """A wrong expectation is refused with the actual revision and leaves the stream alone."""
    stream = unique()
    await client.append_to_stream(stream, events=[new(), new()], current_version=NO_STREAM)
    with pytest.raises(WrongCurrentVersionError) as caught:
        await client.tombstone_stream(stream, current_version=expected)
    assert caught.value.actual_version == 1
    assert len(await client.get_stream(stream)) == 2
    await client.tombstone_stream(stream, current_version=1)
    with pytest.raises(StreamIsDeletedError):
        await client.get_stream(stream)
    with pytest.raises(StreamIsDeletedError):
        await client.tombstone_stream(stream, current_version=1)


@pytest.mark.parametrize(
    "expected", [pytest.param(EXISTS, id="exists"), pytest.param(0, id="revision")]
)
async def test_tombstone_expecting_a_missing_stream_is_not_found(
    client: AsyncKurrentDBClient, expected: int | StreamState
) -> None:
    """Expecting a stream that was never written to exist is "not found", and blocks nothing."""
    stream = unique()
    with pytest.raises(NotFoundError):
        await client.tombstone_stream(stream, current_version=expected)
    await client.append_to_stream(stream, events=[new()], current_version=NO_STREAM)


@pytest.mark.parametrize(
    "expected", [pytest.param(ANY, id="any"), pytest.param(NO_STREAM, id="no-stream")]
)
async def test_tombstone_of_a_missing_stream_blocks_the_name(
    client: AsyncKurrentDBClient, expected: StreamState
) -> None:
    """With ``any`` or ``no_stream`` a name never written is tombstoned for good."""
    stream = unique()
    await client.tombstone_stream(stream, current_version=expected)
    with pytest.raises(StreamIsDeletedError):
        await client.append_to_stream(stream, events=[new()], current_version=NO_STREAM)


async def test_soft_deleted_stream_keeps_its_last_revision_for_delete(
    client: AsyncKurrentDBClient,
) -> None:
    """Deleted again: its last revision is right, a stale one is wrong, "stream exists" is deleted."""
    stream = unique()
    await client.append_to_stream(stream, events=[new(), new()], current_version=NO_STREAM)
    await client.delete_stream(stream, current_version=1)
    with pytest.raises(WrongCurrentVersionError) as caught:
        await client.delete_stream(stream, current_version=0)
    assert caught.value.actual_version == 1
    await client.delete_stream(stream, current_version=1)
    await client.delete_stream(stream, current_version=NO_STREAM)
    with pytest.raises(StreamIsDeletedError):
        await client.delete_stream(stream, current_version=EXISTS)
    with pytest.raises(NotFoundError):
        await client.get_stream(stream)


async def test_soft_delete_replaces_the_metadata(client: AsyncKurrentDBClient) -> None:
    """A stream with only metadata can be deleted; the delete's metadata is ``$tb`` alone."""
    stream = unique()
    await client.set_stream_metadata(stream, metadata={"$maxAge": 60, "owner": "me"})
    await client.delete_stream(stream, current_version=ANY)
    metadata, _ = await client.get_stream_metadata(stream)
    assert metadata == {"$tb": MAX_REVISION}


async def test_revival_writes_the_events_then_the_metadata(
    client: AsyncKurrentDBClient,
) -> None:
    """Appending to a soft-deleted stream writes its events, then ``$tb`` = last + 1, in that order."""
    stream = unique()
    await client.append_to_stream(stream, events=[new(), new()], current_version=NO_STREAM)
    await client.delete_stream(stream, current_version=1)
    await client.append_to_stream(stream, events=[new("c")], current_version=NO_STREAM)
    tail = await client.read_all(backwards=True, limit=2, filter_exclude=[])
    assert [(e.stream_name, e.type) async for e in tail] == [
        (f"$${stream}", "$metadata"),
        (stream, "c"),
    ]
    assert (await client.get_stream_metadata(stream))[0] == {"$tb": 2}


async def test_metadata_written_to_a_soft_deleted_stream_undeletes_it(
    client: AsyncKurrentDBClient,
) -> None:
    """As on KurrentDB, new metadata re-points ``$tb`` past the old events: empty, not missing."""
    stream = unique()
    await client.append_to_stream(stream, events=[new(), new()], current_version=NO_STREAM)
    await client.delete_stream(stream, current_version=1)
    metadata, version = await client.get_stream_metadata(stream)
    await client.set_stream_metadata(
        stream, metadata=metadata | {"owner": "me"}, current_version=version
    )
    assert (await client.get_stream_metadata(stream))[0] == {"$tb": 2, "owner": "me"}
    assert await client.get_stream(stream) == ()
    await client.append_to_stream(stream, events=[new("c")], current_version=1)
    assert [e.stream_position for e in await client.get_stream(stream)] == [2]


async def test_metadata_of_a_tombstoned_stream_is_deleted(client: AsyncKurrentDBClient) -> None:
    """Its ``$$`` stream reads as deleted (and stays writable, as KurrentDB's does)."""
    stream = unique()
    await client.set_stream_metadata(stream, metadata={"owner": "me"})
    await client.tombstone_stream(stream, current_version=ANY)
    with pytest.raises(StreamIsDeletedError):
        await client.get_stream_metadata(stream)
    await client.set_stream_metadata(stream, metadata={"owner": "you"}, current_version=0)


# --- the single-event Streams.Append RPC (sync client) ------------------------------------------------


def test_single_event_append_goes_through_append(
    threaded: ThreadedStandIn, sync_client: KurrentDBClient
) -> None:
    """One ``NewEvent`` is sent by ``Streams.Append``; the commit position comes back; re-sent is a no-op."""
    stream = unique()
    event = new("single")
    position = sync_client.append_to_stream(stream, events=event, current_version=NO_STREAM)
    assert "Append" in threaded.server.service.calls
    assert "BatchAppend" not in threaded.server.service.calls
    assert sync_client.append_to_stream(stream, events=event, current_version=NO_STREAM) == position
    (recorded,) = sync_client.get_stream(stream)
    assert (recorded.id, recorded.type, recorded.commit_position) == (event.id, "single", position)


@pytest.mark.parametrize(
    ("exists", "expected", "actual"),
    [
        pytest.param(True, NO_STREAM, 0, id="no-stream-on-existing"),
        pytest.param(True, 5, 0, id="wrong-revision"),
        pytest.param(False, EXISTS, NO_STREAM, id="exists-on-missing"),
        pytest.param(False, 0, NO_STREAM, id="revision-on-missing"),
    ],
)
def test_single_event_append_reports_the_wrong_expected_version(
    sync_client: KurrentDBClient, exists: bool, expected: int | StreamState, actual: object
) -> None:
    """``AppendResp.wrong_expected_version`` carries the actual revision, or "no stream"."""
    stream = unique()
    if exists:
        sync_client.append_to_stream(stream, events=new(), current_version=NO_STREAM)
    with pytest.raises(WrongCurrentVersionError) as caught:
        sync_client.append_to_stream(stream, events=new(), current_version=expected)
    assert caught.value.actual_version == actual


def test_single_event_append_to_a_tombstoned_stream_fails(sync_client: KurrentDBClient) -> None:
    """The server answers Append on a tombstoned stream with the "is deleted" status."""
    stream = unique()
    sync_client.tombstone_stream(stream, current_version=ANY)
    with pytest.raises(FailedPreconditionError, match=f"Event stream '{stream}' is deleted"):
        sync_client.append_to_stream(stream, events=new(), current_version=ANY)


# --- process mode -------------------------------------------------------------------------------------


def test_process_mode_advertises_its_host_and_begins_as_a_fresh_node() -> None:
    """``--advertise-host`` is what gossip names; ``--startup-records`` writes ``$$$scavenges`` first."""
    proc = subprocess.Popen(
        [sys.executable, str(STANDIN), "0", "--advertise-host", "localhost", "--startup-records"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())  # printed once listening; "" (a failure) if it died
        client = KurrentDBClient(f"kurrentdb://127.0.0.1:{port}?tls=false")
        try:
            (member,) = client.read_gossip()
            assert (member.address, member.port) == ("localhost", port)
            first = next(iter(client.read_all(filter_exclude=[], limit=1)))
            assert (first.stream_name, first.type) == ("$$$scavenges", "$metadata")
            assert orjson.loads(first.data)["$maxAge"] == 30 * 86_400
        finally:
            client.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
