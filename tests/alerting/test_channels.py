"""Notification channels against real receivers on loopback: HTTP, SMTP and the real Alertmanager."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.alerting.receivers import (
    AlertmanagerProcess,
    SmtpReceiver,
    WebhookReceiver,
    require_alertmanager,
    server_tls_context,
)
from tests.conftest import free_port
from tests.polling import until
from uptime_daemon import __version__
from uptime_daemon.alerting.channels import (
    alertmanager_alerts,
    deliver,
    email_message,
    format_duration,
    slack_text,
)
from uptime_daemon.alerting.message import Delivery, Message, Opened
from uptime_daemon.config.model import NotificationChannel
from uptime_daemon.status import Status

KEY = "0b9d5d2e-4c1a-4f59-9a55-6f1c2a9d7e01"
UP_KEY = "7f3e1c2a-9b8d-4e6f-a1b2-c3d4e5f60789"
SECRET_TOKEN = "xoxb-s3cret-webhook-token"  # noqa: S105 - a fake, to prove it never leaks
SECRET_PATH = f"/services/T0001/B0002/{SECRET_TOKEN}"
HEADER_SECRET = "Bearer hdr-s3cret-value"  # noqa: S105 - same
SMTP_PASSWORD = "smtp-s3cret-password"  # noqa: S105 - same
WRONG_PASSWORD = "wrong-s3cret-password"  # noqa: S105 - same
TTL_SECONDS = 3600.0
OUTAGE_AT = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
NOW = datetime(2026, 12, 6, 10, 3, 12, tzinfo=UTC)
QUICK_SECONDS = 2.0
"""A refused or garbage answer comes back well within this (the channels' timeout is longer)."""

DOWN = Message(
    key=KEY,
    channel="ops",
    service="web",
    kind="down",
    status=Status.DOWN,
    previous_status=Status.UP,
    at=OUTAGE_AT,
    detail="connection refused",
    description="The shop",
    sent_by="daemon-a",
)
UP = replace(
    DOWN,
    key=UP_KEY,
    kind="up",
    status=Status.UP,
    previous_status=Status.DOWN,
    at=NOW,
    resolves=(Opened("down", OUTAGE_AT),),
    detail="HTTP 200",
)
LABELS = {
    "alertname": "UptimeServiceDown",
    "service": "web",
    "severity": "page",
    "source": "uptime-daemon",
}


def channel(kind: str, url: str, **options: Any) -> NotificationChannel:
    return NotificationChannel.model_validate({"kind": kind, "url": url, **options})


def email_channel(url: str, **options: Any) -> NotificationChannel:
    fields = {"to": ["oncall@example.org"], "from": "uptime@example.org", "timeout_seconds": 5}
    return channel("email", url, **(fields | options))


async def send(
    message: Message, to: NotificationChannel, session: aiohttp.ClientSession, now: datetime = NOW
) -> Delivery:
    return await deliver(message, to, session=session, now=now, alert_ttl_seconds=TTL_SECONDS)


async def timed_send(
    message: Message, to: NotificationChannel, session: aiohttp.ClientSession
) -> tuple[Delivery, float]:
    started = time.monotonic()
    delivery = await send(message, to, session)
    return delivery, time.monotonic() - started


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(path=SECRET_PATH) as started:
        yield started


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel does) and never says a word."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield int(sock.getsockname()[1])


# --- webhook ----------------------------------------------------------------------------------


