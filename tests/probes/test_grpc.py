"""The gRPC health probe against real loopback ``grpc.aio`` servers, and a port that never speaks."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import trustme
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from pydantic import ValidationError

from tests.polling import until
from tests.probes.net_servers import EvilPorts, evil_targets
from uptime_daemon.config.model import GrpcService
from uptime_daemon.probes.base import ProbeContext
from uptime_daemon.probes.grpc_health import probe_grpc
from uptime_daemon.results import FailureReason, Phase
from uptime_daemon.runner import probe_with_deadline

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def grpc_service(target: str, **options: Any) -> GrpcService:
    return GrpcService.model_validate({"kind": "grpc", "target": target, **options})


@dataclass
class HealthTarget:
    server: grpc.aio.Server
    servicer: Any
    port: int

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


async def _start(
    *, health_service: bool = True, tls: trustme.LeafCert | None = None
) -> HealthTarget:
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    if health_service:
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    if tls is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        chain = b"".join(blob.bytes() for blob in tls.cert_chain_pems)
        credentials = grpc.ssl_server_credentials([(tls.private_key_pem.bytes(), chain)])
        port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    return HealthTarget(server, servicer, port)


@pytest.fixture
async def target() -> AsyncIterator[HealthTarget]:
    """A server with the standard health service; the whole server is SERVING."""
    started = await _start()
    yield started
    await started.server.stop(None)


@pytest.fixture
def evil() -> Iterator[EvilPorts]:
    """``tests/evil_targets.py`` in its own process (its sockets are not counted as ours)."""
    with evil_targets() as ports:
        yield ports


async def test_a_serving_server_is_up(target: HealthTarget, ctx: ProbeContext) -> None:
    """SERVING is up, with the connect and query phases timed."""
    result = await probe_grpc(grpc_service(target.target), ctx)
    assert result.ok, result.detail
    assert result.detail == "the server is SERVING"
    assert set(result.phases) == {Phase.CONNECT, Phase.QUERY}


async def test_the_named_service_is_asked_about(target: HealthTarget, ctx: ProbeContext) -> None:
    """``service`` is the request's service: its own status decides, not the server's."""
    await target.servicer.set("shop.Orders", SERVING)
    await target.servicer.set("", NOT_SERVING)
    result = await probe_grpc(grpc_service(target.target, service="shop.Orders"), ctx)
    assert result.ok, result.detail
    assert result.detail == "service 'shop.Orders' is SERVING"


@pytest.mark.parametrize(
    ("service", "detail"),
    [
        pytest.param("", "the server is NOT_SERVING", id="not-serving"),
        pytest.param(
            "shop.Unknown",
            "service 'shop.Unknown' unknown to the server (NOT_FOUND)",
            id="unknown-service",
        ),
    ],
)
async def test_not_serving(
    target: HealthTarget, ctx: ProbeContext, service: str, detail: str
) -> None:
    """NOT_SERVING, and a service the server does not know (NOT_FOUND), are ``not_serving``."""
    await target.servicer.set("", NOT_SERVING)
    result = await probe_grpc(grpc_service(target.target, service=service), ctx)
    assert result.failure is FailureReason.NOT_SERVING
    assert result.detail == detail


async def test_a_stopped_server_is_refused(target: HealthTarget, ctx: ProbeContext) -> None:
    """Nothing listening on the port: refused, at once."""
    await target.server.stop(None)
    result = await probe_grpc(grpc_service(target.target), ctx)
    assert result.failure is FailureReason.CONNECTION_REFUSED, result.detail
    assert result.detail.endswith("Connection refused")
    assert result.duration_seconds < 2


async def test_a_server_without_the_health_service_is_a_protocol_failure(
    ctx: ProbeContext,
) -> None:
    """A gRPC server that does not implement grpc.health.v1 answers UNIMPLEMENTED."""
    bare = await _start(health_service=False)
    try:
        result = await probe_grpc(grpc_service(bare.target), ctx)
    finally:
        await bare.server.stop(None)
    assert result.failure is FailureReason.PROTOCOL
    assert "UNIMPLEMENTED" in result.detail


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def tls_target(ca: trustme.CA) -> AsyncIterator[HealthTarget]:
    """The health service over TLS, with a certificate for ``127.0.0.1`` and ``health.test``."""
    started = await _start(tls=ca.issue_cert("127.0.0.1", "health.test"))
    yield started
    await started.server.stop(None)


def test_switching_verification_off_is_refused_at_load() -> None:
    """The gRPC library cannot skip certificate checks: ``verify_tls = false`` is a config error."""
    with pytest.raises(ValidationError, match="give ca_file"):
        grpc_service("127.0.0.1:1", tls=True, verify_tls=False)


@pytest.mark.parametrize(
    ("trusted", "options", "reason", "detail"),
    [
        pytest.param(True, {}, None, "SERVING", id="ca-file"),
        pytest.param(True, {"server_name": "health.test"}, None, "SERVING", id="server-name"),
        pytest.param(False, {}, FailureReason.TLS, "CERTIFICATE_VERIFY_FAILED", id="untrusted"),
        pytest.param(
            True,
            {"server_name": "other.test"},
            FailureReason.TLS,
            "Hostname Verification Check failed",
            id="wrong-name",
        ),
    ],
)
async def test_tls(
    tls_target: HealthTarget,
    ca: trustme.CA,
    tmp_path: Path,
    ctx: ProbeContext,
    trusted: bool,
    options: dict[str, Any],
    reason: FailureReason | None,
    detail: str,
) -> None:
    """TLS trusts ``ca_file`` and checks ``server_name`` (else the target's host) against the certificate."""
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    service = grpc_service(
        tls_target.target, tls=True, **({"ca_file": str(ca_file)} if trusted else {}), **options
    )
    result = await probe_grpc(service, ctx)
    assert result.failure is reason, result.detail
    assert detail in result.detail


async def test_plain_text_to_a_peer_that_is_not_grpc(evil: EvilPorts, ctx: ProbeContext) -> None:
    """A peer answering junk instead of HTTP/2 is a protocol failure, at once."""
    garbage = evil.garbage
    result = await probe_grpc(grpc_service(f"127.0.0.1:{garbage}"), ctx)
    assert result.failure is FailureReason.PROTOCOL, result.detail
    assert "Failed parsing HTTP/2" in result.detail


def _fds() -> int:
    return sum(1 for _ in Path("/proc/self/fd").iterdir())


def _os_threads() -> int:
    return sum(1 for _ in Path("/proc/self/task").iterdir())


async def test_a_silent_port_is_the_callers_timeout_and_leaks_nothing(
    evil: EvilPorts, ctx: ProbeContext
) -> None:
    """A port that accepts and never speaks: the caller's deadline ends each check; fds stay flat."""
    hang = evil.hang
    service = grpc_service(f"127.0.0.1:{hang}", timeout_seconds=0.5, interval_seconds=1)
    await probe_with_deadline(probe_grpc, service, ctx, ctx.clock)  # warm up gRPC's own threads
    fds, threads, os_threads = _fds(), threading.active_count(), _os_threads()
    tasks = len(asyncio.all_tasks())
    for _ in range(10):
        started = time.monotonic()
        result = await probe_with_deadline(probe_grpc, service, ctx, ctx.clock)
        assert time.monotonic() - started < 1.5
        assert result.failure is FailureReason.TIMEOUT, result.detail
        assert result.detail == "no answer within 0.5 s"
    assert len(asyncio.all_tasks()) == tasks
    assert threading.active_count() == threads
    await until(lambda: _fds() <= fds + 2, within=5, what=f"fds back near {fds}")
    assert abs(_os_threads() - os_threads) <= 2
