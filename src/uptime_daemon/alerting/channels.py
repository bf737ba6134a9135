"""Notification channels: one ``Message`` in, one bounded attempt at its receiver, one ``Delivery`` out.

``deliver`` dispatches on the channel's kind to four small senders: ``webhook``, ``slack`` and
``alertmanager`` share one HTTP helper, ``email`` speaks SMTP through ``aiosmtplib``. The payloads are
built by pure functions (``webhook_body``, ``slack_text``, ``email_message``, ``alertmanager_alerts``)
so they can be tested without a receiver. Whatever the receiver or the network does, ``deliver``
returns a ``Delivery`` (only our own bugs raise); its ``detail`` never carries a secret: the channel
URL's path, query and credentials, header values and the SMTP password are scrubbed from it.

Every attempt carries the message's idempotency key (``Idempotency-Key`` header, or the email's
``Message-ID``), so a receiver that honours it, or a human, can drop a repeat sent after a takeover.

The webhook body (JSON, camelCase; fields are only ever added)::

    {
      "key": "0b9d…",                  # the idempotency key (also the Idempotency-Key header)
      "channel": "ops",                # the channel's name
      "service": "web",
      "event": "down",                 # down | degraded | up
      "status": "down",                # the service's status from "at"
      "previousStatus": "up",          # or null
      "at": "2026-12-06T10:00:00.000Z",  # when the transition happened (UTC, milliseconds)
      "reminder": 0,                   # 0: the transition; n: the n-th reminder
      "resolves": [{"event": "down", "at": "2026-12-06T09:56:48.000Z"}],  # for "up"
      "detail": "connection refused",  # or null
      "description": "The shop",       # or null
      "url": "https://status.example/",  # or null
      "sentBy": "daemon-a"
    }
"""

from __future__ import annotations

import asyncio
import functools
import os
import ssl
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Final
from urllib.parse import urlsplit

import aiohttp
import aiosmtplib
import orjson
from aiohttp import http_exceptions
from multidict import CIMultiDict

from uptime_daemon import __version__
from uptime_daemon.alerting.message import Delivery, Message, MessageKind, encode_message
from uptime_daemon.clock import to_iso_millis
from uptime_daemon.config.model import NotificationChannel
from uptime_daemon.redact import redact

__all__ = [
    "alertmanager_alerts",
    "deliver",
    "email_message",
    "format_duration",
    "headline",
    "outage_seconds",
    "slack_text",
    "webhook_body",
]

USER_AGENT: Final = f"uptime-daemon/{__version__}"
MAX_RESPONSE_BYTES: Final = 64 * 1024
"""At most this much of a response body is read, for the detail."""
DETAIL_CHARS: Final = 200
SMTP_PORT: Final = 25
SMTPS_PORT: Final = 465
RETRYABLE_HTTP_STATUSES: Final = frozenset({408, 425, 429})
"""4xx answers that say "not now" rather than "never"; every 5xx is retryable too."""
MIN_SECRET_CHARS: Final = 4
"""Shorter strings are not scrubbed from details: they would mangle ordinary words."""
MIN_SECRET_SEGMENT_CHARS: Final = 8
"""A URL path segment this long may be a token on its own (Slack's last one is)."""

_ALERTNAMES: Final[dict[MessageKind, str]] = {
    "down": "UptimeServiceDown",
    "degraded": "UptimeServiceDegraded",
}
_SEVERITIES: Final[dict[MessageKind, str]] = {"down": "page", "degraded": "ticket"}
_ONE_MS: Final = timedelta(milliseconds=1)
_SMTP_PERMANENT: Final = 500

_HTTP_ERRORS: Final = (aiohttp.ClientError, OSError, http_exceptions.HttpProcessingError)
"""What a receiver or the network can make aiohttp raise (``ssl.SSLError`` is an ``OSError``)."""


async def deliver(
    message: Message,
    channel: NotificationChannel,
    *,
    session: aiohttp.ClientSession,
    now: datetime,
    alert_ttl_seconds: float,
) -> Delivery:
    """Make one attempt to deliver ``message`` through ``channel``, within its ``timeout_seconds``.

    ``now`` is when the attempt is made (an Alertmanager alert's ``endsAt`` is ``now`` plus
    ``alert_ttl_seconds``; an email's ``Date``). Never raises for what the receiver or the network
    does: a refusal, a timeout or a garbage answer is a ``Delivery`` that is not ``ok``.
    """
    try:
        async with asyncio.timeout(channel.timeout_seconds):
            delivery = await _send(message, channel, session, now, alert_ttl_seconds)
    except TimeoutError:
        delivery = Delivery(ok=False, detail=f"no answer within {channel.timeout_seconds:g} s")
    return replace(delivery, detail=_scrub(delivery.detail, channel))