async def test_webhook_posts_the_documented_body_and_every_header(
    receiver: WebhookReceiver, session: aiohttp.ClientSession
) -> None:
    hook = channel("webhook", receiver.url, headers={"Authorization": HEADER_SECRET})
    message = replace(UP, url="https://status.example/", reminder=0)

    delivery = await send(message, hook, session)

    assert delivery == Delivery(ok=True, detail="HTTP 200")
    [request] = receiver.requests
    assert request.path == SECRET_PATH
    assert request.json == {
        "key": UP_KEY,
        "channel": "ops",
        "service": "web",
        "event": "up",
        "status": "up",
        "previousStatus": "down",
        "at": "2026-12-06T10:03:12.000Z",
        "reminder": 0,
        "resolves": [{"event": "down", "at": "2026-12-06T10:00:00.000Z"}],
        "detail": "HTTP 200",
        "description": "The shop",
        "url": "https://status.example/",
        "sentBy": "daemon-a",
    }
    assert request.headers["content-type"] == "application/json"
    assert request.headers["idempotency-key"] == UP_KEY
    assert request.headers["user-agent"] == f"uptime-daemon/{__version__}"
    assert request.headers["authorization"] == HEADER_SECRET


async def test_channel_headers_never_replace_the_idempotency_key(
    receiver: WebhookReceiver, session: aiohttp.ClientSession
) -> None:
    hook = channel("webhook", receiver.url, headers={"idempotency-key": "mine"})
    assert (await send(DOWN, hook, session)).ok
    assert receiver.keys() == [KEY]


@pytest.mark.parametrize(
    ("status", "ok", "permanent"),
    [
        pytest.param(200, True, False, id="200"),
        pytest.param(202, True, False, id="202"),
        pytest.param(204, True, False, id="204"),
        pytest.param(503, False, False, id="503-retry"),
        pytest.param(500, False, False, id="500-retry"),
        pytest.param(408, False, False, id="408-retry"),
        pytest.param(425, False, False, id="425-retry"),
        pytest.param(429, False, False, id="429-retry"),
        pytest.param(404, False, True, id="404-permanent"),
        pytest.param(400, False, True, id="400-permanent"),
        pytest.param(401, False, True, id="401-permanent"),
        pytest.param(302, False, True, id="redirect-not-followed"),
    ],
)
async def test_webhook_status_is_classified(
    receiver: WebhookReceiver,
    session: aiohttp.ClientSession,
    status: int,
    ok: bool,
    permanent: bool,
) -> None:
    receiver.respond_with(status)
    delivery = await send(DOWN, channel("webhook", receiver.url), session)
    assert (delivery.ok, delivery.permanent) == (ok, permanent)
    assert delivery.detail.startswith(f"HTTP {status}")
    assert len(receiver.requests) == 1


async def test_the_same_key_goes_out_on_every_attempt(
    receiver: WebhookReceiver, session: aiohttp.ClientSession
) -> None:
    receiver.fail_next(2)
    hook = channel("webhook", receiver.url)
    outcomes = [await send(DOWN, hook, session) for _ in range(3)]
    assert [(d.ok, d.permanent) for d in outcomes] == [
        (False, False),
        (False, False),
        (True, False),
    ]
    assert outcomes[0].detail == "HTTP 503: failing on purpose (503)"
    assert receiver.keys() == [KEY, KEY, KEY]
    assert receiver.distinct_keys() == [KEY]
    assert [r.status for r in receiver.requests] == [503, 503, 200]
    assert len(receiver.accepted()) == 1


async def test_a_receiver_that_honours_keys_keeps_repeats_apart(
    session: aiohttp.ClientSession,
) -> None:
    with WebhookReceiver(honours_keys=True) as honouring:
        hook = channel("webhook", honouring.url)
        honouring.fail_next(1)
        results = [await send(DOWN, hook, session) for _ in range(3)]
        assert [d.ok for d in results] == [False, True, True]
        assert [r.status for r in honouring.requests] == [503, 200]  # a failed try is no delivery
        assert [r.key for r in honouring.duplicates()] == [KEY]
        assert len(honouring.accepted()) == 1


async def test_a_stopped_receiver_is_a_quick_retryable_refusal_and_comes_back(
    receiver: WebhookReceiver, session: aiohttp.ClientSession
) -> None:
    hook = channel("webhook", receiver.url, timeout_seconds=10)
    receiver.stop()

    delivery, seconds = await timed_send(DOWN, hook, session)

    assert not delivery.ok
    assert not delivery.permanent
    assert "refused" in delivery.detail.lower()
    assert f"127.0.0.1:{receiver.port}" in delivery.detail
    assert SECRET_TOKEN not in delivery.detail
    assert "/services" not in delivery.detail
    assert seconds < QUICK_SECONDS

    receiver.start()  # the same port again
    assert (await send(DOWN, hook, session)).ok
    assert receiver.keys() == [KEY]


