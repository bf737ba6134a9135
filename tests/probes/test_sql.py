"""The PostgreSQL and MySQL/MariaDB probes against real servers, a replica, fakes and evil targets.

Every probe runs through ``probe_database`` (the kind's registered probe) under the caller's
deadline, as the runner applies it (``net_servers.with_deadline``).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal

import pytest
from pydantic import ValidationError

from tests.conftest import free_port
from tests.polling import until
from tests.probes.net_servers import (
    EvilPorts,
    assert_nothing_leaks,
    evil_targets,
    resolve_locally,
    with_deadline,
)
from tests.probes.sql_servers import (
    LIMITED_USER,
    PASSWORD,
    MariaDbServer,
    PgServer,
    TlsFiles,
    greeter,
    mariadb,
    mariadb_binaries,
    mysql_greeting,
    mysql_packet,
    postgres_bindir,
    postgres_primary,
    postgres_replica,
    server_directory,
    without_tls,
    write_tls,
)
from uptime_daemon.config.model import DatabaseService
from uptime_daemon.probes.base import ProbeContext
from uptime_daemon.probes.database import probe_database
from uptime_daemon.probes.sql import APPLICATION_NAME, as_text
from uptime_daemon.results import FailureReason, Phase, ProbeResult

WRONG_PASSWORD = "wr0ng-Sql-pw"  # noqa: S105 - a password the servers reject
SLEEP_SECONDS = 30


def database(url: str, **options: object) -> DatabaseService:
    return DatabaseService.model_validate({"kind": "database", "url": url, **options})


async def check(service: DatabaseService, ctx: ProbeContext) -> ProbeResult:
    """One probe under its deadline; it must finish (with a verdict) before the deadline."""
    result, _ = await with_deadline(probe_database, service, ctx)
    assert result is not None, f"the deadline cut the probe off ({service.timeout_seconds} s)"
    return result


def assert_secret_free(result: ProbeResult) -> None:
    assert PASSWORD not in result.detail
    assert WRONG_PASSWORD not in result.detail


# -- servers ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls() -> Iterator[TlsFiles]:
    with server_directory("uptime-sql-tls-") as directory:
        yield write_tls(directory)


@pytest.fixture(scope="module")
def pg(tls: TlsFiles) -> Iterator[PgServer]:
    bindir = postgres_bindir()
    if bindir is None:
        pytest.skip("needs the PostgreSQL server (Debian package postgresql)")
    with postgres_primary(bindir, tls) as server:
        yield server


@pytest.fixture(scope="module")
def pg_replica(pg: PgServer) -> Iterator[PgServer]:
    with postgres_replica(pg) as replica:
        yield replica


@pytest.fixture(scope="module")
def maria(tls: TlsFiles) -> Iterator[MariaDbServer]:
    binaries = mariadb_binaries()
    if binaries is None:
        pytest.skip("needs the MariaDB server (Debian package mariadb-server)")
    with mariadb(binaries, tls) as server:
        yield server


@pytest.fixture(scope="module")
def evil() -> Iterator[EvilPorts]:
    with evil_targets() as ports:
        yield ports


@dataclass(frozen=True)
class Flavour:
    """What differs between the servers in the tests written once for both."""

    name: str
    url: Callable[..., str]
    port: int
    product: str
    """The server part of a detail, as a regular expression."""
    no_rows: str
    no_result_set: str
    """A statement that answers with no result set at all."""
    tls_in_use: str
    """A query answering whether this very connection is TLS, and its answers for yes and no."""
    tls_yes: str
    tls_no: str
    sleep: str
    running: Callable[[], int]
    """How many of our connections are running ``sleep`` on the server right now."""
    tls_url: Callable[[str, str], str]
    """A URL for (host, the ``sslmode``/``ssl-mode`` value)."""


def _pg_flavour(pg: PgServer) -> Flavour:
    def running() -> int:
        return int(
            pg.sql(
                "SELECT count(*) FROM pg_stat_activity "  # noqa: S608 - our own constant
                f"WHERE application_name = '{APPLICATION_NAME}' AND query LIKE 'SELECT pg_sleep%'"
            )
        )

    return Flavour(
        name="postgresql",
        url=pg.url,
        port=pg.port,
        product=r"PostgreSQL \d+\.\d+",
        no_rows="SELECT 1 WHERE false",
        no_result_set="SET search_path = public",
        tls_in_use="SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        tls_yes="true",
        tls_no="false",
        sleep=f"SELECT pg_sleep({SLEEP_SECONDS})",
        running=running,
        tls_url=lambda host, mode: pg.url(host=host, sslmode=mode),
    )


def _mariadb_flavour(maria: MariaDbServer) -> Flavour:
    def running() -> int:
        return int(
            maria.sql(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                "WHERE USER = 'probe' AND INFO LIKE 'SELECT SLEEP%'"
            )
        )

    return Flavour(
        name="mariadb",
        url=maria.url,
        port=maria.port,
        product=r"MariaDB \d+\.\d+\.\d+",
        no_rows="SELECT 1 FROM DUAL WHERE 1 = 0",
        no_result_set="SET @unused = 1",
        tls_in_use=(
            "SELECT VARIABLE_VALUE LIKE 'TLS%' FROM information_schema.SESSION_STATUS "
            "WHERE VARIABLE_NAME = 'SSL_VERSION'"
        ),
        tls_yes="1",
        tls_no="0",
        sleep=f"SELECT SLEEP({SLEEP_SECONDS})",
        running=running,
        tls_url=lambda host, mode: maria.url(host=host, **{"ssl-mode": mode}),
    )


@pytest.fixture(scope="module", params=["postgresql", "mariadb"])
def server(request: pytest.FixtureRequest) -> Flavour:
    """Each real server in turn, for the tests that hold for both."""
    if request.param == "postgresql":
        return _pg_flavour(request.getfixturevalue("pg"))
    return _mariadb_flavour(request.getfixturevalue("maria"))


# -- both servers ----------------------------------------------------------------------------------


async def test_a_healthy_primary_is_up_with_its_version_role_and_answer(
    server: Flavour, ctx: ProbeContext
) -> None:
    """Connected, authenticated, queried: the detail names the server, its role and the answer."""
    result = await check(database(server.url()), ctx)
    assert result.ok, result.detail
    assert re.fullmatch(rf"{server.product}, primary, SELECT 1 → 1", result.detail), result.detail
    expected = {Phase.CONNECT, Phase.QUERY}
    if server.name == "mariadb":
        expected.add(Phase.AUTH)  # the greeting separates the two
    assert set(result.phases) == expected
    assert all(seconds >= 0 for seconds in result.phases.values())
    assert sum(result.phases.values()) <= result.duration_seconds
    assert_secret_free(result)


async def test_the_mariadb_scheme_and_postgres_scheme_reach_the_same_probes(
    pg: PgServer, maria: MariaDbServer, ctx: ProbeContext
) -> None:
    """``postgres://`` and ``mariadb://`` are aliases of ``postgresql://`` and ``mysql://``."""
    postgres = await check(database(pg.url().replace("postgresql://", "postgres://")), ctx)
    assert postgres.detail.startswith("PostgreSQL "), postgres.detail
    maria_db = await check(database(maria.url().replace("mysql://", "mariadb://")), ctx)
    assert maria_db.detail.startswith("MariaDB "), maria_db.detail


