"""The DNS probe against a real dnsmasq that answers only from its command line."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import free_port
from tests.probes.net_servers import (
    EvilPorts,
    assert_nothing_leaks,
    dnsmasq,
    evil_targets,
    resolve_locally,
    with_deadline,
)
from uptime_daemon.config.model import DnsService
from uptime_daemon.probes.base import ProbeContext
from uptime_daemon.probes.dns import probe_dns
from uptime_daemon.results import FailureReason, Phase

RECORDS = [
    "--address=/web.test/192.0.2.10",
    "--host-record=multi.test,192.0.2.1",
    "--host-record=multi.test,192.0.2.2",
    "--host-record=v6.test,2001:db8::1",
    "--mx-host=mail.test,mx1.mail.test,10",
    "--txt-record=txt.test,v=spf1 -all",
]


@pytest.fixture(scope="module")
def resolver_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with dnsmasq(tmp_path_factory.mktemp("dnsmasq"), RECORDS) as port:
        yield port


@pytest.fixture(scope="module")
def evil() -> Iterator[EvilPorts]:
    with evil_targets() as ports:
        yield ports


def dns_check(name: str, resolver: str | None, **options: Any) -> DnsService:
    return DnsService.model_validate({"kind": "dns", "name": name, "resolver": resolver, **options})


@pytest.mark.parametrize(
    ("name", "options", "detail"),
    [
        pytest.param("web.test", {}, "A web.test → 192.0.2.10", id="a"),
        pytest.param(
            "multi.test",
            {"expect": ["192.0.2.2", "192.0.2.1"], "transport": "tcp"},
            "A multi.test → 192.0.2.",
            id="both-over-tcp",
        ),
        pytest.param(
            "v6.test",
            {"record_type": "AAAA", "expect": ["2001:DB8:0::1"]},
            "AAAA v6.test → 2001:db8::1",
            id="aaaa-any-spelling",
        ),
        pytest.param(
            "mail.test.",
            {"record_type": "MX", "expect": ["10 MX1.mail.test"]},
            "MX mail.test. → 10 mx1.mail.test.",
            id="mx-without-the-dot",
        ),
        pytest.param(
            "txt.test",
            {"record_type": "TXT", "expect": ["v=spf1 -all"]},
            'TXT txt.test → "v=spf1 -all"',
            id="txt-unquoted",
        ),
    ],
)
async def test_answers_that_meet_expectations(
    resolver_port: int, ctx: ProbeContext, name: str, options: dict[str, Any], detail: str
) -> None:
    """Each ``expect`` entry is among the answers in its text form, case and trailing dot aside."""
    result = await probe_dns(dns_check(name, f"127.0.0.1:{resolver_port}", **options), ctx)
    assert result.ok, result.detail
    assert result.detail.startswith(detail)
    assert result.phases[Phase.DNS] > 0


@pytest.mark.parametrize(
    ("name", "options", "failure", "detail"),
    [
        pytest.param(
            "nope.test",
            {},
            FailureReason.DNS_NXDOMAIN,
            "nope.test does not exist (NXDOMAIN)",
            id="nxdomain",
        ),
        pytest.param(
            "mail.test", {}, FailureReason.ASSERTION, "no A records for mail.test", id="no-answer"
        ),
        pytest.param(
            "multi.test",
            {"expect": ["192.0.2.1", "192.0.2.9"]},
            FailureReason.ASSERTION,
            "A multi.test: missing 192.0.2.9; found 192.0.2.",
            id="expected-answer-missing",
        ),
        pytest.param(
            "example.org",
            {},
            FailureReason.DNS,
            "A example.org: 127.0.0.1:{port} REFUSED",
            id="refused",
        ),
    ],
)
async def test_failures_have_their_reason(
    resolver_port: int,
    ctx: ProbeContext,
    name: str,
    options: dict[str, Any],
    failure: FailureReason,
    detail: str,
) -> None:
    """No such name, no such record, a missing answer, a resolver that will not answer."""
    result = await probe_dns(dns_check(name, f"127.0.0.1:{resolver_port}", **options), ctx)
    assert result.failure is failure, result.detail
    assert result.detail.startswith(detail.format(port=resolver_port))


@pytest.mark.parametrize(
    ("transport", "detail"),
    [
        # dnspython may miss the ICMP error of a UDP query (it arrives before dnspython listens):
        # then the resolver is just silent.
        pytest.param(
            "udp",
            r"(no answer from 127\.0\.0\.1:{port} within|127\.0\.0\.1:{port} Connection refused)",
            id="udp",
        ),
        pytest.param("tcp", r"127\.0\.0\.1:{port} Connection refused", id="tcp"),
    ],
)
async def test_a_resolver_nobody_runs_is_a_dns_failure_within_the_deadline(
    ctx: ProbeContext, transport: str, detail: str
) -> None:
    """A port nobody listens on: ``dns``, before the caller's deadline."""
    port = free_port()
    service = dns_check(
        "web.test",
        f"127.0.0.1:{port}",
        transport=transport,
        timeout_seconds=0.5,
        interval_seconds=1,
    )
    result, elapsed = await with_deadline(probe_dns, service, ctx)
    assert result is not None, "cut off by the deadline"
    assert result.failure is FailureReason.DNS, result.detail
    assert re.match(f"A web.test: {detail.format(port=port)}", result.detail), result.detail
    assert elapsed < service.timeout_seconds


async def test_a_resolver_that_never_answers_is_a_dns_failure_before_the_deadline(
    ctx: ProbeContext,
) -> None:
    """A UDP resolver that swallows queries: ``dns``, a little before the caller's deadline."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        service = dns_check(
            "web.test", f"127.0.0.1:{port}", timeout_seconds=0.5, interval_seconds=1
        )
        result, elapsed = await with_deadline(probe_dns, service, ctx)
    assert result is not None, "cut off by the deadline"
    assert result.failure is FailureReason.DNS
    assert result.detail == f"A web.test: no answer from 127.0.0.1:{port} within 0.45 s"
    assert 0.4 < elapsed < service.timeout_seconds


async def test_a_tcp_resolver_that_accepts_and_never_answers_leaks_nothing(
    evil: EvilPorts, ctx: ProbeContext
) -> None:
    """Ten queries at a port that accepts and never speaks end in time; no fd or task survives."""
    service = dns_check(
        "web.test",
        f"127.0.0.1:{evil.hang}",
        transport="tcp",
        timeout_seconds=0.3,
        interval_seconds=1,
    )
    results = await assert_nothing_leaks(probe_dns, service, ctx)
    assert [r.failure if r else None for r in results] == [FailureReason.DNS] * len(results)


async def test_a_resolver_given_by_name_is_resolved_first(
    resolver_port: int, ctx: ProbeContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``resolver = "localhost:PORT"``: the name is looked up by the system, then asked."""
    asked = resolve_locally(monkeypatch)
    result = await probe_dns(dns_check("web.test", f"localhost:{resolver_port}"), ctx)
    assert result.ok, result.detail
    assert asked == ["localhost"]