async def test_a_receiver_that_never_answers_fails_within_the_timeout(
    receiver: WebhookReceiver, session: aiohttp.ClientSession
) -> None:
    receiver.stall()
    try:
        delivery, seconds = await timed_send(
            DOWN, channel("webhook", receiver.url, timeout_seconds=0.3), session
        )
    finally:
        receiver.resume()
    assert delivery == Delivery(ok=False, detail="no answer within 0.3 s", permanent=False)
    assert 0.3 <= seconds < QUICK_SECONDS
    assert receiver.keys() == [KEY]  # it arrived; the answer did not


async def test_a_silent_listener_fails_within_the_timeout(
    silent_port: int, session: aiohttp.ClientSession
) -> None:
    hook = channel("webhook", f"http://127.0.0.1:{silent_port}/hook", timeout_seconds=0.3)
    delivery, seconds = await timed_send(DOWN, hook, session)
    assert (delivery.ok, delivery.permanent) == (False, False)
    assert delivery.detail == "no answer within 0.3 s"
    assert seconds < QUICK_SECONDS


@pytest.mark.parametrize("status", [404, 500])
async def test_secrets_echoed_by_the_receiver_never_reach_the_detail(
    session: aiohttp.ClientSession, status: int
) -> None:
    async def echo(request: web.Request) -> web.Response:
        said = f"no hook at {request.path_qs} for {request.headers.get('X-Token')}"
        return web.Response(status=status, text=said)

    app = web.Application()
    app.router.add_post("/{tail:.*}", echo)
    async with TestServer(app, host="127.0.0.1") as server:
        url = str(server.make_url(SECRET_PATH)) + "?sig=query-s3cret"
        hook = channel("webhook", url, headers={"X-Token": HEADER_SECRET})
        delivery = await send(DOWN, hook, session)

    assert delivery.detail.startswith(f"HTTP {status}: no hook at ***")
    for secret in (SECRET_TOKEN, SECRET_PATH, "query-s3cret", HEADER_SECRET, "hdr-s3cret"):
        assert secret not in delivery.detail


async def test_credentials_in_the_url_never_reach_the_detail(
    session: aiohttp.ClientSession,
) -> None:
    url = f"http://hook-user:url-s3cret-pass@127.0.0.1:{free_port()}{SECRET_PATH}"
    delivery = await send(DOWN, channel("webhook", url), session)
    assert not delivery.ok
    assert "url-s3cret-pass" not in delivery.detail
    assert SECRET_TOKEN not in delivery.detail


