"""Argument checks: caller errors, raised as ``InvalidArgument`` before anything is queued or read."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final
from uuid import UUID

from uptime_daemon.errors import InvalidArgument
from uptime_daemon.store import Expected, NewEvent, StreamState

MAX_STREAM_NAME: Final = 255


def check_stream(stream: object) -> str:
    """A stream name of 1 to ``MAX_STREAM_NAME`` characters without NUL."""
    if not isinstance(stream, str) or not stream or len(stream) > MAX_STREAM_NAME:
        raise InvalidArgument(
            f"stream name must be 1 to {MAX_STREAM_NAME} characters, got {stream!r}"
        )
    if "\x00" in stream:
        raise InvalidArgument(f"stream name must not contain NUL: {stream!r}")
    return stream


def check_at_least(name: str, value: object, minimum: int) -> None:
    """``None`` or an int (not a bool) of at least ``minimum``."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidArgument(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_expected(expected: object) -> Expected:
    """A ``StreamState`` or a revision >= 0 (not a bool)."""
    if isinstance(expected, StreamState):
        return expected
    if isinstance(expected, int) and not isinstance(expected, bool) and expected >= 0:
        return expected
    raise InvalidArgument(f"expected must be a StreamState or a revision >= 0, got {expected!r}")


def _check_event(stream: str, event: object) -> UUID:
    """The event's id, once its fields have the types the schema stores (callers are untyped too)."""
    if not isinstance(event, NewEvent) or not isinstance(event.id, UUID):
        raise InvalidArgument(f"stream {stream!r}: not a NewEvent with a UUID id: {event!r}")
    kind: object = event.type
    if not isinstance(kind, str) or not kind:
        raise InvalidArgument(f"stream {stream!r}: event {event.id} needs a non-empty type")
    data: object = event.data
    metadata: object = event.metadata
    if not isinstance(data, bytes) or not isinstance(metadata, bytes):
        raise InvalidArgument(
            f"stream {stream!r}: event {event.id} data and metadata must be bytes"
        )
    return event.id


def check_events(stream: str, events: Sequence[NewEvent]) -> tuple[NewEvent, ...]:
    """A private copy of the batch, each event well-formed and its id used once."""
    batch = tuple(events)
    ids = [_check_event(stream, event) for event in batch]
    if len(set(ids)) != len(ids):
        raise InvalidArgument(f"stream {stream!r}: an event id appears twice in one append")
    return batch
