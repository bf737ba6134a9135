"""The PostgreSQL and MySQL/MariaDB probes: connect, authenticate, check the role, run the query.

Each check opens a fresh connection (a pool could keep serving from connections made before an
outage) and always closes it: politely (PostgreSQL ``Terminate``, MySQL ``COM_QUIT``) within
``CLOSE_SECONDS`` after a finished check, at once, without awaiting anything, when the caller's
``asyncio.timeout`` cancels the probe.

Phases. PostgreSQL: asyncpg connects, negotiates TLS and authenticates in one call that exposes no
intermediate moment, so ``connect`` covers all three; ``query`` covers the role query and the
health query. MySQL/MariaDB: ``connect`` is TCP plus the server's greeting, ``auth`` the rest of the
handshake (TLS is negotiated inside it, after the greeting, so its time is in ``auth``), ``query``
as for PostgreSQL.

TLS. PostgreSQL follows ``sslmode`` in the URL (or ``PGSSLMODE``; asyncpg's default ``prefer``):
``disable``, ``allow`` and ``prefer`` are left to asyncpg (they never verify a certificate);
``require``, ``verify-ca`` and ``verify-full`` get our context: TLS or failure, never plaintext.
MySQL: ``?ssl-mode=DISABLED|PREFERRED|REQUIRED|VERIFY_CA|VERIFY_IDENTITY`` (the MySQL client's
names) or ``?ssl=true`` (``VERIFY_IDENTITY``) / ``?ssl=false``; without either, no TLS, as aiomysql
does; a server that does not offer TLS when it is required fails before our credentials are sent.
Verification: ``verify-full``/``VERIFY_IDENTITY`` check the chain and the host name, ``verify-ca``/
``VERIFY_CA`` the chain, ``require``/``REQUIRED`` nothing unless a CA is given (libpq's rule). The CA
is ``ca_file``, else PostgreSQL's ``sslrootcert`` URL parameter, else the system's store (unlike
libpq, ``~/.postgresql/root.crt`` is not consulted); ``verify_tls = false`` turns verification off.

Role. PostgreSQL: ``pg_is_in_recovery()``. MySQL/MariaDB: ``@@global.read_only`` (a server that
accepts writes is a primary; MySQL's ``super_read_only`` implies ``read_only``), so a replica left
writable counts as a primary and a primary made read-only for maintenance as a replica.

Replication lag, on a replica with ``max_replication_lag_seconds``. PostgreSQL:
``now() - pg_last_xact_replay_timestamp()``, the age of the last replayed transaction: it grows while
the primary is idle (no transaction to replay), so on a quiet database pick the limit with that in
mind or have something write regularly; before any transaction has been replayed since the replica
started, the lag is unknown and the check fails. MySQL/MariaDB: ``Seconds_Behind_Source``/
``Seconds_Behind_Master`` of ``SHOW REPLICA STATUS`` (``SHOW SLAVE STATUS`` on servers that predate
it; needs the ``REPLICATION CLIENT``/``SLAVE MONITOR`` privilege); NULL (replication stopped) or no
replication configured fails the check.

``expect`` compares the first column of the first row as text: strings as they are, ``true``/
``false`` for booleans, bytes decoded as UTF-8, anything else by Python's ``str`` of the driver's
value (``Decimal('1.50')`` is ``1.50``, a float ``1.0`` is ``1.0``). NULL and an empty result match
no ``expect``.

Failure reasons (by exception type and server error code, never by message text):

* ``connection_refused``: ECONNREFUSED; ``dns``: the name does not resolve; ``connection_error``:
  other transport failures, the server closing the connection, and server-side refusals that are
  not about our credentials (too many connections, starting up);
* ``tls``: a handshake or certificate failure, or TLS required and not offered. asyncpg raises the
  same plain ``ConnectionError`` for a server that answers "no TLS" and for one that hangs up or
  answers junk to the TLS request, so with TLS required all of these are ``tls``, and without it
  ``connection_error``;
* ``auth``: the server refused the user, the password or the database (PostgreSQL SQLSTATE class 28,
  ``3D000``, ``42501``; MySQL 1044, 1045, 1049, 1130, 1251, 1698, 3118, 4151, and 2059: an
  authentication method we cannot speak);
* ``query``: the role, lag or health query failed on the server;
* ``protocol``: the peer's bytes are not the protocol (a MySQL greeting that does not parse, packets
  out of sequence; asyncpg's protocol errors). A PostgreSQL server speaks only after the client, so a
  non-PostgreSQL peer usually ends as ``connection_error`` or ``tls`` (above), not ``protocol``;
* ``role``, ``replication_lag``, ``assertion``: the checks above.

A ``postgresql://`` URL with unknown ``sslmode``, a ``mysql://`` URL with unknown parameters, or a
setting asyncpg rejects (``ClientConfigurationError``) is a configuration error: it raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import ssl
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlsplit

import aiomysql
import asyncpg
import pymysql
from asyncpg.pgproto.pgproto import (
    BufferError as PgBufferError,
)
from pymysql.constants import CLIENT, ER

from uptime_daemon.config.model import DatabaseService
from uptime_daemon.probes._classify import DETAIL_CHARS, describe
from uptime_daemon.probes.base import ProbeContext
from uptime_daemon.redact import redact
from uptime_daemon.results import FailureReason, Phase, ProbeResult

__all__ = ["as_text", "probe_mysql", "probe_postgresql"]

APPLICATION_NAME: Final = "uptime-daemon"
"""How our connections show up in ``pg_stat_activity`` and MySQL's connection attributes."""
CLOSE_SECONDS: Final = 1.0
"""How long a finished check waits for the server to take its goodbye before dropping the socket."""
SHOWN_QUERY_CHARS: Final = 60
SHOWN_VALUE_CHARS: Final = 40

