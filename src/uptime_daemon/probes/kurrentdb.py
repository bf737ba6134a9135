"""The KurrentDB probe: a cluster's gossip, then a write/read round trip on its leader.

Each check opens its own connections and closes them in ``finally``: one gRPC channel per gossip
read, and one ``AsyncKurrentDBClient`` (wrapped in our ``KurrentDBEventStore`` adapter, so the
round trip and the ``$maxAge``/``$maxCount`` metadata behave as on the daemon's own store).

1. **Gossip** (phase ``connect``): ``Gossip.Read`` from the URL's members in turn, the first that
   answers giving the view. The probe reads it itself rather than through the client, whose
   ``ClusterMember`` drops ``is_alive``: KurrentDB keeps a dead member in its gossip, in the last
   state it had (a dead leader still says ``Leader``) with ``is_alive`` false, until an election or
   the dead-member removal period. A server without gossip is a plain node without a view.
2. **Verdict**: no live leader, or fewer live members than ``min_alive_members``, is ``cluster``
   (down); a member down while a leader serves is ``degraded``. So a cluster whose leader stopped is
   ``cluster`` as long as a member still answers gossip; when none answers it is the connection's
   reason (``connection_refused`` when every member refuses).
3. **Round trip** (phases ``write``, ``read``): on the live leader when the view has several
   members (a cluster's members take writes only as leader, whichever the URL names), else on the
   URL's node: the health-check stream's retention metadata set if it differs, one
   ``HealthCheckPerformed`` appended and read back, as ``probes/database.py`` does on the daemon's
   own store.

Reasons: refused → ``connection_refused``; other transport failures → ``connection_error``; a TLS
failure → ``tls``; refused credentials (``UNAUTHENTICATED``/``PERMISSION_DENIED``) → ``auth``; the
round trip failing on a reachable server → ``store_error``. The probe sets no deadline of its own
beyond the client's per-call one (the service's timeout), so the caller's ``asyncio.timeout`` acts.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import grpc
from kurrentdbclient import AsyncKurrentDBClient
from kurrentdbclient.common import BasicAuthCallCredentials
from kurrentdbclient.connection_spec import URI_SCHEMES_DISCOVER, ConnectionSpec
from kurrentdbclient.exceptions import (
    AccessDeniedError,
    DeadlineExceededError,
    KurrentDBClientError,
    ServiceUnavailableError,
    SSLError,
    UnauthenticatedError,
)
from kurrentdbclient.protos.v1 import gossip_pb2, gossip_pb2_grpc, shared_pb2

from uptime_daemon.clock import Clock
from uptime_daemon.config.model import DatabaseService
from uptime_daemon.errors import EventStoreError
from uptime_daemon.probes.base import ProbeContext
from uptime_daemon.probes.grpc_health import (
    NO_VERIFY_HINT,
    channel_options,
    hinted,
    read_roots,
    status_text,
    unavailable_reason,
)
from uptime_daemon.probes.round_trip import (
    HEALTH_CHECK_EVENT,
    NotReadBack,
    keep_temporary,
    round_trip,
)
from uptime_daemon.redact import redact
from uptime_daemon.results import FailureReason, Phase, ProbeResult
from uptime_daemon.store.kurrentdb import KurrentDBEventStore, connection_uri

"""The event type of the round trip, as the own-store probe writes it."""
"""When the stream's last event is not ours (other daemons share the stream), look this far back."""
DETAIL_CHARS: Final = 200
CLOSE_SECONDS: Final = 2.0
"""How long closing the client may take; its channel gives in-flight calls a grace period."""
_LEADER: Final = gossip_pb2.MemberInfo.Leader
_GONE: Final = frozenset({gossip_pb2.MemberInfo.ShuttingDown, gossip_pb2.MemberInfo.Shutdown})
_AUTH_CODES: Final = frozenset({grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED})