async def _send(
    message: Message,
    channel: NotificationChannel,
    session: aiohttp.ClientSession,
    now: datetime,
    alert_ttl_seconds: float,
) -> Delivery:
    url = channel.url.get_secret_value()
    match channel.kind:
        case "webhook":
            return await _post_json(session, channel, url, webhook_body(message), message.key)
        case "slack":
            return await _post_json(
                session, channel, url, {"text": slack_text(message)}, message.key
            )
        case "email":
            return await _send_email(email_message(message, channel, now=now), channel)
        case "alertmanager":
            alerts = alertmanager_alerts(message, now=now, alert_ttl_seconds=alert_ttl_seconds)
            if not alerts:
                return Delivery(ok=True, detail="nothing to resolve")
            return await _post_json(
                session, channel, url.rstrip("/") + "/api/v2/alerts", alerts, message.key
            )


# --- payloads (pure) --------------------------------------------------------------------------


def webhook_body(message: Message) -> dict[str, object]:
    """The webhook's JSON document (see the module docstring)."""
    return {**encode_message(message), "sentBy": message.sent_by}


def headline(message: Message, name: str | None = None) -> str:
    """``web is DOWN``, ``web is still DOWN (reminder 2)``, ``web is UP again``.

    ``name`` is what to call the service instead of its plain name (Slack bolds it).
    """
    name = message.service if name is None else name
    if message.kind == "up":
        return f"{name} is UP again"
    state = message.kind.upper()
    if message.reminder:
        return f"{name} is still {state} (reminder {message.reminder})"
    return f"{name} is {state}"


def slack_text(message: Message) -> str:
    """One line of Slack ``mrkdwn`` (Mattermost and Rocket.Chat read it alike)."""
    title = headline(message, f"*{message.service}*")
    if message.kind == "up":
        text = f":large_green_circle: {title}"
        if message.resolves:
            was = "down" if any(o.kind == "down" for o in message.resolves) else "degraded"
            text += f" (was {was} for {format_duration(outage_seconds(message))})"
    else:
        emoji = ":red_circle:" if message.kind == "down" else ":large_yellow_circle:"
        text = f"{emoji} {title} since {_utc_text(message.at)}"
        if message.detail:
            text += f" — {_slack_escape(message.detail)}"
    if message.url:
        text += f" <{_slack_escape(message.url)}|status page>"
    return text


def email_message(message: Message, channel: NotificationChannel, *, now: datetime) -> EmailMessage:
    """The email: its ``Message-ID`` is the idempotency key, so a repeat can be recognised."""
    mail = EmailMessage()
    mail["From"] = channel.sender
    mail["To"] = ", ".join(channel.to)
    mail["Subject"] = f"[uptime] {headline(message)}"
    mail["Date"] = format_datetime(now.astimezone(UTC))
    mail["Message-ID"] = f"<{message.key}@uptime-daemon>"
    mail["X-Uptime-Idempotency-Key"] = message.key
    previous = message.previous_status
    lines = [
        headline(message),
        "",
        f"Service: {message.service}",
        f"Event: {message.kind}" + (f" (reminder {message.reminder})" if message.reminder else ""),
        f"Status: {message.status.value}",
        f"Previous status: {'-' if previous is None else previous.value}",
        f"At: {to_iso_millis(message.at)}",
    ]
    if message.resolves:
        lines.append(f"Outage: {format_duration(outage_seconds(message))}")
    lines += [
        f"Detail: {message.detail or '-'}",
        f"Description: {message.description or '-'}",
        f"Status page: {message.url or '-'}",
        f"Sent by: {message.sent_by or '-'}",
    ]
    mail.set_content("\n".join(lines) + "\n")
    return mail


def alertmanager_alerts(
    message: Message, *, now: datetime, alert_ttl_seconds: float
) -> list[dict[str, object]]:
    """Alerts for Alertmanager's ``POST /api/v2/alerts``.

    An outage (or its reminder) is one firing alert that ends ``alert_ttl_seconds`` after ``now``
    unless renewed; ``up`` sends each alert it resolves again with ``endsAt`` in the past, which
    Alertmanager takes as resolved. An ``up`` that resolves nothing gives no alerts.
    """
    if message.kind == "up":
        return [
            _alert(
                message, opened.kind, starts=opened.at, ends=max(message.at, opened.at + _ONE_MS)
            )
            for opened in message.resolves
        ]
    ends = now + timedelta(seconds=alert_ttl_seconds)
    return [_alert(message, message.kind, starts=message.at, ends=ends)]


