"""The TCP probe against in-test asyncio servers: a banner/echo server, a TLS one, closers."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography import x509

from tests.conftest import free_port
from tests.probes.net_servers import (
    EvilPorts,
    Tls,
    assert_nothing_leaks,
    evil_targets,
    resolve_locally,
    write_tls,
)
from uptime_daemon.config.model import TcpService
from uptime_daemon.probes.base import ProbeContext
from uptime_daemon.probes.tcp import probe_tcp
from uptime_daemon.results import FailureReason, Phase

BANNER = b"220 banner.test ESMTP ready\r\n"
VALID_DAYS = 10


def tcp(port: int, host: str = "127.0.0.1", send: str | None = None, **options: Any) -> TcpService:
    fields = {"kind": "tcp", "host": host, "port": port, **options}
    return TcpService.model_validate(fields if send is None else {**fields, "send": send})


def test_send_keeps_its_line_ending() -> None:
    """``send`` keeps its CR LF, as written in TOML, or a line protocol never answers."""
    service = TcpService.model_validate(
        {"kind": "tcp", "host": "127.0.0.1", "port": 1, "send": "PING\r\n", "expect": "+PONG\r\n"}
    )
    assert (service.send, service.expect) == ("PING\r\n", "+PONG\r\n")


@dataclass
class Servers:
    banner: int
    """Sends ``BANNER``, then answers each line with ``echo: <line>``."""
    closer: int
    """Sends ``BANNER`` and hangs up."""
    silent_closer: int
    """Hangs up at once."""
    tls: int
    """``banner`` behind TLS, with a certificate for localhost and 127.0.0.1 valid ``VALID_DAYS``."""
    tls_files: Tls
    expires: datetime
    peers: list[str]
    """One entry per connection any server accepted."""


async def _banner(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(BANNER)
    try:
        while line := await reader.readline():
            writer.write(b"echo: " + line)
            await writer.drain()
    except OSError:
        pass  # a probe that aborts mid-conversation
    finally:
        writer.close()


async def _closer(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(BANNER)
    writer.close()


async def _silent_closer(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Tls, datetime]:
    ca = trustme.CA()
    not_after = datetime.now(UTC) + timedelta(days=VALID_DAYS, hours=12)
    leaf = ca.issue_cert("localhost", "127.0.0.1", not_after=not_after)
    files = write_tls(tmp_path_factory.mktemp("tcp-tls"), leaf, ca)
    expires = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()).not_valid_after_utc
    return files, expires


@pytest.fixture
async def servers(tls_files: tuple[Tls, datetime]) -> AsyncIterator[Servers]:
    files, expires = tls_files
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(files.cert_file, files.key_file)
    peers: list[str] = []

    def counted(handler: Any) -> Any:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peers.append(str(writer.get_extra_info("peername")))
            await handler(reader, writer)

        return handle

    started = [
        await asyncio.start_server(counted(_banner), "127.0.0.1", 0),
        await asyncio.start_server(counted(_closer), "127.0.0.1", 0),
        await asyncio.start_server(counted(_silent_closer), "127.0.0.1", 0),
        await asyncio.start_server(counted(_banner), "127.0.0.1", 0, ssl=context),
    ]
    banner, closer, silent_closer, tls = (server.sockets[0].getsockname()[1] for server in started)
    yield Servers(banner, closer, silent_closer, tls, files, expires, peers)
    for server in started:
        server.close()
        await server.wait_closed()


@pytest.fixture(scope="module")
def evil() -> Iterator[EvilPorts]:
    with evil_targets() as ports:
        yield ports


async def test_connect_only(servers: Servers, ctx: ProbeContext) -> None:
    """Without send/expect a check is a connect; the detail says where to."""
    result = await probe_tcp(tcp(servers.banner), ctx)
    assert result.ok, result.detail
    assert result.detail == f"connected to 127.0.0.1:{servers.banner}"
    assert set(result.phases) == {Phase.CONNECT}
    assert len(servers.peers) == 1


async def test_a_host_name_is_resolved_and_timed(
    servers: Servers, ctx: ProbeContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name costs a DNS phase; the detail names the address it reached."""
    asked = resolve_locally(monkeypatch)
    result = await probe_tcp(tcp(servers.banner, host="localhost"), ctx)
    assert result.ok, result.detail
    assert result.detail == f"connected to localhost:{servers.banner} (127.0.0.1)"
    assert asked == ["localhost"]
    assert {Phase.DNS, Phase.CONNECT} <= set(result.phases)


@pytest.mark.parametrize(
    ("options", "detail"),
    [
        pytest.param({"expect": "ESMTP"}, "replied '220 banner.test ESMTP ready'", id="banner"),
        pytest.param(
            {"send": "PING\r\n", "expect": "echo: PING"}, "replied '220 banner", id="send-expect"
        ),
        pytest.param({"expect": "ready", "max_bytes": len(BANNER) - 2}, "replied", id="exact-fit"),
    ],
)
async def test_the_expected_reply_arrives(
    servers: Servers, ctx: ProbeContext, options: dict[str, Any], detail: str
) -> None:
    """Read until ``expect`` appears (across chunks and lines), then stop and close."""
    result = await probe_tcp(tcp(servers.banner, **options), ctx)
    assert result.ok, result.detail
    assert detail in result.detail
    assert Phase.READ in result.phases