async def _close_at_once(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


async def _answer_garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(65536)
    writer.write(b"\x16\x03\x01 this is not HTTP at all \x00\xff\r\n\r\n")
    await writer.drain()
    writer.close()


async def _half_a_response(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(65536)
    writer.write(b"HTTP/1.1 503 Busy\r\nContent-Length: 100\r\n\r\nshort")
    await writer.drain()
    writer.close()


@pytest.mark.parametrize(
    "behaviour",
    [
        pytest.param(_close_at_once, id="closes-at-once"),
        pytest.param(_answer_garbage, id="non-http-bytes"),
        pytest.param(_half_a_response, id="truncated-body"),
    ],
)
@pytest.mark.parametrize("kind", ["webhook", "slack", "alertmanager"])
async def test_garbage_answers_are_retryable_failures_never_exceptions(
    session: aiohttp.ClientSession, behaviour: Any, kind: str
) -> None:
    server = await asyncio.start_server(behaviour, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        delivery, seconds = await timed_send(
            DOWN, channel(kind, f"http://127.0.0.1:{port}{SECRET_PATH}"), session
        )
    finally:
        server.close()
        await server.wait_closed()
    assert (delivery.ok, delivery.permanent) == (False, False)
    assert delivery.detail
    assert SECRET_TOKEN not in delivery.detail
    assert seconds < QUICK_SECONDS


async def test_tls_to_a_plain_http_receiver_is_a_retryable_failure(
    receiver: WebhookReceiver, session: aiohttp.ClientSession
) -> None:
    url = receiver.url.replace("http://", "https://")
    delivery = await send(DOWN, channel("webhook", url), session)
    assert (delivery.ok, delivery.permanent) == (False, False)
    assert "TLS handshake failed" in delivery.detail
    assert SECRET_TOKEN not in delivery.detail


@pytest.fixture
async def https_url(ca: trustme.CA) -> AsyncIterator[str]:
    async def accept(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{tail:.*}", accept)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(ssl=server_tls_context(ca))
    yield str(server.make_url("/hook"))
    await server.close()


async def test_webhook_tls_is_verified_unless_switched_off(
    https_url: str, ca: trustme.CA, session: aiohttp.ClientSession
) -> None:
    assert https_url.startswith("https://")
    rejected = await send(DOWN, channel("webhook", https_url), session)
    assert (rejected.ok, rejected.permanent) == (False, False)
    assert "certificate" in rejected.detail

    unverified = await send(DOWN, channel("webhook", https_url, verify_tls=False), session)
    assert unverified == Delivery(ok=True, detail="HTTP 200")

    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trusting)) as own:
        verified = await send(DOWN, channel("webhook", https_url), own)
    assert verified == Delivery(ok=True, detail="HTTP 200")


async def test_webhook_tls_is_verified_against_the_channels_own_ca(
    https_url: str, ca: trustme.CA, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """``ca_file``: a private CA's receiver verifies; another CA's file does not help."""
    ca_file, other_file = tmp_path / "ca.pem", tmp_path / "other.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    trustme.CA().cert_pem.write_to_path(str(other_file))
    verified = await send(DOWN, channel("webhook", https_url, ca_file=str(ca_file)), session)
    assert verified == Delivery(ok=True, detail="HTTP 200")
    refused = await send(DOWN, channel("webhook", https_url, ca_file=str(other_file)), session)
    assert (refused.ok, refused.permanent) == (False, False)
    assert "certificate" in refused.detail


# --- slack ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "text"),
    [
        pytest.param(
            DOWN,
            ":red_circle: *web* is DOWN since 2026-12-06 10:00:00 UTC — connection refused",
            id="down",
        ),
        pytest.param(
            replace(DOWN, kind="degraded", status=Status.DEGRADED, detail="slow: 2.5 s"),
            ":large_yellow_circle: *web* is DEGRADED since 2026-12-06 10:00:00 UTC — slow: 2.5 s",
            id="degraded",
        ),
        pytest.param(
            UP, ":large_green_circle: *web* is UP again (was down for 3 min 12 s)", id="up"
        ),
        pytest.param(
            replace(
                UP,
                resolves=(
                    Opened("degraded", OUTAGE_AT - timedelta(minutes=10)),
                    Opened("down", OUTAGE_AT),
                ),
            ),
            ":large_green_circle: *web* is UP again (was down for 13 min 12 s)",
            id="up-from-the-earliest-notification",
        ),
        pytest.param(
            replace(UP, resolves=(Opened("degraded", OUTAGE_AT),)),
            ":large_green_circle: *web* is UP again (was degraded for 3 min 12 s)",
            id="up-after-degraded",
        ),
        pytest.param(
            replace(DOWN, reminder=2),
            ":red_circle: *web* is still DOWN (reminder 2) since 2026-12-06 10:00:00 UTC"
            " — connection refused",
            id="reminder",
        ),
        pytest.param(
            replace(DOWN, detail="HTTP 503 <html> & more", url="https://status.example/"),
            ":red_circle: *web* is DOWN since 2026-12-06 10:00:00 UTC — HTTP 503 &lt;html&gt;"
            " &amp; more <https://status.example/|status page>",
            id="escaped-with-status-page",
        ),
        pytest.param(
            replace(DOWN, detail=None),
            ":red_circle: *web* is DOWN since 2026-12-06 10:00:00 UTC",
            id="no-detail",
        ),
    ],
)
def test_slack_text(message: Message, text: str) -> None:
    assert slack_text(message) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        pytest.param(0, "0 s", id="zero"),
        pytest.param(59.9, "59 s", id="seconds"),
        pytest.param(192, "3 min 12 s", id="minutes"),
        pytest.param(2 * 3600 + 5 * 60 + 7, "2 h 5 min", id="hours"),
        pytest.param(3 * 86_400 + 4 * 3600 + 59, "3 d 4 h", id="days"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


async def test_slack_posts_the_text_with_the_key(
    receiver: WebhookReceiver, session: aiohttp.ClientSession
) -> None:
    delivery = await send(UP, channel("slack", receiver.url), session)
    assert delivery.ok
    assert receiver.bodies() == [{"text": slack_text(UP)}]
    assert receiver.keys() == [UP_KEY]


# --- email ------------------------------------------------------------------------------------


async def test_email_over_plain_smtp(session: aiohttp.ClientSession) -> None:
    with SmtpReceiver() as smtp:
        delivery = await send(
            replace(DOWN, url="https://status.example/"), email_channel(smtp.url), session
        )
    assert delivery.ok
    assert delivery.detail.startswith("250 ")
    [mail] = smtp.messages
    assert (mail.mail_from, mail.rcpt_tos, mail.tls) == (
        "uptime@example.org",
        ("oncall@example.org",),
        False,
    )
    message = mail.message
    assert message["Subject"] == "[uptime] web is DOWN"
    assert message["From"] == "uptime@example.org"
    assert message["To"] == "oncall@example.org"
    assert message["Message-ID"] == f"<{KEY}@uptime-daemon>"
    assert message["X-Uptime-Idempotency-Key"] == KEY
    assert parsedate_to_datetime(message["Date"]) == NOW
    body = message.get_content()
    for line in (
        "Service: web",
        "Event: down",
        "Status: down",
        "Previous status: up",
        "At: 2026-12-06T10:00:00.000Z",
        "Detail: connection refused",
        "Description: The shop",
        "Status page: https://status.example/",
        "Sent by: daemon-a",
    ):
        assert line in body.splitlines()


@pytest.mark.parametrize(
    ("message", "subject"),
    [
        pytest.param(DOWN, "[uptime] web is DOWN", id="down"),
        pytest.param(replace(DOWN, kind="degraded"), "[uptime] web is DEGRADED", id="degraded"),
        pytest.param(UP, "[uptime] web is UP again", id="up"),
        pytest.param(
            replace(DOWN, reminder=3), "[uptime] web is still DOWN (reminder 3)", id="reminder"
        ),
    ],
)
def test_email_subject(message: Message, subject: str) -> None:
    mail = email_message(message, email_channel("smtp://127.0.0.1"), now=NOW)
    assert mail["Subject"] == subject


def test_email_body_of_an_up_says_how_long_the_outage_lasted() -> None:
    mail = email_message(UP, email_channel("smtp://127.0.0.1"), now=NOW)
    assert "Outage: 3 min 12 s" in mail.get_content().splitlines()


async def test_email_with_starttls_and_auth_verified_against_the_ca(
    ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, session: aiohttp.ClientSession
) -> None:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))  # the system trust store, as an admin would
    receiver = SmtpReceiver(
        tls_context=server_tls_context(ca), require_starttls=True, auth=("alerts", SMTP_PASSWORD)
    )
    with receiver as smtp:
        to = email_channel(smtp.url, username="alerts", password=SMTP_PASSWORD)
        delivery = await send(DOWN, to, session)
    assert delivery.ok, delivery.detail
    [mail] = smtp.messages
    assert (mail.tls, mail.login) == (True, "alerts")
    assert smtp.logins == [("alerts", True)]

    monkeypatch.delenv("SSL_CERT_FILE")  # now the channel's own CA file instead
    again = SmtpReceiver(
        tls_context=server_tls_context(ca), require_starttls=True, auth=("alerts", SMTP_PASSWORD)
    )
    with again as smtp:
        to = email_channel(
            smtp.url, username="alerts", password=SMTP_PASSWORD, ca_file=str(ca_file)
        )
        delivery = await send(DOWN, to, session)
    assert delivery.ok, delivery.detail
    assert [m.tls for m in smtp.messages] == [True]


async def test_email_with_starttls_unverified(
    ca: trustme.CA, session: aiohttp.ClientSession
) -> None:
    receiver = SmtpReceiver(
        tls_context=server_tls_context(ca), require_starttls=True, auth=("alerts", SMTP_PASSWORD)
    )
    with receiver as smtp:
        to = email_channel(smtp.url, username="alerts", password=SMTP_PASSWORD, verify_tls=False)
        delivery = await send(DOWN, to, session)
    assert delivery.ok, delivery.detail
    assert [m.tls for m in smtp.messages] == [True]


async def test_email_refuses_a_certificate_it_cannot_verify(
    ca: trustme.CA, session: aiohttp.ClientSession
) -> None:
    receiver = SmtpReceiver(
        tls_context=server_tls_context(ca), require_starttls=True, auth=("alerts", SMTP_PASSWORD)
    )
    with receiver as smtp:
        to = email_channel(smtp.url, username="alerts", password=SMTP_PASSWORD)
        delivery = await send(DOWN, to, session)
    assert (delivery.ok, delivery.permanent) == (False, False)
    assert "certificate" in delivery.detail.lower()
    assert SMTP_PASSWORD not in delivery.detail
    assert smtp.messages == []
    assert smtp.logins == []


async def test_email_over_implicit_tls(ca: trustme.CA, session: aiohttp.ClientSession) -> None:
    with SmtpReceiver(tls_context=server_tls_context(ca), implicit_tls=True) as smtp:
        assert smtp.url.startswith("smtps://")
        delivery = await send(DOWN, email_channel(smtp.url, verify_tls=False), session)
    assert delivery.ok, delivery.detail
    assert [m.tls for m in smtp.messages] == [True]


@pytest.mark.parametrize(
    ("tls_offered", "starttls"),
    [
        pytest.param(False, True, id="server-offers-no-tls"),
        pytest.param(True, False, id="channel-turns-starttls-off"),
    ],
)
async def test_a_password_never_crosses_in_the_clear(
    ca: trustme.CA, session: aiohttp.ClientSession, tls_offered: bool, starttls: bool
) -> None:
    receiver = SmtpReceiver(
        tls_context=server_tls_context(ca) if tls_offered else None,
        auth=("alerts", SMTP_PASSWORD),
        auth_require_tls=False,  # it would take the password in the clear: we must not offer it
    )
    with receiver as smtp:
        to = email_channel(
            smtp.url, username="alerts", password=SMTP_PASSWORD, starttls=starttls, verify_tls=False
        )
        delivery = await send(DOWN, to, session)
    assert (delivery.ok, delivery.permanent) == (False, True)
    assert "TLS" in delivery.detail
    assert SMTP_PASSWORD not in delivery.detail
    assert smtp.logins == []
    assert smtp.messages == []


async def test_credentials_a_server_cannot_check_are_permanent(
    ca: trustme.CA, session: aiohttp.ClientSession
) -> None:
    """A server with no accounts configured refuses every login: permanent, nothing sent."""
    with SmtpReceiver(tls_context=server_tls_context(ca)) as smtp:
        to = email_channel(smtp.url, username="alerts", password=SMTP_PASSWORD, verify_tls=False)
        delivery = await send(DOWN, to, session)
    assert (delivery.ok, delivery.permanent) == (False, True)
    assert SMTP_PASSWORD not in delivery.detail
    assert smtp.messages == []


async def test_a_wrong_password_is_permanent(
    ca: trustme.CA, session: aiohttp.ClientSession
) -> None:
    receiver = SmtpReceiver(tls_context=server_tls_context(ca), auth=("alerts", SMTP_PASSWORD))
    with receiver as smtp:
        to = email_channel(smtp.url, username="alerts", password=WRONG_PASSWORD, verify_tls=False)
        delivery = await send(DOWN, to, session)
    assert (delivery.ok, delivery.permanent) == (False, True)
    assert delivery.detail.startswith("535")
    assert WRONG_PASSWORD not in delivery.detail
    assert set(smtp.logins) == {("alerts", False)}  # one try per mechanism it offers
    assert smtp.messages == []


@pytest.mark.parametrize(
    ("reply", "permanent"),
    [
        pytest.param("550 5.1.1 no such user", True, id="5xx-permanent"),
        pytest.param("450 4.2.1 mailbox busy", False, id="4xx-retryable"),
    ],
)
async def test_a_refused_recipient(
    session: aiohttp.ClientSession, reply: str, permanent: bool
) -> None:
    with SmtpReceiver(refuse={"oncall@example.org": reply}) as smtp:
        delivery = await send(DOWN, email_channel(smtp.url), session)
    assert (delivery.ok, delivery.permanent) == (False, permanent)
    assert reply in delivery.detail
    assert smtp.messages == []


async def test_one_refused_recipient_of_two_still_delivers(
    session: aiohttp.ClientSession,
) -> None:
    with SmtpReceiver(refuse={"nobody@example.org": "550 5.1.1 no such user"}) as smtp:
        to = email_channel(smtp.url, to=["oncall@example.org", "nobody@example.org"])
        delivery = await send(DOWN, to, session)
    assert delivery.ok
    assert delivery.detail.endswith("1 of 2 recipients refused")
    assert [m.rcpt_tos for m in smtp.messages] == [("oncall@example.org",)]


async def test_email_to_a_server_that_is_down_is_retryable(
    session: aiohttp.ClientSession,
) -> None:
    to = email_channel(f"smtp://127.0.0.1:{free_port()}", password=SMTP_PASSWORD, username="a")
    delivery, seconds = await timed_send(DOWN, to, session)
    assert delivery == Delivery(ok=False, detail="cannot connect: Connection refused")
    assert SMTP_PASSWORD not in delivery.detail
    assert seconds < QUICK_SECONDS


async def test_email_to_a_server_that_never_greets_times_out(
    silent_port: int, session: aiohttp.ClientSession
) -> None:
    to = email_channel(f"smtp://127.0.0.1:{silent_port}", timeout_seconds=0.3)
    delivery, seconds = await timed_send(DOWN, to, session)
    assert (delivery.ok, delivery.permanent) == (False, False)
    assert seconds < QUICK_SECONDS


# --- alertmanager -----------------------------------------------------------------------------


def test_alertmanager_alerts_for_an_outage_and_its_end() -> None:
    firing = alertmanager_alerts(
        replace(DOWN, url="https://status.example/"), now=NOW, alert_ttl_seconds=TTL_SECONDS
    )
    assert firing == [
        {
            "labels": LABELS,
            "annotations": {
                "summary": "web is DOWN",
                "description": "connection refused",
                "idempotency_key": KEY,
            },
            "startsAt": "2026-12-06T10:00:00.000Z",
            "endsAt": "2026-12-06T11:03:12.000Z",
            "generatorURL": "https://status.example/",
        }
    ]
    degraded_at = OUTAGE_AT - timedelta(minutes=1)
    up = replace(UP, detail=None, resolves=(Opened("degraded", degraded_at), Opened("down", NOW)))
    resolving = alertmanager_alerts(up, now=NOW, alert_ttl_seconds=TTL_SECONDS)
    assert [(a["labels"], a["startsAt"], a["endsAt"]) for a in resolving] == [
        (
            LABELS | {"alertname": "UptimeServiceDegraded", "severity": "ticket"},
            "2026-12-06T09:59:00.000Z",
            "2026-12-06T10:03:12.000Z",
        ),
        (
            LABELS,
            "2026-12-06T10:03:12.000Z",
            "2026-12-06T10:03:12.001Z",
        ),  # never ends before it starts
    ]
    assert all("generatorURL" not in a for a in resolving)
    assert resolving[0]["annotations"] == {
        "summary": "web is UP again",
        "description": "",
        "idempotency_key": UP_KEY,
    }


async def test_alertmanager_posts_to_the_v2_api_and_a_400_is_permanent(
    receiver: WebhookReceiver, session: aiohttp.ClientSession
) -> None:
    receiver.respond_with(400)
    base = receiver.url.removesuffix(SECRET_PATH) + "/"  # a trailing slash is no double slash
    delivery = await send(
        DOWN, channel("alertmanager", base, headers={"X-Scope-OrgID": "ops"}), session
    )
    assert (delivery.ok, delivery.permanent) == (False, True)
    assert delivery.detail.startswith("HTTP 400")
    [request] = receiver.requests
    assert request.path == "/api/v2/alerts"
    assert request.json == alertmanager_alerts(DOWN, now=NOW, alert_ttl_seconds=TTL_SECONDS)
    assert request.headers["idempotency-key"] == KEY
    assert request.headers["x-scope-orgid"] == "ops"


async def test_an_up_that_resolves_nothing_sends_nothing(
    receiver: WebhookReceiver, session: aiohttp.ClientSession
) -> None:
    base = receiver.url.removesuffix(SECRET_PATH)
    delivery = await send(replace(UP, resolves=()), channel("alertmanager", base), session)
    assert delivery == Delivery(ok=True, detail="nothing to resolve")
    assert receiver.requests == []


@pytest.fixture
def alertmanager_hook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(path="/alertmanager") as hook:
        yield hook


@pytest.fixture
def alertmanager(
    alertmanager_hook: WebhookReceiver, tmp_path: Path
) -> Iterator[AlertmanagerProcess]:
    require_alertmanager()
    with AlertmanagerProcess(alertmanager_hook.url, tmp_path) as started:
        yield started


def _notifications(hook: WebhookReceiver, status: str) -> list[dict[str, Any]]:
    return [body for body in hook.bodies() if body["status"] == status]


@pytest.mark.system
async def test_the_real_alertmanager_fires_once_and_resolves(
    alertmanager: AlertmanagerProcess,
    alertmanager_hook: WebhookReceiver,
    session: aiohttp.ClientSession,
) -> None:
    now = datetime.now(UTC)  # Alertmanager judges endsAt by its own clock
    down = replace(DOWN, at=now - timedelta(minutes=1), url="https://status.example/")
    up = replace(UP, at=now, resolves=(Opened("down", down.at),))
    to = channel("alertmanager", alertmanager.url)

    for _ in range(2):  # the same message twice, as after a takeover: still one alert
        assert await send(down, to, session, now=now) == Delivery(ok=True, detail="HTTP 200")
        [alert] = alertmanager.alerts()
        assert alert["labels"] == LABELS
        assert alert["status"]["state"] == "active"
        assert alert["annotations"]["idempotency_key"] == KEY
        assert alert["generatorURL"] == "https://status.example/"

    [firing] = await until(lambda: _notifications(alertmanager_hook, "firing"), within=15)
    assert [a["labels"] for a in firing["alerts"]] == [LABELS]

    assert await send(up, to, session, now=now) == Delivery(ok=True, detail="HTTP 200")
    [resolved] = await until(lambda: _notifications(alertmanager_hook, "resolved"), within=15)
    assert [(a["labels"], a["status"]) for a in resolved["alerts"]] == [(LABELS, "resolved")]
    assert len(_notifications(alertmanager_hook, "firing")) == 1  # none between the two
    assert alertmanager.alerts() == []
