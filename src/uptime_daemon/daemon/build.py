"""What the running daemon and the offline commands build alike: the store, the projector, state paths.

The store is selected here and only here, by the ``[store]`` setting's kind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from uptime_daemon import events
from uptime_daemon.clock import Clock
from uptime_daemon.config.model import Settings, StoreKind, StoreSettings
from uptime_daemon.errors import EventStoreUnavailable
from uptime_daemon.projector.runner import Projector
from uptime_daemon.redact import redact
from uptime_daemon.status import credibility
from uptime_daemon.store import EventStore
from uptime_daemon.store.sqlite import SqliteEventStore, sqlite_path_from_url

STATE_DIR: Final = Path("var/uptime-daemon")
"""Where state files go when the store is not a local file to put them beside."""


def kurrentdb_uri(store: StoreSettings) -> str:
    """The client URI of a KurrentDB store setting: its URL with credentials and TLS options."""
    # The KurrentDB adapter (its client, gRPC, protobuf) is loaded only for a KurrentDB store.
    from uptime_daemon.store.kurrentdb import connection_uri  # noqa: PLC0415

    return connection_uri(
        store.url,
        username=store.username,
        password=None if store.password is None else store.password.get_secret_value(),
        use_tls=store.use_tls,
        verify_cert=store.verify_cert,
        ca_file=store.ca_file,
    )


async def open_store(store: StoreSettings) -> EventStore:
    """Open the adapter ``store.kind`` names; ``EventStoreUnavailable`` names the (masked) URL."""
    if store.kind is StoreKind.SQLITE:
        return await SqliteEventStore.open(
            sqlite_path_from_url(store.url), digest=events.check_digest
        )
    from uptime_daemon.store.kurrentdb import KurrentDBEventStore  # noqa: PLC0415 - as above

    uri = kurrentdb_uri(store)
    try:
        return await KurrentDBEventStore.open(uri, timeout_seconds=store.operation_timeout_seconds)
    except EventStoreUnavailable as exc:
        raise EventStoreUnavailable(f"{redact(uri)}: {exc}") from exc


def database_path(store: StoreSettings) -> Path | None:
    """The SQLite file of an embedded store; ``None`` for a server."""
    return sqlite_path_from_url(store.url) if store.kind is StoreKind.SQLITE else None


def _state_file(settings: Settings, configured: str | None, suffix: str, fallback: str) -> Path:
    """A configured path, else beside the SQLite file (``events.db`` + suffix), else in ``STATE_DIR``.

    In ``STATE_DIR`` the file is named for this instance, so daemons sharing a KurrentDB from one
    host never share a file by accident.
    """
    if configured is not None:
        return Path(configured)
    database = database_path(settings.store)
    if database is not None:
        return database.with_name(database.name + suffix)
    return STATE_DIR / f"{settings.instance}.{fallback}"


def snapshot_path(settings: Settings) -> Path:
    """Where the projection snapshot and its checkpoint live."""
    return _state_file(
        settings, settings.projector.snapshot_path, ".projection.json", "projection.json"
    )


def notifier_path(settings: Settings) -> Path:
    """Where the notifier's checkpoint lives: beside the projection snapshot."""
    return snapshot_path(settings).with_suffix(".notifier.json")


def spool_path(settings: Settings) -> Path:
    """Where the outage spool lives."""
    return _state_file(settings, settings.store.spool_path, ".spool", "spool.db")


def new_projector(settings: Settings, store: EventStore, clock: Clock) -> Projector:
    """The projection of ``store``'s log under ``settings`` (snapshot not loaded yet)."""
    return Projector(
        store=store,
        clock=clock,
        default_gap_seconds=credibility(settings),
        snapshot_path=snapshot_path(settings),
        snapshot_interval_seconds=settings.projector.snapshot_interval_seconds,
        retention_seconds=settings.projector.retention_days * 86_400,
    )