async def test_a_port_nobody_listens_on_is_refused_at_once(
    server: Flavour, ctx: ProbeContext
) -> None:
    port = free_port()
    url = server.url().replace(f":{server.port}/", f":{port}/")
    started = time.monotonic()
    result = await check(database(url), ctx)
    assert time.monotonic() - started < 1.0
    assert result.failure is FailureReason.CONNECTION_REFUSED
    assert result.detail == f"cannot connect to 127.0.0.1:{port}: Connection refused"
    assert set(result.phases) == {Phase.CONNECT}
    assert_secret_free(result)


@pytest.mark.parametrize(
    ("user", "password", "db"),
    [
        pytest.param(None, WRONG_PASSWORD, None, id="wrong-password"),
        pytest.param("nobody", PASSWORD, None, id="unknown-user"),
        pytest.param(LIMITED_USER, PASSWORD, None, id="no-access-to-the-database"),
        pytest.param(None, PASSWORD, "no_such_database", id="unknown-database"),
    ],
)
async def test_refused_credentials_are_auth_failures_without_the_password(
    server: Flavour,
    ctx: ProbeContext,
    user: str | None,
    password: str,
    db: str | None,
) -> None:
    options = (
        {"password": password} | ({"user": user} if user else {}) | ({"database": db} if db else {})
    )
    result = await check(database(server.url(**options)), ctx)
    assert result.failure is FailureReason.AUTH, result.detail
    assert_secret_free(result)
    assert Phase.QUERY not in result.phases


