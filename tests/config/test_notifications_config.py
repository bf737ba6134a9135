"""``[notifications.*]``, ``[alerting]`` and ``depends_on``: validated with the key path, secrets masked."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from uptime_daemon.config.load import masked_settings, settings_from_mapping
from uptime_daemon.errors import ConfigError

SERVICES = {
    "web": {"kind": "http", "url": "http://127.0.0.1:9/"},
    "router": {"kind": "http", "url": "http://127.0.0.1:9/r"},
}


def _load(**tables: Any) -> Any:
    return settings_from_mapping({"services": SERVICES, **tables}, source="t.toml", environ={})


@pytest.mark.parametrize(
    ("channel", "message"),
    [
        ({"kind": "webhook", "url": "ftp://x/"}, "http://host or https://host"),
        ({"kind": "email", "url": "smtp://mail:25", "from": "a@b.c"}, "at least one recipient"),
        ({"kind": "email", "url": "smtp://mail:25", "to": ["x"], "from": "a@b.c"}, "not an email"),
        ({"kind": "email", "url": "https://mail/", "to": ["a@b.c"], "from": "a@b.c"}, "smtp://"),
        ({"kind": "slack", "url": "https://h/", "to": ["a@b.c"]}, "email channels only"),
        ({"kind": "slack", "url": "https://h/", "headers": {"X": "y"}}, "not sent by slack"),
        ({"kind": "webhook", "url": "https://h/", "headers": {"X": "a\r\nb"}}, "header"),
        ({"kind": "webhook", "url": "https://h/", "on": ["up"]}, "add down or degraded"),
        ({"kind": "webhook", "url": "https://h/", "on": ["down", "down"]}, "at most once"),
        ({"kind": "webhook", "url": "https://h/", "services": ["nope"]}, "no service named"),
        ({"kind": "webhook", "url": "https://h/", "repeat_every_seconds": 5}, "repeat_every"),
        ({"kind": "webhook", "url": "https://h/", "colour": "red"}, "colour"),
    ],
)
def test_bad_channels_name_the_table(channel: dict[str, Any], message: str) -> None:
    """Each mistake is one ConfigError naming ``notifications.NAME`` and what is wrong."""
    with pytest.raises(ConfigError, match="notifications") as raised:
        _load(notifications={"oncall": channel})
    assert message in str(raised.value)


def test_dependencies_must_exist_and_not_loop() -> None:
    """An unknown parent, a service depending on itself, and a cycle are refused."""
    for web, router, message in (
        (["nope"], [], "no service named 'nope'"),
        (["web"], [], "cannot depend on itself"),
        (["router"], ["web"], "cycle"),
    ):
        services = {
            "web": {**SERVICES["web"], "depends_on": web},
            "router": {**SERVICES["router"], "depends_on": router},
        }
        with pytest.raises(ConfigError, match=message):
            settings_from_mapping({"services": services}, source="t.toml", environ={})


def test_secrets_never_show_in_the_effective_config() -> None:
    """URL (a Slack URL's path is its secret), header values and the SMTP password are masked."""
    settings = _load(
        notifications={
            "chat": {"kind": "slack", "url": "https://hooks.example/services/T0/B0/SECRET1"},
            "hook": {
                "kind": "webhook",
                "url": "https://h/x",
                "headers": {"Authorization": "SECRET2"},
            },
            "mail": {
                "kind": "email",
                "url": "smtp://mail:587",
                "to": ["oncall@example.org"],
                "from": "uptime@example.org",
                "username": "u",
                "password": "SECRET3",
            },
        },
        alerting={"heartbeat_url": "https://hc.example/ping/SECRET4"},
    )
    shown = orjson.dumps(masked_settings(settings)).decode()
    for secret in ("SECRET1", "SECRET2", "SECRET3", "SECRET4"):
        assert secret not in shown
    assert settings.notifications["chat"].shown_url == "https://hooks.example/…"
    assert settings.notifications["mail"].sender == "uptime@example.org"
