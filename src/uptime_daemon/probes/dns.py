"""The DNS probe: one query of one record type, at the configured resolver or the system's.

The name not existing (NXDOMAIN) is this check's own verdict, ``dns_nxdomain``; a name with no record
of the type is an ``assertion`` failure; a resolver that fails, refuses or cannot be reached is
``dns``. dnspython gets a lifetime a little under the caller's deadline and one attempt per
nameserver, so a dead resolver is reported as such, not as the caller's timeout.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from typing import Final

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdata
import dns.rdtypes.ANY.TXT
import dns.resolver

from uptime_daemon.config.model import DnsService
from uptime_daemon.probes._attempt import Attempt
from uptime_daemon.probes.base import ProbeContext
from uptime_daemon.probes.tcp import hostport, os_reason
from uptime_daemon.results import FailureReason, Phase, ProbeResult

__all__ = ["answer_forms", "probe_dns"]

DNS_PORT: Final = 53
DETAIL_CHARS: Final = 200
LIFETIME_SHARE: Final = 0.9
LIFETIME_MARGIN_SECONDS: Final = 0.05
"""dnspython gives up at least this much (or 10 %) before the caller's deadline, so a resolver that
never answers is still this probe's verdict rather than the runner's generic timeout."""


class _Failed(Exception):
    def __init__(self, reason: FailureReason, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(detail)


def _lifetime(timeout_seconds: float) -> float:
    return max(
        timeout_seconds / 2,
        min(timeout_seconds * LIFETIME_SHARE, timeout_seconds - LIFETIME_MARGIN_SECONDS),
    )


def _split_resolver(text: str) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address → (host, port)."""
    host, port = text, DNS_PORT
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else DNS_PORT
    elif text.count(":") == 1:
        host, _, digits = text.partition(":")
        port = int(digits)
    if not host or not 0 < port < 65536:  # noqa: PLR2004 - the port range
        raise ValueError(text)
    return host, port


async def _nameserver(text: str) -> tuple[str, int]:
    """The resolver's IP address and port; its name, if it has one, resolved by the system."""
    try:
        host, port = _split_resolver(text)
    except ValueError as exc:
        raise _Failed(FailureReason.DNS, f"invalid resolver {text!r}") from exc
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return host, port
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise _Failed(
            FailureReason.DNS, f"cannot resolve resolver {host}: {os_reason(exc)}"
        ) from exc
    return str(infos[0][4][0]), port


def answer_forms(rdata: dns.rdata.Rdata) -> list[str]:
    """The text forms an ``expect`` entry may match for one answer.

    The presentation form (``10 mail.example.``, ``"v=spf1 -all"``), and for TXT the unquoted string.
    """
    forms = [rdata.to_text()]
    if isinstance(rdata, dns.rdtypes.ANY.TXT.TXT):
        forms.append(b"".join(rdata.strings).decode("utf-8", "replace"))
    return forms


def _normal(text: str) -> str:
    """Case-folded, each name without its trailing dot, an IP address in its canonical form."""
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        pass
    words = text.casefold().split()
    return " ".join(w[:-1] if len(w) > 1 and w.endswith(".") else w for w in words)


def _missing(expected: Iterable[str], answers: Iterable[dns.rdata.Rdata]) -> list[str]:
    found = {_normal(form) for rdata in answers for form in answer_forms(rdata)}
    return [item for item in expected if _normal(item) not in found]


def _server_errors(exc: dns.exception.DNSException) -> str:
    """What each nameserver said, from dnspython's error trace: ``127.0.0.1:53 REFUSED``."""
    errors = exc.kwargs.get("errors") or []
    parts = []
    for server, _tcp, port, error, _response in errors:
        why = os_reason(error) if isinstance(error, OSError) else str(error)
        # dnspython names a plain nameserver "Do53:ADDRESS@PORT"
        address = str(server or "").removeprefix("Do53:").rpartition("@")[0] or str(server)
        parts.append(f"{hostport(address, port)} {why}")
    return "; ".join(dict.fromkeys(parts)) or "no nameserver answered"


async def _query(service: DnsService) -> dns.resolver.Answer:
    lifetime = _lifetime(service.timeout_seconds)
    if service.resolver is None:
        try:
            resolver = dns.asyncresolver.Resolver()
        except dns.resolver.NoResolverConfiguration as exc:
            raise _Failed(FailureReason.DNS, "no system resolver configured") from exc
    else:
        host, port = await _nameserver(service.resolver)
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [host]
        resolver.port = port
    resolver.cache = None
    resolver.retry_servfail = False
    servers = [str(server) for server in resolver.nameservers]
    # One attempt per nameserver, sharing the lifetime. dnspython sleeps (backing off) before it
    # checks its lifetime again, so our own timeout is what keeps it inside the caller's deadline.
    resolver.timeout = lifetime / max(1, len(servers))
    try:
        async with asyncio.timeout(lifetime):
            return await resolver.resolve(
                service.name,
                service.record_type,
                tcp=service.transport == "tcp",
                lifetime=lifetime,
                search=False,
            )
    except (TimeoutError, dns.resolver.LifetimeTimeout) as exc:
        asked = ", ".join(hostport(server, resolver.port) for server in servers)
        detail = f"no answer from {asked} within {lifetime:.2g} s"
        raise _Failed(FailureReason.DNS, detail) from exc


async def _ask(service: DnsService) -> dns.resolver.Answer:
    """The answer, or ``_Failed`` with our reason and the whole detail."""
    asked = f"{service.record_type} {service.name}"
    try:
        return await _query(service)
    except _Failed as exc:
        raise _Failed(exc.reason, f"{asked}: {exc.detail}") from exc
    except dns.resolver.NXDOMAIN as exc:
        detail = f"{service.name} does not exist (NXDOMAIN)"
        raise _Failed(FailureReason.DNS_NXDOMAIN, detail) from exc
    except dns.resolver.NoAnswer as exc:
        detail = f"no {service.record_type} records for {service.name}"
        raise _Failed(FailureReason.ASSERTION, detail) from exc
    except dns.resolver.NoNameservers as exc:
        raise _Failed(FailureReason.DNS, f"{asked}: {_server_errors(exc)}") from exc
    except dns.exception.DNSException as exc:  # YXDOMAIN, a name dnspython cannot encode
        raise _Failed(FailureReason.DNS, f"{asked}: {type(exc).__name__}: {exc}") from exc
    except OSError as exc:
        raise _Failed(FailureReason.DNS, f"{asked}: {os_reason(exc)}") from exc


async def probe_dns(service: DnsService, ctx: ProbeContext) -> ProbeResult:
    """Resolve ``name``/``record_type`` once; every ``expect`` entry must be among the answers."""
    clock = ctx.clock
    attempt = Attempt(clock)
    phases, result = attempt.phases, attempt.result

    try:
        try:
            answer = await _ask(service)
        finally:
            phases[Phase.DNS] = clock.monotonic() - attempt.started
    except _Failed as exc:
        return result(exc.reason, exc.detail)
    asked = f"{service.record_type} {service.name}"
    found = [rdata.to_text() for rdata in answer]
    missing = _missing(service.expect, answer)
    if missing:
        detail = f"{asked}: missing {', '.join(missing)}; found {', '.join(found)}"
        return result(FailureReason.ASSERTION, detail)
    return result(None, f"{asked} → {', '.join(found)}")