@pytest.mark.parametrize(
    ("query", "expect", "failure", "detail"),
    [
        pytest.param("SELECT 41 + 1", "42", None, "SELECT 41 + 1 → 42", id="match"),
        pytest.param(
            "SELECT 41 + 1",
            "43",
            FailureReason.ASSERTION,
            "SELECT 41 + 1 → '42', expected '43'",
            id="mismatch",
        ),
        pytest.param("SELECT 'ok'", "ok", None, "SELECT 'ok' → ok", id="text-match"),
        pytest.param(
            "SELECT NULL",
            "null",
            FailureReason.ASSERTION,
            "SELECT NULL → NULL, expected 'null'",
            id="null-matches-nothing",
        ),
        pytest.param("SELECT NULL", None, None, "SELECT NULL → NULL", id="null-without-expect"),
        pytest.param(
            "SELECT * FROM no_such_table",
            None,
            FailureReason.QUERY,
            "no_such_table",
            id="missing-table",
        ),
        pytest.param("SELEC 1", None, FailureReason.QUERY, "SELEC", id="syntax-error"),
    ],
)
async def test_the_query_and_its_expected_answer(
    server: Flavour,
    ctx: ProbeContext,
    query: str,
    expect: str | None,
    failure: FailureReason | None,
    detail: str,
) -> None:
    """``detail`` is the end of the detail, or for a failed query a part of the server's message."""
    options = {"query": query} | ({"expect": expect} if expect is not None else {})
    result = await check(database(server.url(), **options), ctx)
    assert result.failure is failure, result.detail
    if failure is FailureReason.QUERY:
        assert detail in result.detail, result.detail
    else:
        assert result.detail.endswith(detail), result.detail
    assert Phase.QUERY in result.phases


async def test_an_empty_result_is_up_but_fails_an_expectation(
    server: Flavour, ctx: ProbeContext
) -> None:
    result = await check(database(server.url(), query=server.no_rows, expect="1"), ctx)
    assert result.failure is FailureReason.ASSERTION
    assert result.detail.endswith("→ no rows, expected '1'"), result.detail
    for query in (server.no_rows, server.no_result_set):
        result = await check(database(server.url(), query=query), ctx)
        assert result.ok, result.detail
        assert result.detail.endswith(f"{query} → no rows"), result.detail


async def test_a_primary_where_a_replica_is_expected_is_a_role_failure(
    server: Flavour, ctx: ProbeContext
) -> None:
    result = await check(database(server.url(), expect_primary=False), ctx)
    assert result.failure is FailureReason.ROLE
    assert re.fullmatch(rf"{server.product} is a primary, expected a replica", result.detail)
    assert (await check(database(server.url(), expect_primary=True), ctx)).ok


@pytest.mark.parametrize(
    ("host", "modes", "ca", "verify", "failure", "tls_used"),
    [
        pytest.param(
            "localhost", ("verify-full", "VERIFY_IDENTITY"), True, True, None, True, id="verified"
        ),
        pytest.param(
            "127.0.0.1",
            ("verify-full", "VERIFY_IDENTITY"),
            True,
            True,
            FailureReason.TLS,
            None,
            id="name-mismatch",
        ),
        pytest.param("127.0.0.1", ("verify-ca", "VERIFY_CA"), True, True, None, True, id="ca-only"),
        pytest.param(
            "localhost",
            ("verify-full", "VERIFY_IDENTITY"),
            False,
            True,
            FailureReason.TLS,
            None,
            id="unknown-ca",
        ),
        pytest.param(
            "localhost",
            ("verify-full", "VERIFY_IDENTITY"),
            False,
            False,
            None,
            True,
            id="verify-off",
        ),
        pytest.param("127.0.0.1", ("require", "REQUIRED"), False, True, None, True, id="require"),
        pytest.param("127.0.0.1", ("disable", "DISABLED"), False, True, None, False, id="disable"),
    ],
)
async def test_tls_follows_the_url_and_the_verification_settings(
    server: Flavour,
    tls: TlsFiles,
    ctx: ProbeContext,
    monkeypatch: pytest.MonkeyPatch,
    host: str,
    modes: tuple[str, str],
    ca: bool,
    verify: bool,
    failure: FailureReason | None,
    tls_used: bool | None,
) -> None:
    """The certificate names ``localhost`` only and comes from a private CA.

    ``modes`` is the URL's ``sslmode`` for PostgreSQL and ``ssl-mode`` for MariaDB.
    """
    resolve_locally(monkeypatch)
    mode = modes[0] if server.name == "postgresql" else modes[1]
    options: dict[str, object] = {"verify_tls": verify, "query": server.tls_in_use}
    if ca:
        options["ca_file"] = str(tls.ca_file)
    result = await check(database(server.tls_url(host, mode), **options), ctx)
    assert result.failure is failure, result.detail
    if tls_used is not None:
        answer = server.tls_yes if tls_used else server.tls_no
        assert result.detail.endswith(f"→ {answer}"), result.detail
    assert_secret_free(result)