_PG_ROLE: Final = (
    "SELECT pg_is_in_recovery(), "
    "extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8"
)
_PG_SSLMODES: Final = frozenset(
    {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}
)
_PG_AUTH_STATES: Final = frozenset({"3D000", "42501"})
"""Besides class 28 (invalid authorization): unknown database, no CONNECT privilege on it."""
_PG_TARGET_ERRORS: Final = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    PgBufferError,
    OSError,
)
"""What a server or the network can make asyncpg raise (``ClientConfigurationError``, an
``InterfaceError``, is filtered out: it is ours)."""

_MYSQL_ROLE: Final = "SELECT @@global.read_only"
_READ_ONLY: Final = frozenset({"1", "ON"})
_MYSQL_REPLICA_STATUS: Final = ("SHOW REPLICA STATUS", "SHOW SLAVE STATUS")
_MYSQL_LAG_COLUMNS: Final = ("Seconds_Behind_Source", "Seconds_Behind_Master")
_MYSQL_AUTH_ERRORS: Final = frozenset(
    {
        ER.DBACCESS_DENIED_ERROR,  # 1044
        ER.ACCESS_DENIED_ERROR,  # 1045
        ER.BAD_DB_ERROR,  # 1049
        ER.HOST_NOT_PRIVILEGED,  # 1130
        ER.NOT_SUPPORTED_AUTH_MODE,  # 1251
        1698,  # ER_ACCESS_DENIED_NO_PASSWORD_ERROR (MySQL)
        3118,  # ER_ACCOUNT_HAS_BEEN_LOCKED (MySQL)
        4151,  # ER_ACCOUNT_HAS_BEEN_LOCKED (MariaDB)
        2059,  # CR_AUTH_PLUGIN_CANNOT_LOAD: the server wants a method we cannot speak
    }
)
_MYSQL_CLIENT_ERRORS: Final = range(2000, 3000)
"""pymysql's own (``CR_*``) codes: the transport failed; the cause, if any, says how."""
_MYSQL_HANDSHAKE_V10: Final = 10
_MYSQL_SSL_MODES: Final = ("DISABLED", "PREFERRED", "REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY")
_MYSQL_PARAMETERS: Final = frozenset({"ssl", "ssl-mode", "ssl_mode"})
_TRUE: Final = frozenset({"true", "1", "yes", "on"})
_FALSE: Final = frozenset({"false", "0", "no", "off"})
_VERSION: Final = re.compile(r"\d+(?:\.\d+)*")