def _alert(
    message: Message, kind: MessageKind, *, starts: datetime, ends: datetime
) -> dict[str, object]:
    alert: dict[str, object] = {
        "labels": {
            "alertname": _ALERTNAMES[kind],
            "service": message.service,
            "severity": _SEVERITIES[kind],
            "source": "uptime-daemon",
        },
        "annotations": {
            "summary": headline(message),
            "description": message.detail or "",
            "idempotency_key": message.key,
        },
        "startsAt": to_iso_millis(starts),
        "endsAt": to_iso_millis(ends),
    }
    if message.url:
        alert["generatorURL"] = message.url
    return alert


def outage_seconds(message: Message) -> float:
    """How long the outage an ``up`` message ends lasted: from its earliest notification to ``at``."""
    if not message.resolves:
        return 0.0
    return max(0.0, (message.at - min(o.at for o in message.resolves)).total_seconds())


def format_duration(seconds: float) -> str:
    """``45 s``, ``3 min 12 s``, ``2 h 5 min``, ``3 d 4 h``: the two largest units."""
    whole = int(seconds)
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _slack_escape(text: str) -> str:
    """Slack's three control characters; everything else is literal."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# --- transports -------------------------------------------------------------------------------


async def _post_json(
    session: aiohttp.ClientSession,
    channel: NotificationChannel,
    url: str,
    document: object,
    key: str,
) -> Delivery:
    """POST ``document`` as JSON; the channel's headers add to ours and never replace them."""
    headers = CIMultiDict(
        {name: value.get_secret_value() for name, value in channel.headers.items()}
    )
    headers.update(
        {"Content-Type": "application/json", "Idempotency-Key": key, "User-Agent": USER_AGENT}
    )
    try:
        async with session.post(
            url,
            data=orjson.dumps(document),
            headers=headers,
            ssl=_tls(channel),
            allow_redirects=False,  # a redirect would carry our headers to wherever it points
        ) as response:
            body = await response.content.read(MAX_RESPONSE_BYTES)
    except _HTTP_ERRORS as exc:
        return Delivery(ok=False, detail=_describe(exc))
    return _http_delivery(response.status, body)


def _http_delivery(status: int, body: bytes) -> Delivery:
    if 200 <= status < 300:  # noqa: PLR2004 - the 2xx range
        return Delivery(ok=True, detail=f"HTTP {status}")
    first = _first_line(body.decode(errors="replace"))
    detail = f"HTTP {status}: {first}" if first else f"HTTP {status}"
    retryable = status in RETRYABLE_HTTP_STATUSES or 500 <= status < 600  # noqa: PLR2004 - 5xx
    # 3xx (redirects are not followed) and other 4xx: the same request cannot succeed later.
    return Delivery(ok=False, detail=detail, permanent=not retryable)


def _tls(channel: NotificationChannel) -> ssl.SSLContext | bool:
    """``False``: no verification; ``True``: the session's own (the system store); else the CA's."""
    if not channel.verify_tls:
        return False
    return True if channel.ca_file is None else _trusting(channel.ca_file)


@functools.lru_cache(maxsize=16)
def _trusting(ca_file: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file)


async def _send_email(mail: EmailMessage, channel: NotificationChannel) -> Delivery:
    """One SMTP session; SMTP replies and connection troubles become a ``Delivery``."""
    parts = urlsplit(channel.url.get_secret_value())
    implicit_tls = parts.scheme == "smtps"
    client = aiosmtplib.SMTP(
        hostname=parts.hostname,
        port=parts.port or (SMTPS_PORT if implicit_tls else SMTP_PORT),
        use_tls=implicit_tls,
        start_tls=False,  # decided in _smtp_session, once EHLO says whether it is offered
        validate_certs=channel.verify_tls,
        cert_bundle=channel.ca_file if channel.verify_tls else None,
        timeout=channel.timeout_seconds,
    )
    try:
        return await _smtp_session(client, mail, channel, implicit_tls=implicit_tls)
    except (aiosmtplib.SMTPException, OSError) as exc:  # OSError: connection and TLS troubles
        return _smtp_failure(exc)
    finally:
        client.close()  # no QUIT: a slow goodbye must not turn a sent message into a failure