@pytest.mark.parametrize(
    ("server", "options", "failure", "detail"),
    [
        pytest.param(
            "banner",
            {"expect": "SSH-2.0", "max_bytes": 12},
            FailureReason.ASSERTION,
            "no 'SSH-2.0' in the first 12 bytes, got '220 banner.t'",
            id="not-within-max-bytes",
        ),
        pytest.param(
            "closer",
            {"expect": "SSH-2.0"},
            FailureReason.ASSERTION,
            "no 'SSH-2.0' before closing, got '220 banner.test ESMTP ready\\r\\n'",
            id="not-before-close",
        ),
        pytest.param(
            "silent_closer",
            {"expect": "220"},
            FailureReason.CLOSED,
            "closed the connection without a reply",
            id="closed-at-once",
        ),
        pytest.param(
            "stopped", {}, FailureReason.CONNECTION_REFUSED, "Connection refused", id="stopped"
        ),
        pytest.param(
            "banner", {"tls": True}, FailureReason.TLS, "TLS handshake failed", id="tls-to-plain"
        ),
        pytest.param(
            "tls",
            {"tls": True},
            FailureReason.TLS,
            "certificate rejected: unable to get local issuer certificate",
            id="untrusted-certificate",
        ),
        pytest.param(
            "tls",
            {"tls": True, "server_name": "elsewhere.test", "ca": True},
            FailureReason.TLS,
            "certificate rejected: Hostname mismatch",
            id="wrong-name",
        ),
    ],
)
async def test_failures_have_their_reason(
    servers: Servers,
    ctx: ProbeContext,
    server: str,
    options: dict[str, Any],
    failure: FailureReason,
    detail: str,
) -> None:
    """Each way of failing is classified by the step it happened in."""
    port = free_port() if server == "stopped" else getattr(servers, server)
    if options.pop("ca", False):
        options["ca_file"] = str(servers.tls_files.ca_file)
    result = await probe_tcp(tcp(port, **options), ctx)
    assert result.failure is failure, result.detail
    assert detail in result.detail


async def test_an_unknown_name_is_a_dns_failure(
    ctx: ProbeContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The resolver's answer, not a connect error."""
    resolve_locally(monkeypatch)
    result = await probe_tcp(tcp(9, host="nowhere.invalid"), ctx)
    assert result.failure is FailureReason.DNS
    assert result.detail == "cannot resolve nowhere.invalid: Name or service not known"
    assert Phase.DNS in result.phases


async def test_tls_with_the_private_ca_reports_certificate_expiry(
    servers: Servers, ctx: ProbeContext
) -> None:
    """Verified against ``ca_file`` with SNI; days left from the peer certificate; talk through TLS."""
    service = tcp(
        servers.tls,
        tls=True,
        ca_file=str(servers.tls_files.ca_file),
        send="PING\r\n",
        expect="echo: PING",
    )
    result = await probe_tcp(service, ctx)
    assert result.ok, result.detail
    expected_days = (servers.expires - ctx.clock.now()).total_seconds() / 86_400
    assert result.tls_days_left == pytest.approx(expected_days, abs=0.01)
    assert result.detail.startswith(
        f"connected to 127.0.0.1:{servers.tls} (TLS, certificate valid {VALID_DAYS} days), replied"
    )
    assert {Phase.CONNECT, Phase.TLS, Phase.WRITE, Phase.READ} <= set(result.phases)


async def test_tls_name_defaults_to_the_host(
    servers: Servers, ctx: ProbeContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``localhost`` is checked against the certificate's names without a ``server_name``."""
    resolve_locally(monkeypatch)
    service = tcp(servers.tls, host="localhost", tls=True, ca_file=str(servers.tls_files.ca_file))
    result = await probe_tcp(service, ctx)
    assert result.ok, result.detail


async def test_tls_without_verification_still_reports_expiry(
    servers: Servers, ctx: ProbeContext
) -> None:
    """``verify_tls = false`` accepts the untrusted certificate and still reads its expiry."""
    result = await probe_tcp(tcp(servers.tls, tls=True, verify_tls=False), ctx)
    assert result.ok, result.detail
    assert result.tls_days_left is not None
    assert int(result.tls_days_left) == VALID_DAYS


async def test_an_unreadable_ca_file_is_a_tls_failure(
    servers: Servers, ctx: ProbeContext, tmp_path: Path
) -> None:
    """A CA file that holds no certificate fails the check (config only checks it is readable)."""
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate\n")
    result = await probe_tcp(tcp(servers.tls, tls=True, ca_file=str(bogus)), ctx)
    assert result.failure is FailureReason.TLS
    assert "cannot load CA file" in result.detail


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
async def test_a_server_that_never_answers_is_cut_off_by_the_deadline_and_leaks_nothing(
    evil: EvilPorts, ctx: ProbeContext, tls: bool
) -> None:
    """Accepts, never speaks (no banner, no TLS handshake): the caller's deadline ends each probe."""
    service = tcp(evil.hang, tls=tls, expect="220", timeout_seconds=0.3, interval_seconds=1)
    results = await assert_nothing_leaks(probe_tcp, service, ctx)
    assert results == [None] * len(results)
