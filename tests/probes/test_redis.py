"""The Redis probe against real redis-servers: a primary with a password, its replica, a TLS one."""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

import pytest
import trustme
from cryptography import x509
from redis import Redis as SyncRedis

from tests.conftest import free_port
from tests.polling import until
from tests.probes.net_servers import (
    REDIS_PASSWORD,
    EvilPorts,
    Tls,
    assert_nothing_leaks,
    evil_targets,
    redis_server,
    write_tls,
)
from uptime_daemon.config.model import DatabaseService
from uptime_daemon.probes.base import ProbeContext
from uptime_daemon.probes.database import probe_database
from uptime_daemon.probes.redis import probe_redis
from uptime_daemon.results import FailureReason, Phase


@dataclass(frozen=True)
class Servers:
    primary: int
    replica: int
    tls: int
    tls_files: Tls
    expires: datetime
    version: str


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """A primary, its replica (role ``slave``, whether or not it has synced yet), a TLS primary."""
    root = tmp_path_factory.mktemp("redis")
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    tls = write_tls(root, leaf, ca)
    expires = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()).not_valid_after_utc
    banner = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=True
    ).stdout
    version = re.search(r"v=(\S+)", banner)
    assert version is not None, banner
    with (
        redis_server(root / "primary") as primary,
        redis_server(root / "replica", replica_of=primary) as replica,
        redis_server(root / "tls", tls=tls) as tls_port,
    ):
        yield Servers(primary, replica, tls_port, tls, expires, version.group(1))


@pytest.fixture(scope="module")
def evil() -> Iterator[EvilPorts]:
    with evil_targets() as ports:
        yield ports


def url(port: int, password: str | None = REDIS_PASSWORD, scheme: str = "redis") -> str:
    credentials = f":{password}@" if password is not None else ""
    return f"{scheme}://{credentials}127.0.0.1:{port}/0"


def redis(url: str, **options: object) -> DatabaseService:
    return DatabaseService.model_validate({"kind": "database", "url": url, **options})


async def test_primary_answers_with_its_version_role_and_pong(
    servers: Servers, ctx: ProbeContext
) -> None:
    """AUTH and PING on a fresh connection; the detail names the server's version and role."""
    result = await probe_redis(redis(url(servers.primary)), ctx)
    assert result.ok, result.detail
    assert result.detail == f"Redis {servers.version}, master, PONG"
    assert {Phase.CONNECT, Phase.AUTH, Phase.QUERY} <= set(result.phases)
    assert Phase.TLS not in result.phases
    assert result.tls_days_left is None


async def test_the_database_probe_hands_redis_urls_to_the_redis_probe(
    servers: Servers, ctx: ProbeContext
) -> None:
    """``kind = "database"`` with a redis:// URL reaches this probe (not the own-store round trip)."""
    result = await probe_database(redis(url(servers.primary)), ctx)
    assert result.ok, result.detail
    assert result.detail.endswith("master, PONG")


@pytest.mark.parametrize(
    ("server", "expect_role", "failure", "detail"),
    [
        pytest.param("primary", "master", None, "master, PONG", id="primary-as-expected"),
        pytest.param("replica", "replica", None, "replica, PONG", id="replica-as-expected"),
        pytest.param(
            "replica", "master", FailureReason.ROLE, "role replica, expected master", id="replica"
        ),
        pytest.param(
            "primary", "replica", FailureReason.ROLE, "role master, expected replica", id="primary"
        ),
    ],
)
async def test_expect_role_checks_what_role_reports(
    servers: Servers,
    ctx: ProbeContext,
    server: str,
    expect_role: str,
    failure: FailureReason | None,
    detail: str,
) -> None:
    """ROLE's ``slave`` is a ``replica``; the wrong role is reason ``role``."""
    port = servers.primary if server == "primary" else servers.replica
    result = await probe_redis(redis(url(port), expect_role=expect_role), ctx)
    assert result.failure is failure, result.detail
    assert result.detail.endswith(detail)


ServiceFor = Callable[[Servers, EvilPorts], DatabaseService]