async def _smtp_session(
    client: aiosmtplib.SMTP, mail: EmailMessage, channel: NotificationChannel, *, implicit_tls: bool
) -> Delivery:
    """Connect, STARTTLS when offered, AUTH only over TLS, send."""
    await client.connect()
    if not implicit_tls and channel.starttls:
        await client.ehlo()
        if client.supports_extension("starttls"):
            await client.starttls()
    if channel.password is not None and client.get_transport_info("sslcontext") is None:
        return Delivery(
            ok=False,
            detail="no TLS with the server: the password is not sent in the clear",
            permanent=True,
        )
    if channel.username is not None:
        if client.is_ehlo_or_helo_needed:  # STARTTLS forgets what the server offered
            await client.ehlo()
        if not client.supports_extension("auth"):
            return Delivery(ok=False, detail="the server offers no AUTH", permanent=True)
        password = "" if channel.password is None else channel.password.get_secret_value()
        await client.login(channel.username, password)
    refused, reply = await client.send_message(mail)
    detail = f"250 {_first_line(reply)}"
    if refused:
        detail += f"; {len(refused)} of {len(channel.to)} recipients refused"
    return Delivery(ok=True, detail=detail)


def _smtp_failure(exc: aiosmtplib.SMTPException | OSError) -> Delivery:
    """SMTP's own rule: a 4xx reply is "try again later", a 5xx reply is "never"."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        first = exc.recipients[0]
        detail = f"recipients refused: {first.code} {_first_line(first.message)}"
        permanent = all(r.code >= _SMTP_PERMANENT for r in exc.recipients)
        return Delivery(ok=False, detail=detail, permanent=permanent)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        detail = f"{exc.code} {_first_line(exc.message)}"
        return Delivery(ok=False, detail=detail, permanent=exc.code >= _SMTP_PERMANENT)
    return Delivery(ok=False, detail=_describe(exc))  # connection, TLS, timeout, disconnect


# --- details ----------------------------------------------------------------------------------


def _first_line(text: str) -> str:
    return next(iter(text.strip().splitlines()), "")


def _describe(exc: BaseException) -> str:
    """A short line naming what went wrong; never ``str()`` of an exception that embeds the URL."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cause = exc.certificate_error
        return f"certificate rejected: {getattr(cause, 'verify_message', None) or cause}"
    if isinstance(exc, aiohttp.ClientConnectorError):  # its str() shows the SSL context's repr
        return f"cannot connect to {exc.host}:{exc.port}: {_os_reason(exc.os_error)}"
    if isinstance(exc, aiohttp.ClientResponseError):  # its str() ends with the request URL
        return f"invalid response: {_first_line(exc.message) or type(exc).__name__}"
    if isinstance(exc, aiosmtplib.SMTPConnectError) and isinstance(exc.__cause__, OSError):
        return f"cannot connect: {_os_reason(exc.__cause__)}"
    if isinstance(exc, OSError) and exc.errno is not None:
        return _os_reason(exc)
    line = _first_line(str(exc))
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


def _os_reason(error: OSError) -> str:
    """``Connection refused``, ``certificate rejected: …``: what the OS or TLS layer said."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"certificate rejected: {error.verify_message}"
    if isinstance(error, ssl.SSLError):  # its errno is OpenSSL's, not the OS's
        return f"TLS handshake failed: {error.reason or type(error).__name__}"
    if error.errno is not None and error.errno > 0:
        # asyncio replaces strerror with "Connect call failed (...)"; the errno still says why.
        return os.strerror(error.errno)
    return error.strerror or type(error).__name__  # resolver errors have negative errnos


def _secrets(channel: NotificationChannel) -> list[str]:
    """What must never appear in a detail, longest first (a path before its own segments)."""
    url = channel.url.get_secret_value()
    parts = urlsplit(url)
    found = [url, parts.query, parts.username or "", parts.password or ""]
    if parts.path not in ("", "/"):
        found.append(parts.path)
        found += [s for s in parts.path.split("/") if len(s) >= MIN_SECRET_SEGMENT_CHARS]
    found += [value.get_secret_value() for value in channel.headers.values()]
    if channel.password is not None:
        found.append(channel.password.get_secret_value())
    return sorted({s for s in found if len(s) >= MIN_SECRET_CHARS}, key=len, reverse=True)


def _scrub(detail: str, channel: NotificationChannel) -> str:
    """``detail`` with every secret of the channel masked, URL credentials too, and shortened."""
    for secret in _secrets(channel):
        detail = detail.replace(secret, "***")
    return redact(detail)[:DETAIL_CHARS]