class _Failed(Exception):
    """A check step failed for a reason of the target's; carries the result's reason and detail."""

    def __init__(self, reason: FailureReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = redact(detail)[:DETAIL_CHARS]


@dataclass(frozen=True, slots=True)
class Member:
    """One member as a gossip answer describes it."""

    address: str
    port: int
    state: int
    """``gossip_pb2.MemberInfo.VNodeState``."""
    is_alive: bool

    @property
    def endpoint(self) -> str:
        """``host:port`` (the HTTP endpoint, which also carries gRPC); ``[v6]:port`` for IPv6."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"

    @property
    def alive(self) -> bool:
        """Alive by gossip and not on its way out."""
        return self.is_alive and self.state not in _GONE


@dataclass(frozen=True, slots=True)
class ClusterHealth:
    """What a gossip view says about the cluster: its leader, or why it is down, or why impaired."""

    leader: Member | None
    alive: int
    total: int
    problem: str | None
    """Set when the cluster is down (no live leader, too few members alive)."""
    degraded: str | None
    """Set when it serves with members down."""


def assess(members: Sequence[Member], *, min_alive_members: int | None) -> ClusterHealth:
    """The verdict of one gossip view: a pure function of the members and the required count."""
    alive = [m for m in members if m.alive]
    leaders = [m for m in alive if m.state == _LEADER]
    total = len(members)
    counted = f"{len(alive)} of {total} members alive"
    problem: str | None = None
    if not leaders:
        problem = f"no leader; {counted}"
    elif len(leaders) > 1:
        problem = f"{len(leaders)} leaders ({', '.join(m.endpoint for m in leaders)}); {counted}"
    elif min_alive_members is not None and len(alive) < min_alive_members:
        problem = f"{counted}, at least {min_alive_members} required"
    down = total - len(alive)
    return ClusterHealth(
        leader=leaders[0] if len(leaders) == 1 else None,
        alive=len(alive),
        total=total,
        problem=problem,
        degraded=f"{down} of {total} members down" if down and problem is None else None,
    )


@dataclass(frozen=True, slots=True)
class _Connection:
    """How to reach the members: the parsed URI, TLS roots and the call credentials."""

    uri: str
    spec: ConnectionSpec
    roots: bytes | None
    verify_tls: bool
    options: tuple[tuple[str, int], ...]
    """``channel_options`` for the service's timeout, for every channel of the check."""

    @property
    def is_cluster(self) -> bool:
        return self.spec.scheme in URI_SCHEMES_DISCOVER or len(self.spec.targets) > 1

    @property
    def call_credentials(self) -> grpc.CallCredentials | None:
        """Basic credentials, sent only over TLS (as the client does)."""
        user, password = self.spec.username, self.spec.password
        if not (self.spec.options.tls and user and password):
            return None
        return grpc.metadata_call_credentials(BasicAuthCallCredentials(user, password))

    def channel(self, target: str) -> grpc.aio.Channel:
        if not self.spec.options.tls:
            return grpc.aio.insecure_channel(target, options=self.options)
        credentials = grpc.ssl_channel_credentials(root_certificates=self.roots)
        return grpc.aio.secure_channel(target, credentials, options=self.options)

    def node_uri(self, target: str) -> str:
        """The URI for one node: the scheme without ``+discover``, the one host, the same options."""
        parts = urlsplit(self.uri)
        userinfo, at, _ = parts.netloc.rpartition("@")
        scheme = parts.scheme.removesuffix("+discover")
        return urlunsplit((scheme, f"{userinfo}{at}{target}", parts.path, parts.query, ""))

    def failure(self, reason: FailureReason, text: str) -> _Failed:
        if reason is FailureReason.TLS and not self.verify_tls:
            text = hinted(text, NO_VERIFY_HINT)
        return _Failed(reason, text)


def _rpc_failed(connection: _Connection, error: grpc.aio.AioRpcError, target: str) -> _Failed:
    code = error.code()
    if code == grpc.StatusCode.UNAVAILABLE:
        reason = unavailable_reason(error.details() or "")
    elif code in _AUTH_CODES:
        reason = FailureReason.AUTH
    elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
        reason = FailureReason.TIMEOUT
    else:
        reason = FailureReason.STORE_ERROR
    return connection.failure(reason, f"gossip from {target}: {status_text(error)}")


async def _gossip_from(
    connection: _Connection, target: str, deadline_seconds: float | None
) -> tuple[Member, ...]:
    channel = connection.channel(target)
    try:
        stub = gossip_pb2_grpc.GossipStub(channel)  # type: ignore[no-untyped-call]  # generated
        info = await stub.Read(
            shared_pb2.Empty(), timeout=deadline_seconds, credentials=connection.call_credentials
        )
    finally:
        await channel.close()  # no grace: returns at once, also when the caller cancels
    return tuple(
        Member(
            address=m.http_end_point.address,
            port=m.http_end_point.port,
            state=m.state,
            is_alive=m.is_alive,
        )
        for m in info.members
    )


async def read_gossip(connection: _Connection) -> tuple[Member, ...] | None:
    """The first view a member gives; ``None`` when the server has no gossip service.

    With several hosts each gets the URI's ``GossipTimeout``, so one that never answers does not
    hide the others; a single host has no deadline but the caller's.
    """
    targets = connection.spec.targets
    deadline_seconds = connection.spec.options.gossip_timeout if len(targets) > 1 else None
    failed: _Failed | None = None
    for target in targets:
        try:
            return await _gossip_from(connection, target, deadline_seconds)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                return None
            failed = _rpc_failed(connection, exc, target)
    assert failed is not None  # noqa: S101 - a URI always names at least one host
    raise failed


def _client_failed(connection: _Connection, error: BaseException, target: str) -> _Failed:
    """The reason of a round trip that failed: the client's error is the adapter's cause."""
    cause = error
    if isinstance(error, EventStoreError) and error.__cause__ is not None:
        cause = error.__cause__
    if isinstance(cause, UnauthenticatedError | AccessDeniedError):
        reason = FailureReason.AUTH
    elif isinstance(cause, SSLError):
        reason = FailureReason.TLS
    elif isinstance(cause, ServiceUnavailableError):
        reason = unavailable_reason(str(cause))
    elif isinstance(cause, DeadlineExceededError):
        reason = FailureReason.TIMEOUT
    else:
        reason = FailureReason.STORE_ERROR
    lines = str(cause).splitlines()
    what = f"{type(cause).__name__}: {lines[0]}" if lines else type(cause).__name__
    return connection.failure(reason, f"round trip on {target}: {what}")


async def _round_trip(
    store: KurrentDBEventStore, service: DatabaseService, clock: Clock
) -> dict[Phase, float]:
    """Retention metadata if it differs, then append one event and read it back."""
    await keep_temporary(store, service)
    try:
        return await round_trip(store, service.stream, HEALTH_CHECK_EVENT, clock)
    except NotReadBack as exc:
        raise _Failed(FailureReason.STORE_ERROR, str(exc)) from exc


async def _close(store: KurrentDBEventStore) -> None:
    """Close the client within ``CLOSE_SECONDS``, even while the probe is being cancelled."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(CLOSE_SECONDS):
            await store.close()


async def _check_node(
    connection: _Connection, target: str, service: DatabaseService, clock: Clock
) -> dict[Phase, float]:
    client = AsyncKurrentDBClient(connection.node_uri(target), root_certificates=connection.roots)
    client.grpc_options += connection.options
    store = KurrentDBEventStore(client, timeout_seconds=service.timeout_seconds)
    try:
        return await _round_trip(store, service, clock)
    except (EventStoreError, KurrentDBClientError) as exc:
        raise _client_failed(connection, exc, target) from exc
    finally:
        await _close(store)


async def _connection(service: DatabaseService) -> _Connection:
    assert service.url is not None  # noqa: S101 - only URLs of KurrentDB servers come here
    uri = connection_uri(service.url, use_tls=True, verify_cert=service.verify_tls)
    try:
        spec = ConnectionSpec(uri)
    except ValueError as exc:  # the client's own parser: the URL cannot be used as it is
        raise _Failed(FailureReason.STORE_ERROR, f"invalid KurrentDB URL: {exc}") from exc
    ca_file = service.ca_file or spec.options.tls_ca_file
    try:
        roots = await read_roots(ca_file if spec.options.tls else None)
    except OSError as exc:
        raise _Failed(FailureReason.TLS, f"cannot read the CA file: {exc.strerror}") from exc
    return _Connection(
        uri=uri,
        spec=spec,
        roots=roots,
        verify_tls=service.verify_tls,
        options=channel_options(service.timeout_seconds),
    )


def _where(
    connection: _Connection, members: Sequence[Member] | None, service: DatabaseService
) -> tuple[str, ClusterHealth | None]:
    """Where the round trip goes, and the cluster's health; ``_Failed`` when the cluster is down."""
    target = connection.spec.targets[0]
    if members is None:
        if connection.is_cluster or service.min_alive_members is not None:
            raise _Failed(FailureReason.CLUSTER, "the server offers no gossip (no cluster view)")
        return target, None
    health = assess(members, min_alive_members=service.min_alive_members)
    if health.problem is not None:
        raise _Failed(FailureReason.CLUSTER, f"KurrentDB cluster: {health.problem}")
    if health.total > 1 and health.leader is not None:
        target = health.leader.endpoint  # a member of a cluster takes writes only as leader
    return target, health


def _described(health: ClusterHealth | None, target: str, phases: dict[Phase, float]) -> str:
    round_trip = f"round trip {(phases[Phase.WRITE] + phases[Phase.READ]) * 1000:.1f} ms"
    if health is None or health.total <= 1 or health.leader is None:
        return f"KurrentDB {target}: {round_trip}"
    leader = health.leader.endpoint
    where = "" if target == leader else f" on {target}"
    return (
        f"KurrentDB cluster: leader {leader}, {health.alive} of {health.total} alive; "
        f"{round_trip}{where}"
    )


async def probe_kurrentdb(service: DatabaseService, ctx: ProbeContext) -> ProbeResult:
    """Gossip first (a cluster must have a live leader), then the round trip."""
    started = ctx.clock.monotonic()
    phases: dict[Phase, float] = {}
    try:
        connection = await _connection(service)
        members = await read_gossip(connection)
        phases[Phase.CONNECT] = ctx.clock.monotonic() - started
        target, health = _where(connection, members, service)
        phases |= await _check_node(connection, target, service, ctx.clock)
    except _Failed as failed:
        return ProbeResult(
            ok=False,
            duration_seconds=ctx.clock.monotonic() - started,
            failure=failed.reason,
            detail=failed.detail,
            phases=phases,
        )
    return ProbeResult(
        ok=True,
        duration_seconds=ctx.clock.monotonic() - started,
        detail=_described(health, target, phases),
        phases=phases,
        degraded=health.degraded if health is not None else None,
    )