class _NotMySQL(Exception):
    """The peer's greeting is not a MySQL handshake."""


class _TlsNotOffered(Exception):
    """TLS is required and the server's greeting does not offer it."""


# -- shared: timing, results, TLS, value text, verdicts ------------------------------------------


@dataclass(slots=True)
class _Stopwatch:
    """Consecutive phases: entering one ends the previous; a failure ends the one it happened in."""

    monotonic: Callable[[], float]
    started: float = 0.0
    _phase: Phase | None = None
    _since: float = 0.0
    _totals: dict[Phase, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.started = self._since = self.monotonic()

    def enter(self, phase: Phase | None) -> float:
        """End the current phase (if any) and start ``phase``; the time now."""
        now = self.monotonic()
        if self._phase is not None:
            self._totals[self._phase] = self._totals.get(self._phase, 0.0) + now - self._since
        self._phase, self._since = phase, now
        return now

    def result(
        self, failure: FailureReason | None, detail: str, secrets: tuple[str, ...]
    ) -> ProbeResult:
        """The probe's result; the detail is redacted, stripped of ``secrets`` and shortened."""
        now = self.enter(None)
        return ProbeResult(
            ok=failure is None,
            duration_seconds=now - self.started,
            failure=failure,
            detail=_clean(detail, secrets),
            phases=dict(self._totals),
        )


def _clean(text: str, secrets: tuple[str, ...]) -> str:
    text = redact(" ".join(text.split()))
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text[:DETAIL_CHARS]


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _tls_context(*, verify_chain: bool, verify_host: bool, ca_file: str | None) -> ssl.SSLContext:
    """A client context: the chain checked against ``ca_file`` (else the system store), or nothing."""
    if verify_chain:
        context = ssl.create_default_context(cafile=ca_file)
        context.check_hostname = verify_host
        return context
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def as_text(value: object) -> str | None:
    """A query value as ``expect`` sees it; ``None`` for SQL NULL (which matches no ``expect``)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


@dataclass(frozen=True, slots=True)
class _Role:
    replica: bool
    lag_seconds: float | None = None
    lag_unknown: str = ""
    """Why ``lag_seconds`` is ``None`` when the lag was asked for."""

    def describe(self) -> str:
        if not self.replica:
            return "primary"
        if self.lag_seconds is None:
            return "replica"
        return f"replica {self.lag_seconds:.1f} s behind"


def _judge_role(
    service: DatabaseService, server: str, role: _Role
) -> tuple[FailureReason, str] | None:
    """The role and lag verdict, ``None`` when both are acceptable."""
    if service.expect_primary is not None and service.expect_primary == role.replica:
        wanted = "a primary" if service.expect_primary else "a replica"
        return FailureReason.ROLE, f"{server} is a {role.describe()}, expected {wanted}"
    limit = service.max_replication_lag_seconds
    if role.replica and limit is not None:
        if role.lag_seconds is None:
            return (
                FailureReason.REPLICATION_LAG,
                f"{server} replica: {role.lag_unknown}, limit {limit:g} s",
            )
        if role.lag_seconds > limit:
            return (
                FailureReason.REPLICATION_LAG,
                f"{server} replica is {role.lag_seconds:.1f} s behind, limit {limit:g} s",
            )
    return None


def _judge_answer(
    service: DatabaseService, *, found: bool, text: str | None
) -> tuple[FailureReason | None, str]:
    """The ``expect`` verdict and how the answer reads in the detail (``SELECT 1 → 1``)."""
    query = _shorten(service.query, SHOWN_QUERY_CHARS)
    if not found:
        shown = "no rows"
    elif text is None:
        shown = "NULL"
    else:
        shown = _shorten(text, SHOWN_VALUE_CHARS)
    if service.expect is not None and (not found or text != service.expect):
        got = shown if text is None else repr(shown)
        return FailureReason.ASSERTION, f"{query} → {got}, expected {service.expect!r}"
    return None, f"{query} → {shown}"


def _transport_reason(exc: OSError, *, tls_required: bool) -> FailureReason:
    if isinstance(exc, socket.gaierror):
        return FailureReason.DNS
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return FailureReason.TLS
    if isinstance(exc, ConnectionRefusedError):
        return FailureReason.CONNECTION_REFUSED
    if tls_required and type(exc) is ConnectionError:
        # asyncpg's answer to anything but "S" after its TLS request: "no TLS here" or junk.
        return FailureReason.TLS
    if isinstance(exc, TimeoutError):
        return FailureReason.TIMEOUT
    return FailureReason.CONNECTION_ERROR


def _transport_detail(exc: OSError, where: str) -> str:
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve {where}: {exc.strerror or exc}"
    if isinstance(exc, ssl.SSLError | ssl.CertificateError) or exc.errno is None:
        return describe(exc)
    return f"cannot connect to {where}: {os.strerror(exc.errno)}"


def _where(url: str) -> str:
    """``host:port`` of a URL (every host of a multi-host one), without credentials."""
    netloc = urlsplit(url).netloc.rpartition("@")[2]
    return netloc or "the default server"


# -- PostgreSQL ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _PgTarget:
    url: str
    where: str
    tls: ssl.SSLContext | None
    """Our context when the URL requires TLS; ``None`` leaves ``sslmode`` to asyncpg."""
    server_settings: dict[str, str]
    secrets: tuple[str, ...]


def _pg_target(service: DatabaseService, url: str) -> _PgTarget:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    mode = query.get("sslmode") or os.environ.get("PGSSLMODE") or "prefer"
    if mode not in _PG_SSLMODES:
        raise ValueError(f"postgresql URL: unknown sslmode {mode!r}")
    context = None
    if mode in {"require", "verify-ca", "verify-full"}:
        root = query.get("sslrootcert")
        ca_file = service.ca_file or (None if root == "system" else root)  # libpq 16's "system"
        context = _tls_context(
            verify_chain=service.verify_tls and (mode != "require" or ca_file is not None),
            verify_host=mode == "verify-full",
            ca_file=ca_file,
        )
        if "sslcert" in query:
            context.load_cert_chain(query["sslcert"], query.get("sslkey"))
        context.set_alpn_protocols(["postgresql"])  # what PostgreSQL 17's direct TLS asks for
    settings = {} if "application_name" in query else {"application_name": APPLICATION_NAME}
    password = unquote(parts.password or "")
    return _PgTarget(
        url=url,
        where=_where(url),
        tls=context,
        server_settings=settings,
        secrets=(password, query.get("password", "")),
    )


def _pg_server_reason(sqlstate: str, *, connecting: bool) -> FailureReason:
    if connecting:
        if sqlstate.startswith("28") or sqlstate in _PG_AUTH_STATES:
            return FailureReason.AUTH
        return FailureReason.CONNECTION_ERROR
    if sqlstate.startswith(("08", "57P")):  # connection exception, admin/crash shutdown
        return FailureReason.CONNECTION_ERROR
    return FailureReason.QUERY


def _pg_reason(exc: Exception, *, connecting: bool, tls_required: bool) -> FailureReason:
    if isinstance(exc, asyncpg.PostgresError):
        return _pg_server_reason(str(exc.sqlstate or ""), connecting=connecting)
    if isinstance(exc, asyncpg.InterfaceError):
        # While connecting: an authentication method or SCRAM proof we cannot accept; afterwards,
        # a result we cannot decode.
        return FailureReason.AUTH if connecting else FailureReason.QUERY
    if isinstance(exc, OSError):
        return _transport_reason(exc, tls_required=tls_required)
    return FailureReason.PROTOCOL


def _pg_failure(
    watch: _Stopwatch, target: _PgTarget, exc: Exception, *, connecting: bool
) -> ProbeResult:
    reason = _pg_reason(exc, connecting=connecting, tls_required=target.tls is not None)
    detail = _transport_detail(exc, target.where) if isinstance(exc, OSError) else describe(exc)
    return watch.result(reason, detail, target.secrets)


async def _pg_close(connection: asyncpg.Connection) -> None:
    """``Terminate``, waiting up to ``CLOSE_SECONDS`` for the server to hang up.

    asyncpg aborts the connection itself when that fails or is cancelled.
    """
    with contextlib.suppress(*_PG_TARGET_ERRORS):
        await connection.close(timeout=CLOSE_SECONDS)


async def _pg_check(
    connection: asyncpg.Connection, service: DatabaseService, target: _PgTarget, watch: _Stopwatch
) -> ProbeResult:
    settings = connection.get_settings()
    server = f"PostgreSQL {str(settings.server_version).split(' ', 1)[0]}"
    watch.enter(Phase.QUERY)
    try:
        replica, lag = await connection.fetchrow(_PG_ROLE)
        role = _Role(
            replica=bool(replica),
            lag_seconds=None if lag is None else float(lag),
            lag_unknown="no transaction replayed since it started",
        )
        verdict = _judge_role(service, server, role)
        if verdict is not None:
            return watch.result(*verdict, target.secrets)
        row = await connection.fetchrow(service.query)
    except _PG_TARGET_ERRORS as exc:
        return _pg_failure(watch, target, exc, connecting=False)
    found = row is not None and len(row) > 0
    failure, answer = _judge_answer(service, found=found, text=as_text(row[0]) if found else None)
    return watch.result(failure, f"{server}, {role.describe()}, {answer}", target.secrets)


async def probe_postgresql(service: DatabaseService, ctx: ProbeContext) -> ProbeResult:
    """Connect (TLS and authentication included), check the role and lag, run ``query``."""
    if service.url is None:
        raise ValueError("probe_postgresql needs a postgresql:// URL")
    target = _pg_target(service, service.url)
    watch = _Stopwatch(ctx.clock.monotonic)
    watch.enter(Phase.CONNECT)
    try:
        connection = await asyncpg.connect(
            target.url,
            timeout=None,  # the caller's deadline is the only one
            ssl=target.tls,
            statement_cache_size=0,  # a fresh connection per check: nothing to reuse
            server_settings=target.server_settings,
        )
    except asyncpg.ClientConfigurationError:
        raise  # our settings, not the server: a configuration error
    except _PG_TARGET_ERRORS as exc:
        return _pg_failure(watch, target, exc, connecting=True)
    try:
        result = await _pg_check(connection, service, target, watch)
    except BaseException:
        connection.terminate()  # never awaits: we may be cancelled by the caller's deadline
        raise
    await _pg_close(connection)
    return result


# -- MySQL / MariaDB -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _MySqlTarget:
    host: str
    port: int
    user: str | None
    password: str
    database: str | None
    tls: ssl.SSLContext | None
    tls_required: bool

    @property
    def where(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def _mysql_ssl_mode(query: dict[str, str]) -> str:
    unknown = sorted(set(query) - _MYSQL_PARAMETERS)
    if unknown:
        raise ValueError(f"mysql URL: unknown parameter {unknown[0]!r} (known: ssl, ssl-mode)")
    mode = query.get("ssl-mode") or query.get("ssl_mode")
    if mode is not None:
        mode = mode.upper()
        if mode not in _MYSQL_SSL_MODES:
            raise ValueError(f"mysql URL: unknown ssl-mode {mode!r}")
        return mode
    flag = query.get("ssl")
    if flag is None or flag.lower() in _FALSE:
        return "DISABLED"
    if flag.lower() in _TRUE:
        return "VERIFY_IDENTITY"
    raise ValueError(f"mysql URL: ssl must be true or false, not {flag!r}")


def _mysql_target(service: DatabaseService, url: str) -> _MySqlTarget:
    parts = urlsplit(url)
    mode = _mysql_ssl_mode(dict(parse_qsl(parts.query, keep_blank_values=True)))
    context = None
    if mode != "DISABLED":
        verifying = mode in {"VERIFY_CA", "VERIFY_IDENTITY"} or (
            mode == "REQUIRED" and service.ca_file is not None
        )
        context = _tls_context(
            verify_chain=service.verify_tls and verifying,
            verify_host=mode == "VERIFY_IDENTITY",
            ca_file=service.ca_file,
        )
    return _MySqlTarget(
        host=parts.hostname or "localhost",
        port=parts.port or 3306,
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password or ""),
        database=unquote(parts.path.lstrip("/")) or None,
        tls=context,
        tls_required=mode not in {"DISABLED", "PREFERRED"},
    )


class _ProbeConnection(aiomysql.Connection):  # type: ignore[misc]  # aiomysql ships no type hints
    """aiomysql's connection, checked at the two points where a probe must judge the handshake.

    The greeting is parsed by aiomysql without checks (junk surfaces as ``struct.error``,
    ``IndexError``, ``UnboundLocalError``...): that becomes ``_NotMySQL``. A server that does not
    offer TLS when it is required is refused before our credentials go out (aiomysql would carry on
    in plaintext). The end of the greeting starts the ``auth`` phase.
    """

    def __init__(self, *, watch: _Stopwatch, require_tls: bool, **options: object) -> None:
        super().__init__(**options)
        self._probe_watch = watch
        self._probe_require_tls = require_tls

    async def _get_server_information(self) -> None:
        try:
            await super()._get_server_information()
        except (IndexError, NameError, ValueError, struct.error) as exc:
            raise _NotMySQL("the greeting is not a MySQL handshake") from exc
        if self.protocol_version != _MYSQL_HANDSHAKE_V10 or not _VERSION.match(self.server_version):
            raise _NotMySQL("the greeting is not a MySQL handshake")
        self._probe_watch.enter(Phase.AUTH)

    async def _request_authentication(self) -> None:
        if self._probe_require_tls and not self.server_capabilities & CLIENT.SSL:
            raise _TlsNotOffered("TLS is required and the server does not offer it")
        await super()._request_authentication()


def _mysql_code(exc: Exception) -> int | None:
    code = exc.args[0] if exc.args else None
    return code if isinstance(code, int) else None


def _mysql_reason(exc: Exception, *, connecting: bool, tls_required: bool) -> FailureReason:
    if isinstance(exc, _TlsNotOffered):
        return FailureReason.TLS
    code = _mysql_code(exc)
    if isinstance(exc, _NotMySQL) or code is None:
        return FailureReason.PROTOCOL  # also pymysql's "packet sequence number wrong"
    if connecting and code in _MYSQL_AUTH_ERRORS:
        return FailureReason.AUTH
    if code in _MYSQL_CLIENT_ERRORS:
        cause = exc.__cause__
        if isinstance(cause, OSError):
            return _transport_reason(cause, tls_required=tls_required)
        return FailureReason.CONNECTION_ERROR
    return FailureReason.CONNECTION_ERROR if connecting else FailureReason.QUERY


def _mysql_detail(exc: Exception, where: str) -> str:
    code = _mysql_code(exc)
    cause = exc.__cause__
    if isinstance(cause, OSError) and code in _MYSQL_CLIENT_ERRORS:
        return _transport_detail(cause, where)
    if code is not None and len(exc.args) > 1:
        return f"MySQL error {code}: {exc.args[1]}"
    return describe(exc)


_MYSQL_TARGET_ERRORS: Final = (pymysql.err.MySQLError, _NotMySQL, _TlsNotOffered)


async def _mysql_rows(
    connection: _ProbeConnection, statement: str
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Column names and all rows of a small result."""
    cursor = await connection.cursor()
    try:
        await cursor.execute(statement)
        rows = await cursor.fetchall()
        names = [str(column[0]) for column in cursor.description or ()]
    finally:
        await cursor.close()
    return names, list(rows or ())


async def _mysql_lag(connection: _ProbeConnection) -> tuple[float | None, str]:
    """The replica's ``Seconds_Behind_*`` (the largest over its channels), or why there is none."""
    for statement in _MYSQL_REPLICA_STATUS:
        try:
            names, rows = await _mysql_rows(connection, statement)
            break
        except pymysql.err.ProgrammingError as exc:
            if _mysql_code(exc) != ER.PARSE_ERROR or statement == _MYSQL_REPLICA_STATUS[-1]:
                raise  # before MySQL 8.0.22 / MariaDB 10.5.1: no SHOW REPLICA STATUS
    column = next((names.index(c) for c in _MYSQL_LAG_COLUMNS if c in names), None)
    if not rows or column is None:
        return None, "read-only but not replicating"
    lags = [row[column] for row in rows]
    if any(lag is None for lag in lags):
        return None, "replication is not running"
    return float(max(lags)), ""


def _mysql_server(connection: _ProbeConnection) -> str:
    info = str(connection.get_server_info()).removeprefix("5.5.5-")  # MariaDB's old-client prefix
    product = "MariaDB" if "mariadb" in info.lower() else "MySQL"
    version = _VERSION.match(info)
    return f"{product} {version.group(0) if version else info}"


async def _mysql_check(
    connection: _ProbeConnection, service: DatabaseService, target: _MySqlTarget, watch: _Stopwatch
) -> ProbeResult:
    secrets = (target.password,)
    server = _mysql_server(connection)
    watch.enter(Phase.QUERY)
    try:
        _, rows = await _mysql_rows(connection, _MYSQL_ROLE)
        replica = bool(rows) and as_text(rows[0][0]) in _READ_ONLY
        lag, unknown = (None, "")
        if replica and service.max_replication_lag_seconds is not None:
            lag, unknown = await _mysql_lag(connection)
        role = _Role(replica=replica, lag_seconds=lag, lag_unknown=unknown)
        verdict = _judge_role(service, server, role)
        if verdict is not None:
            return watch.result(*verdict, secrets)
        # Unbuffered: only the first row is read, however large the result (the connection is
        # closed right after, unread rows and all).
        cursor = await connection.cursor(aiomysql.SSCursor)
        await cursor.execute(service.query)
        row = await cursor.fetchone()
    except _MYSQL_TARGET_ERRORS as exc:
        reason = _mysql_reason(exc, connecting=False, tls_required=target.tls_required)
        return watch.result(reason, _mysql_detail(exc, target.where), secrets)
    found = row is not None and len(row) > 0
    failure, answer = _judge_answer(service, found=found, text=as_text(row[0]) if found else None)
    return watch.result(failure, f"{server}, {role.describe()}, {answer}", secrets)


async def _mysql_close(connection: _ProbeConnection) -> None:
    """``COM_QUIT`` within ``CLOSE_SECONDS`` (the server logs no aborted connection), then close."""
    try:
        with contextlib.suppress(TimeoutError, OSError, pymysql.err.MySQLError):
            async with asyncio.timeout(CLOSE_SECONDS):
                await connection.ensure_closed()
    finally:
        connection.close()


async def _mysql_run(
    connection: _ProbeConnection, service: DatabaseService, target: _MySqlTarget, watch: _Stopwatch
) -> ProbeResult:
    watch.enter(Phase.CONNECT)
    try:
        # aiomysql.connect() would not hand us the connection to close if we are cancelled.
        await connection._connect()  # noqa: SLF001
    except _MYSQL_TARGET_ERRORS as exc:
        reason = _mysql_reason(exc, connecting=True, tls_required=target.tls_required)
        return watch.result(reason, _mysql_detail(exc, target.where), (target.password,))
    return await _mysql_check(connection, service, target, watch)


async def probe_mysql(service: DatabaseService, ctx: ProbeContext) -> ProbeResult:
    """Connect (greeting), authenticate (TLS included), check the role and lag, run ``query``."""
    if service.url is None:
        raise ValueError("probe_mysql needs a mysql:// URL")
    target = _mysql_target(service, service.url)
    watch = _Stopwatch(ctx.clock.monotonic)
    connection = _ProbeConnection(
        watch=watch,
        require_tls=target.tls_required,
        host=target.host,
        port=target.port,
        user=target.user,
        password=target.password,
        db=target.database,
        ssl=target.tls,
        autocommit=True,  # the server's default: no SET AUTOCOMMIT round trip
        program_name=APPLICATION_NAME,
    )
    try:
        result = await _mysql_run(connection, service, target, watch)
    except BaseException:
        connection.close()  # never awaits: we may be cancelled by the caller's deadline
        raise
    await _mysql_close(connection)
    return result