async def test_a_name_that_does_not_resolve_is_a_dns_failure(
    server: Flavour, ctx: ProbeContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = resolve_locally(monkeypatch)
    result = await check(database(server.url(host="db.invalid")), ctx)
    assert result.failure is FailureReason.DNS, result.detail
    assert asked == ["db.invalid"]
    assert result.detail.startswith("cannot resolve db.invalid:"), result.detail


async def test_a_server_that_never_answers_is_cut_off_by_the_deadline_and_leaks_nothing(
    server: Flavour, evil: EvilPorts, ctx: ProbeContext
) -> None:
    """Accepts and never speaks: the caller's deadline ends each probe; no fd or task survives."""
    url = server.url().replace(f":{server.port}/", f":{evil.hang}/")
    service = database(url, timeout_seconds=0.3, interval_seconds=1)
    results = await assert_nothing_leaks(probe_database, service, ctx)
    assert results == [None] * len(results)


async def test_a_probe_cancelled_mid_query_closes_its_connection(
    server: Flavour, ctx: ProbeContext
) -> None:
    """The server sees our query running, the deadline cancels the probe, the server sees it go."""
    service = database(server.url(), query=server.sleep, timeout_seconds=1, interval_seconds=5)
    probe = asyncio.create_task(with_deadline(probe_database, service, ctx))
    await until(lambda: asyncio.to_thread(server.running), within=5, what="the query runs")
    result, elapsed = await probe
    assert result is None
    assert elapsed < service.timeout_seconds + 1
    await until(
        lambda: asyncio.to_thread(lambda: server.running() == 0),
        within=10,
        what="the server has dropped the cancelled probe's connection",
    )


# -- PostgreSQL ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "failure", "detail"),
    [
        pytest.param({}, None, r"PostgreSQL \S+, replica [\d.]+ s behind, SELECT 1 → 1", id="up"),
        pytest.param({"expect_primary": False}, None, None, id="expected-replica"),
        pytest.param(
            {"expect_primary": True},
            FailureReason.ROLE,
            r"PostgreSQL \S+ is a replica [\d.]+ s behind, expected a primary",
            id="expected-primary",
        ),
        pytest.param({"max_replication_lag_seconds": 3600}, None, None, id="lag-within-limit"),
        pytest.param(
            # The primary is idle since the replica replayed the fixture's insert, and the lag is
            # the age of the last replayed transaction: well over a millisecond by now.
            {"max_replication_lag_seconds": 0.001},
            FailureReason.REPLICATION_LAG,
            r"PostgreSQL \S+ replica is [\d.]+ s behind, limit 0.001 s",
            id="lag-over-limit",
        ),
    ],
)
async def test_a_postgresql_streaming_replica(
    pg_replica: PgServer,
    ctx: ProbeContext,
    options: dict[str, object],
    failure: FailureReason | None,
    detail: str | None,
) -> None:
    result = await check(database(pg_replica.url(), **options), ctx)
    assert result.failure is failure, result.detail
    if detail is not None:
        assert re.fullmatch(detail, result.detail), result.detail


@pytest.mark.parametrize(
    ("sslmode", "failure"),
    [
        # asyncpg reports "the peer answered our TLS request with junk" and "the peer hung up" with
        # the same plain ConnectionError; only when TLS is required do we know it is about TLS.
        pytest.param("prefer", FailureReason.CONNECTION_ERROR, id="prefer"),
        pytest.param("require", FailureReason.TLS, id="require"),
        # Without the TLS request the startup message gets the junk; asyncpg waits for a valid
        # message until the peer hangs up.
        pytest.param("disable", FailureReason.CONNECTION_ERROR, id="disable"),
    ],
)
async def test_a_postgresql_url_to_a_server_that_answers_junk(
    pg: PgServer, evil: EvilPorts, ctx: ProbeContext, sslmode: str, failure: FailureReason
) -> None:
    url = pg.url(sslmode=sslmode).replace(f":{pg.port}/", f":{evil.garbage}/")
    result = await check(database(url, timeout_seconds=5), ctx)
    assert result.failure is failure, result.detail
    assert_secret_free(result)


