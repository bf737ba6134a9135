"""The Redis probe: a fresh connection per check, redis-py's handshake (HELLO/AUTH), PING, ROLE.

We open (and time) the stream ourselves with the TCP probe's plumbing, so DNS, connect and TLS are
separate phases and classified where they fail; redis-py then speaks the protocol on that stream.
There is no pool and no retry: one attempt, inside the caller's deadline, closed however it ends.
"""

from __future__ import annotations

from typing import Final

from redis import exceptions as redis_errors
from redis.asyncio.connection import Connection, ConnectKwargs, parse_url

from uptime_daemon.clock import Clock
from uptime_daemon.config.model import DatabaseService
from uptime_daemon.probes._attempt import Attempt
from uptime_daemon.probes._classify import describe
from uptime_daemon.probes.base import ProbeContext
from uptime_daemon.probes.session import certificate_days_left
from uptime_daemon.probes.tcp import Stream, TargetFailure, opened, tls_context, tls_note
from uptime_daemon.results import FailureReason, Phase, ProbeResult

__all__ = ["probe_redis"]

DEFAULT_PORT: Final = 6379
DETAIL_CHARS: Final = 200
_ROLES: Final = {"master": "master", "slave": "replica", "replica": "replica"}
"""``ROLE`` says ``slave`` for what the config (and Redis's own newer docs) call a replica."""


class _StreamConnection(Connection):
    """A redis-py connection over a stream we opened ourselves; it never dials on its own."""

    def __init__(self, stream: Stream, host: str, target: ConnectKwargs) -> None:
        self._stream = stream
        super().__init__(
            host=host,
            port=target.get("port", DEFAULT_PORT),
            username=target.get("username"),
            password=target.get("password"),
            db=target.get("db", 0),
            socket_timeout=None,  # the caller owns the deadline
            socket_connect_timeout=None,
            driver_info=None,  # no CLIENT SETINFO round trips
            decode_responses=True,
            encoding_errors="replace",  # a peer's bytes never raise UnicodeDecodeError
        )

    async def _connect(self) -> None:
        self._reader = self._stream.reader
        self._writer = self._stream.writer


def _classify(exc: redis_errors.RedisError) -> FailureReason:
    """Our reason for an error redis-py raised, by its type."""
    if isinstance(
        exc,
        redis_errors.AuthenticationError  # WRONGPASS, NOAUTH, "invalid password"
        | redis_errors.AuthenticationWrongNumberOfArgsError
        | redis_errors.NoPermissionError,  # the (ACL) user may not run the check
    ):
        return FailureReason.AUTH
    if isinstance(exc, redis_errors.InvalidResponse | redis_errors.DataError):
        return FailureReason.PROTOCOL
    if isinstance(exc, redis_errors.TimeoutError):
        return FailureReason.TIMEOUT
    if isinstance(exc, redis_errors.ConnectionError):
        return FailureReason.CONNECTION_ERROR
    if isinstance(exc, redis_errors.ResponseError):
        return FailureReason.QUERY  # LOADING, MASTERDOWN, BUSY: the server cannot answer now
    return FailureReason.PROTOCOL


async def _command(connection: _StreamConnection, *args: str) -> object:
    await connection.send_command(*args, check_health=False)
    reply: object = await connection.read_response()
    return reply


def _role(reply: object) -> str | None:
    """``master``/``replica``/``sentinel`` from a ``ROLE`` reply; ``None`` if it is not one."""
    if isinstance(reply, list) and reply and isinstance(reply[0], str):
        return _ROLES.get(reply[0], reply[0])
    return None


def _server(metadata: object) -> str:
    """``Redis 7.0.15`` from the HELLO reply (servers older than 6 do not send one: ``Redis``)."""
    if not isinstance(metadata, dict):
        return "Redis"
    name = str(metadata.get("server") or "redis").capitalize()
    version = metadata.get("version")
    return f"{name} {version}" if version else name


async def _converse(
    connection: _StreamConnection,
    service: DatabaseService,
    clock: Clock,
    phases: dict[Phase, float],
) -> tuple[FailureReason | None, str]:
    """Handshake, PING, and ROLE when a role is expected: the failure (if any) and a detail."""
    authenticated = connection.password is not None or connection.username is not None
    started = clock.monotonic()
    try:
        await connection.connect()  # type: ignore[no-untyped-call]
    except (AttributeError, TypeError) as exc:
        # redis-py takes HELLO's reply for a map without checking: a peer answering "+OK" lands here
        msg = f"unexpected reply to HELLO ({exc})"
        raise redis_errors.InvalidResponse(msg) from exc
    finally:
        phases[Phase.AUTH if authenticated else Phase.HANDSHAKE] = clock.monotonic() - started
    started = clock.monotonic()
    try:
        pong = await _command(connection, "PING")
        role_reply = await _command(connection, "ROLE") if service.expect_role else None
    finally:
        phases[Phase.QUERY] = clock.monotonic() - started
    if pong != "PONG":
        return FailureReason.PROTOCOL, f"PING answered {pong!r}"
    metadata = connection.handshake_metadata
    role = _role(role_reply)
    if service.expect_role is not None:
        if role is None:
            return FailureReason.PROTOCOL, f"ROLE answered {role_reply!r}"
        if role != service.expect_role:
            return FailureReason.ROLE, f"role {role}, expected {service.expect_role}"
    elif isinstance(metadata, dict) and isinstance(metadata.get("role"), str):
        role = _ROLES.get(metadata["role"], metadata["role"])
    described = ", ".join(part for part in (_server(metadata), role, pong) if part)
    return None, described


async def probe_redis(service: DatabaseService, ctx: ProbeContext) -> ProbeResult:
    """AUTH (from the URL), PING, and ``ROLE`` when ``expect_role`` is set, on a fresh connection."""
    if service.url is None:
        msg = "probe_redis needs a redis:// or rediss:// URL"
        raise ValueError(msg)
    clock = ctx.clock
    attempt = Attempt(clock)
    phases, result = attempt.phases, attempt.result

    try:
        target = parse_url(service.url)
    except ValueError as exc:  # a port that is not a number, a bad query parameter
        return result(FailureReason.CONNECTION_ERROR, f"invalid Redis URL: {exc}")
    use_tls = service.url.lower().startswith("rediss://")
    host = target.get("host", "localhost")
    try:
        context = (
            tls_context(verify=service.verify_tls, ca_file=service.ca_file) if use_tls else None
        )
        async with opened(
            host,
            target.get("port", DEFAULT_PORT),
            tls=context,
            server_name=host,
            clock=clock,
            phases=phases,
        ) as stream:
            if stream.certificate is not None:
                attempt.tls_days_left = certificate_days_left(stream.certificate, clock.now())
            connection = _StreamConnection(stream, host, target)
            try:
                failure, detail = await _converse(connection, service, clock, phases)
            except redis_errors.RedisError as exc:
                return result(_classify(exc), describe(exc))
            finally:
                await connection.disconnect(nowait=True)
            if failure is None and use_tls:
                detail += f" ({tls_note(attempt.tls_days_left)})"
            return result(failure, detail)
    except TargetFailure as exc:
        return result(exc.reason, exc.detail)
