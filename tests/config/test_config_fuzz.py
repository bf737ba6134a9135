"""Any configuration at all gives valid settings or one readable error line — never a traceback."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from uptime_daemon.config.load import settings_from_mapping
from uptime_daemon.errors import ConfigError

KEYS = st.sampled_from(
    [
        "server",
        "store",
        "services",
        "defaults",
        "log",
        "scheduler",
        "projector",
        "environment",
        "location",
        "kind",
        "url",
        "interval_seconds",
        "timeout_seconds",
        "failures_before_down",
        "grades",
        "script",
        "accepted_status",
        "json_assertions",
        "auth",
        "port",
        "host",
        "level",
        "send",
        "expect",
        "path",
        "equals",
        "http",
        "websocket",
        "database",
        "api",
        "x",
    ]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=True)
    | st.text(max_size=30)
    | st.sampled_from(["http", "websocket", "database", "/health", "http://x/", "200-299"])
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(KEYS | st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=25,
)
ENVIRON = st.dictionaries(
    st.sampled_from(
        [
            "HTTP_PORT",
            "KURRENTDB_URL",
            "KURRENTDB_USE_TLS",
            "UPTIME_READ_TOKENS",
            "KURRENTDB_PASSWORD",
        ]
    ),
    st.text(max_size=20),
    max_size=3,
)


def _load(raw: dict[str, Any], environ: dict[str, str]) -> None:
    try:
        settings_from_mapping(raw, source="fuzz.toml", environ=environ)
    except ConfigError as exc:
        message = str(exc)
        assert message.startswith(("fuzz.toml: ", "environment variable "))
        assert "\n" not in message
        assert "Traceback" not in message


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(KEYS, VALUES, max_size=6), ENVIRON)
def test_random_configs_load_or_fail_readably(raw: dict[str, Any], environ: dict[str, str]) -> None:
    """Random nested tables: Settings, or a single ConfigError line naming the file or variable."""
    _load(raw, environ)


SERVICE = st.fixed_dictionaries(
    {"kind": st.sampled_from(["http", "websocket", "database", "smtp"])},
    optional={
        "url": st.sampled_from(["/health", "http://127.0.0.1:1/", "ws://h/", "ftp://x", "", "/"])
        | st.text(max_size=10),
        "interval_seconds": st.floats(allow_nan=True) | st.integers(-5, 10**6),
        "timeout_seconds": st.floats(allow_nan=True) | st.integers(-5, 100),
        "failures_before_down": st.integers(-3, 200),
        "accepted_status": st.lists(st.text(max_size=8), max_size=3),
        "script": st.lists(
            st.dictionaries(
                st.sampled_from(["send", "expect", "expect_json", "skip_unmatched"]),
                SCALARS,
                max_size=2,
            ),
            max_size=3,
        ),
        "grades": st.dictionaries(
            st.sampled_from(["excellent_seconds", "good_seconds", "fair_seconds"]),
            st.floats(-1, 10),
            max_size=3,
        ),
    },
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=12), SERVICE, max_size=4))
def test_random_services_load_or_fail_readably(services: dict[str, Any]) -> None:
    """Plausible-looking service tables with wrong values fail with the key path, never a crash."""
    _load({"services": services}, {})