async def test_tls_required_of_a_postgresql_server_without_it_fails(
    pg_replica: PgServer, ctx: ProbeContext
) -> None:
    """The replica runs without TLS: ``sslmode=require`` never falls back to plaintext."""
    result = await check(database(pg_replica.url(sslmode="require")), ctx)
    assert result.failure is FailureReason.TLS, result.detail
    assert (await check(database(pg_replica.url(sslmode="prefer")), ctx)).ok


# -- MariaDB ---------------------------------------------------------------------------------------


@pytest.fixture
def read_only(maria: MariaDbServer) -> Iterator[None]:
    """The server made read-only (what the probe takes for a replica) for one test."""
    maria.sql("SET GLOBAL read_only = 1")
    try:
        yield
    finally:
        maria.sql("SET GLOBAL read_only = 0")


@pytest.fixture
def stopped_replication(maria: MariaDbServer) -> Iterator[None]:
    """A replication source configured but not started: ``Seconds_Behind_Master`` is NULL."""
    maria.sql(
        f"CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = {free_port()}, "
        "MASTER_USER = 'nobody', MASTER_PASSWORD = 'nothing'"
    )
    try:
        yield
    finally:
        maria.sql("RESET SLAVE ALL")


@pytest.mark.usefixtures("read_only", "stopped_replication")
async def test_a_read_only_mariadb_whose_replication_is_stopped_fails_a_lag_limit(
    maria: MariaDbServer, ctx: ProbeContext
) -> None:
    result = await check(database(maria.url(), max_replication_lag_seconds=60), ctx)
    assert result.failure is FailureReason.REPLICATION_LAG, result.detail
    assert re.fullmatch(
        r"MariaDB \S+ replica: replication is not running, limit 60 s", result.detail
    ), result.detail
    assert (await check(database(maria.url(), expect_primary=False), ctx)).ok


@pytest.mark.usefixtures("read_only")
@pytest.mark.parametrize(
    ("options", "failure", "detail"),
    [
        pytest.param({}, None, r"MariaDB \S+, replica, SELECT 1 → 1", id="up"),
        pytest.param(
            {"expect_primary": True},
            FailureReason.ROLE,
            r"MariaDB \S+ is a replica, expected a primary",
            id="expected-primary",
        ),
        pytest.param({"expect_primary": False}, None, None, id="expected-replica"),
        pytest.param(
            {"max_replication_lag_seconds": 60},
            FailureReason.REPLICATION_LAG,
            r"MariaDB \S+ replica: read-only but not replicating, limit 60 s",
            id="lag-unknown",
        ),
    ],
)
async def test_a_read_only_mariadb_is_a_replica(
    maria: MariaDbServer,
    ctx: ProbeContext,
    options: dict[str, object],
    failure: FailureReason | None,
    detail: str | None,
) -> None:
    result = await check(database(maria.url(), **options), ctx)
    assert result.failure is failure, result.detail
    if detail is not None:
        assert re.fullmatch(detail, result.detail), result.detail


async def test_tls_required_of_a_mysql_server_that_does_not_offer_it_fails_before_credentials(
    maria: MariaDbServer, ctx: ProbeContext
) -> None:
    """A fake with the real server's greeting minus TLS: nothing is sent to it with TLS required.

    Without the requirement, the client answers the same greeting with its user name (so the fake
    would have seen credentials), then waits for a verdict the fake never sends.
    """
    greeting = without_tls(mysql_greeting(maria.port))
    async with greeter(greeting) as fake:
        url = maria.url(ssl="true").replace(f":{maria.port}/", f":{fake.port}/")
        result = await check(database(url, timeout_seconds=5), ctx)
        assert result.failure is FailureReason.TLS, result.detail
        await until(lambda: fake.finished == 1, what="the probe has closed its connection")
        assert fake.received == b""

        plain = maria.url().replace(f":{maria.port}/", f":{fake.port}/")
        cut_off, _ = await with_deadline(probe_database, database(plain, timeout_seconds=0.5), ctx)
        assert cut_off is None
        await until(lambda: fake.finished == 2, what="the probe has closed its connection")
        assert b"probe\0" in fake.received


