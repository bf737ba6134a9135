"""Schemathesis against our own OpenAPI document: no 5xx, and every answer matches its schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.conftest import DaemonProcess, write_config
from uptime_daemon.api import openapi_document

# The WebSocket upgrade is not an HTTP exchange OpenAPI can describe; tests/api/test_live.py covers it.
# socket.io's engine.io takes parameters of its own protocol (a cache-busting `t`, a default
# transport) that the document describes in words; tests/api/test_socketio.py drives it with real
# socket.io clients instead.
SENT: list[str] = []
schema = schemathesis.openapi.from_dict(openapi_document()).exclude(
    path=["/ws/health", "/socket.io/"]
)
# A body past the 64 KiB limit (a generated list of 1,000 long names) is refused unread: 413.
schema.config.checks.negative_data_rejection.expected_statuses.append("413")


@pytest.fixture(scope="module")
def daemon_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One daemon for the whole run, monitoring itself so every endpoint has data."""
    directory: Path = tmp_path_factory.mktemp("fuzz")
    config = write_config(
        directory,
        "[server.auth]\nchecks_per_minute = 100000\n"
        '[services.http]\nkind = "http"\nurl = "/health"\ninterval_seconds = 1\n'
        '[services.database]\nkind = "database"\ninterval_seconds = 1\n',
    )
    daemon = DaemonProcess(config)
    daemon.wait_until(lambda lines: sum(e.get("event") == "probe_completed" for e in lines) >= 2)
    yield daemon.url
    assert daemon.stop() == 0
    print(f"schemathesis sent {len(SENT)} requests")  # noqa: T201 - the figure docs/reliability.md quotes
    assert len(SENT) >= 200
    assert not [e for e in daemon.lines if e.get("event") == "request_failed"], (
        "a request hit a bug"
    )


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case: schemathesis.Case, daemon_url: str) -> None:  # type: ignore[type-arg]
    """Generated requests never get a 5xx, and every response matches the documented schema."""
    SENT.append(f"{case.method} {case.path}")
    # What JSON Schema cannot say: a window's end after its start, its services configured. A
    # schema-valid body may still be a 400 there (naming the field); every other check applies.
    semantic = case.method == "POST" and case.path == "/maintenance"
    case.call_and_validate(
        base_url=daemon_url, excluded_checks=[positive_data_acceptance] if semantic else None
    )