@pytest.mark.parametrize(
    ("service", "failure", "detail"),
    [
        pytest.param(
            lambda s, _: redis(url(s.primary, password="wrong-Pa55")),  # noqa: S106
            FailureReason.AUTH,
            "invalid username-password pair",
            id="wrong-password",
        ),
        pytest.param(
            lambda s, _: redis(f"redis://nobody:{REDIS_PASSWORD}@127.0.0.1:{s.primary}"),
            FailureReason.AUTH,
            "invalid username-password pair",
            id="unknown-user",
        ),
        pytest.param(
            lambda s, _: redis(url(s.primary, password=None)),
            FailureReason.AUTH,
            "AuthenticationError",
            id="no-password",
        ),
        pytest.param(
            lambda _s, _e: redis(url(free_port())),
            FailureReason.CONNECTION_REFUSED,
            "Connection refused",
            id="stopped",
        ),
        pytest.param(
            lambda _, e: redis(url(e.garbage)),
            FailureReason.PROTOCOL,
            "InvalidResponse",
            id="garbage",
        ),
        pytest.param(
            lambda _, e: redis(url(e.garbage, scheme="rediss")),
            FailureReason.TLS,
            "TLS handshake failed",
            id="tls-to-garbage",
        ),
        pytest.param(
            lambda s, _: redis(url(s.tls, scheme="rediss")),
            FailureReason.TLS,
            "certificate rejected: self-signed certificate in certificate chain",
            id="untrusted-certificate",
        ),
        pytest.param(
            lambda s, _: redis(url(s.tls, password=None)),
            FailureReason.CONNECTION_ERROR,
            "ConnectionError",
            id="plain-to-a-tls-port",
        ),
    ],
)
async def test_failures_have_their_reason_and_never_show_the_password(
    servers: Servers,
    evil: EvilPorts,
    ctx: ProbeContext,
    service: ServiceFor,
    failure: FailureReason,
    detail: str,
) -> None:
    """Each way of failing is classified by where it failed; the URL's password never shows."""
    result = await probe_redis(service(servers, evil), ctx)
    assert result.failure is failure, result.detail
    assert detail in result.detail
    assert REDIS_PASSWORD not in result.detail
    assert "wrong-Pa55" not in result.detail


async def test_a_peer_that_answers_ok_to_everything_is_a_protocol_failure(
    ctx: ProbeContext,
) -> None:
    """A RESP-speaking impostor ("+OK" to HELLO) is ``protocol``, not an exception from redis-py."""

    async def agree(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):
            writer.write(b"+OK\r\n")
        writer.close()

    server = await asyncio.start_server(agree, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        result = await probe_redis(redis(url(port)), ctx)
    assert result.failure is FailureReason.PROTOCOL, result.detail
    assert result.detail.startswith("InvalidResponse: unexpected reply to HELLO")


async def test_tls_with_the_private_ca_reports_certificate_expiry(
    servers: Servers, ctx: ProbeContext
) -> None:
    """rediss:// verifies against ``ca_file`` and times the handshake; days left are reported."""
    service = redis(url(servers.tls, scheme="rediss"), ca_file=str(servers.tls_files.ca_file))
    result = await probe_redis(service, ctx)
    assert result.ok, result.detail
    expected_days = (servers.expires - ctx.clock.now()).total_seconds() / 86_400
    assert result.tls_days_left == pytest.approx(expected_days, abs=0.01)
    assert result.detail.endswith(
        f"master, PONG (TLS, certificate valid {int(expected_days)} days)"
    )
    assert result.phases[Phase.TLS] > 0


async def test_tls_without_verification_accepts_an_untrusted_certificate(
    servers: Servers, ctx: ProbeContext
) -> None:
    """``verify_tls = false``: a self-signed server is up, and its expiry is still reported."""
    result = await probe_redis(redis(url(servers.tls, scheme="rediss"), verify_tls=False), ctx)
    assert result.ok, result.detail
    assert result.tls_days_left is not None


async def test_a_server_that_never_answers_is_cut_off_by_the_deadline_and_leaks_nothing(
    evil: EvilPorts, ctx: ProbeContext
) -> None:
    """Accepts, never speaks: the caller's deadline ends each probe; no fd or task survives."""
    service = redis(url(evil.hang), timeout_seconds=0.3, interval_seconds=1)
    results = await assert_nothing_leaks(probe_redis, service, ctx)
    assert results == [None] * len(results)


async def test_each_check_opens_its_own_connection_and_closes_it(
    servers: Servers, ctx: ProbeContext
) -> None:
    """Nothing is pooled: every check is one new client on the server, gone once the check is."""
    service = redis(url(servers.primary))
    with SyncRedis(port=servers.primary, password=REDIS_PASSWORD) as admin:

        def stat(section: str, key: str) -> int:
            return int(admin.info(section)[key])

        accepted, connected = (
            stat("stats", "total_connections_received"),
            stat("clients", "connected_clients"),
        )
        for _ in range(3):
            assert (await probe_redis(service, ctx)).ok
        assert stat("stats", "total_connections_received") == accepted + 3
        await until(lambda: stat("clients", "connected_clients") == connected, within=5)