@pytest.mark.parametrize(
    ("greeting", "failure"),
    [
        pytest.param(
            b"\x16\x03\x01 this is not MySQL \x00\xff\r\n", FailureReason.PROTOCOL, id="tls-junk"
        ),
        pytest.param(b"HTTP/1.1 400 Bad Request\r\n\r\n", FailureReason.PROTOCOL, id="http"),
        pytest.param(mysql_packet(b"\x0a"), FailureReason.PROTOCOL, id="truncated-handshake"),
        pytest.param(
            mysql_packet(b"\x0a" + bytes(range(256))[11:200]),
            FailureReason.PROTOCOL,
            id="junk-handshake",
        ),
        pytest.param(
            mysql_packet(b"\xff" + (1040).to_bytes(2, "little") + b"Too many connections"),
            FailureReason.CONNECTION_ERROR,
            id="too-many-connections",
        ),
        pytest.param(
            mysql_packet(
                b"\xff" + (1130).to_bytes(2, "little") + b"Host is not allowed to connect"
            ),
            FailureReason.AUTH,
            id="host-not-allowed",
        ),
    ],
)
async def test_a_mysql_url_to_a_server_that_greets_with_junk(
    maria: MariaDbServer, ctx: ProbeContext, greeting: bytes, failure: FailureReason
) -> None:
    """A MySQL server speaks first: what it says decides.

    Junk is ``protocol``; an error packet in place of the greeting is the server refusing us
    (``auth`` when it is about who we are).
    """
    async with greeter(greeting) as fake:
        url = maria.url().replace(f":{maria.port}/", f":{fake.port}/")
        result = await check(database(url, timeout_seconds=5), ctx)
    assert result.failure is failure, result.detail
    assert Phase.AUTH not in result.phases
    assert_secret_free(result)


async def test_each_mysql_check_is_one_new_connection_closed_politely(
    maria: MariaDbServer, ctx: ProbeContext
) -> None:
    """No pool: three checks, three connections, none left open, none counted as aborted."""

    def status(name: str) -> int:
        return int(maria.sql(f"SHOW GLOBAL STATUS LIKE '{name}'").split()[1])

    aborted = status("Aborted_clients")
    connections = status("Connections")
    for _ in range(3):
        assert (await check(database(maria.url()), ctx)).ok
    assert status("Connections") - connections == 3 + 1  # and the client asking for the count
    await until(
        lambda: asyncio.to_thread(lambda: status("Threads_connected") == 1),
        what="only our own status connection left",
    )
    assert status("Aborted_clients") == aborted


# -- no server -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        pytest.param(None, None, id="null"),
        pytest.param(True, "true", id="true"),
        pytest.param(False, "false", id="false"),
        pytest.param(1, "1", id="int"),
        pytest.param(Decimal("1.50"), "1.50", id="decimal"),
        pytest.param(b"ok", "ok", id="bytes"),
        pytest.param(memoryview(b"\xffok"), "\ufffdok", id="invalid-utf8"),
        pytest.param("t", "t", id="text"),
    ],
)
def test_values_as_expect_sees_them(value: object, text: str | None) -> None:
    assert as_text(value) == text


@pytest.mark.parametrize(
    ("url", "message"),
    [
        pytest.param(
            "postgresql://u:secret@127.0.0.1/db?sslmode=sometimes", "sslmode must be", id="sslmode"
        ),
        pytest.param(
            "mysql://u:secret@127.0.0.1/db?sslca=x", "unknown parameter", id="mysql-param"
        ),
        pytest.param("mysql://u:secret@127.0.0.1/db?ssl=maybe", "ssl is true", id="mysql-ssl"),
        pytest.param(
            "mysql://u:secret@127.0.0.1/db?ssl-mode=strict", "ssl-mode is", id="mysql-ssl-mode"
        ),
    ],
)
def test_a_url_with_settings_we_do_not_know_is_a_configuration_error(
    url: str, message: str
) -> None:
    """Not the server's fault, so not a result: the config is refused at load, naming the setting."""
    with pytest.raises(ValidationError, match=message) as raised:
        database(url)
    assert "secret" not in str(raised.value)
