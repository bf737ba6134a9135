"""The one error tree: everything the daemon raises on purpose derives from ``UptimeDaemonError``.

Backends translate their own exceptions into these at the boundary (``raise ... from e``), so callers
never import a driver's exception classes.
"""

from __future__ import annotations


class UptimeDaemonError(Exception):
    """Root of every error the daemon raises deliberately."""


class ConfigError(UptimeDaemonError):
    """The configuration is invalid; the message names the file and the key path."""


class EventStoreError(UptimeDaemonError):
    """Anything that went wrong talking to the event store."""


class ConcurrencyConflict(EventStoreError):
    """The stream was not at the expected revision (another writer won)."""

    def __init__(self, stream: str, expected: object, actual: int | None) -> None:
        self.stream = stream
        self.expected = expected
        self.actual = actual
        shown = "no stream" if actual is None else str(actual)
        super().__init__(f"stream {stream!r}: expected {expected}, actual {shown}")


class EventStoreUnavailable(EventStoreError):
    """The store could not be reached or could not complete the operation; retrying may succeed."""


class StreamNotFound(EventStoreError):
    """The stream does not exist or was (soft) deleted."""

    def __init__(self, stream: str) -> None:
        self.stream = stream
        super().__init__(f"stream {stream!r} not found")


class StreamDeleted(EventStoreError):
    """The stream was permanently deleted (tombstoned) and can never be written again."""

    def __init__(self, stream: str) -> None:
        self.stream = stream
        super().__init__(f"stream {stream!r} is permanently deleted")


class InvalidArgument(EventStoreError):
    """A caller passed a value the store cannot accept (bad stream name, negative limit, ...)."""


class AlreadyInUse(UptimeDaemonError):
    """A file only one daemon may use (the embedded store, a spool, a snapshot) is held by another."""
