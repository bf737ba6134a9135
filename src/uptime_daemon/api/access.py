"""Who may call what: bearer tokens (read, operator), Basic auth on /metrics, a check rate limit.

* Every write (``POST /uptime/check``, ``POST``/``DELETE`` under ``/maintenance``) needs an
  operator token once any operator token is configured.
* ``/streams`` needs a read or operator token once any read token is configured; the seeds'
  user-data streams (``/streams/user-…``) always do, when ``[streams] user_data`` is on.
* With ``protect_reads`` every endpoint but ``/health``, ``/health/ready`` and ``/metrics`` does.
* ``/metrics`` takes HTTP Basic auth when ``metrics_username``/``metrics_password`` are set, as
  Prometheus' ``basic_auth`` sends it.

CORS preflights (``OPTIONS`` with ``Access-Control-Request-Method``) pass without a token: browsers
never send one on them, and the answer runs nothing.

Missing or unknown credentials are 401 (with ``WWW-Authenticate``); a read token on an operator
endpoint is 403. Tokens are compared with ``hmac.compare_digest`` against every configured token, so
the time taken says nothing about which token (or how much of one) matched.
"""

from __future__ import annotations

import base64
import hmac
import time
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Final

from aiohttp import web
from pydantic import SecretStr

from uptime_daemon.api.endpoint import canonical
from uptime_daemon.api.errors import Handler, json_error
from uptime_daemon.api.keys import SETTINGS
from uptime_daemon.config.model import AuthSettings, Settings

ALWAYS_OPEN: Final = frozenset({"/health", "/health/ready"})
PRIVATE_STREAMS: Final = ("/streams/user-", "/streams/system-user-streams/")
"""The seeds' user-data streams and their index: never read without a token."""
WRITES: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class Role(IntEnum):
    """What a caller may do; higher includes lower."""

    NONE = 0
    READ = 1
    OPERATOR = 2


@dataclass(slots=True)
class TokenBucket:
    """``capacity`` requests, refilled continuously over a minute."""

    capacity: float
    tokens: float = -1.0
    updated: float = field(default_factory=time.monotonic)

    def take(self, per_minute: int) -> float:
        """0 when allowed, else the seconds to wait."""
        now = time.monotonic()
        self.capacity = float(per_minute)
        if self.tokens < 0:
            self.tokens = self.capacity
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * per_minute / 60)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) * 60 / per_minute


CHECK_BUCKET = web.AppKey("check_bucket", TokenBucket)


def _matches(given: str, tokens: tuple[SecretStr, ...]) -> bool:
    found = False
    for token in tokens:  # no early exit: every token is compared
        found |= hmac.compare_digest(given.encode(), token.get_secret_value().encode())
    return found


def role_of(request: web.Request, auth: AuthSettings) -> Role | None:
    """The caller's role from ``Authorization: Bearer``; ``None`` when a token was given but is unknown."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return Role.NONE
    if _matches(token, auth.operator_tokens):
        return Role.OPERATOR
    if _matches(token, auth.read_tokens):
        return Role.READ
    return None


def needed_role(request: web.Request, settings: Settings) -> Role:
    """The least role this request needs under the current settings."""
    auth = settings.server.auth
    path = canonical(request.path)
    if path in ALWAYS_OPEN or path == "/metrics":
        return Role.NONE
    if request.method in WRITES and auth.operator_tokens:
        return Role.OPERATOR
    if settings.streams.user_data and path.startswith(PRIVATE_STREAMS):
        return Role.READ
    if path.startswith("/streams") and auth.read_tokens:
        return Role.READ
    if auth.protect_reads:
        return Role.READ
    return Role.NONE


def _metrics_allowed(request: web.Request, auth: AuthSettings) -> bool:
    if auth.metrics_username is None or auth.metrics_password is None:
        return True
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return False
    user_ok = hmac.compare_digest(user.encode(), auth.metrics_username.encode())
    password_ok = hmac.compare_digest(
        password.encode(), auth.metrics_password.get_secret_value().encode()
    )
    return user_ok & password_ok


def is_preflight(request: web.Request) -> bool:
    """A CORS preflight: ``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``."""
    return (
        request.method == "OPTIONS"
        and "Origin" in request.headers
        and "Access-Control-Request-Method" in request.headers
    )


@web.middleware
async def access_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Enforce the rules above with the settings in force now (a reload changes them)."""
    settings = request.app[SETTINGS].current
    auth = settings.server.auth
    if request.path == "/metrics" and not _metrics_allowed(request, auth):
        response = json_error(401, "unauthorized", "/metrics needs HTTP Basic credentials")
        response.headers["WWW-Authenticate"] = 'Basic realm="metrics"'
        return response
    if is_preflight(request):  # a browser asks without the token; the answer runs nothing
        return await handler(request)
    needed = needed_role(request, settings)
    if needed > Role.NONE:
        role = role_of(request, auth)
        if role is None or role is Role.NONE:
            response = json_error(401, "unauthorized", "a valid bearer token is required")
            response.headers["WWW-Authenticate"] = 'Bearer realm="uptime-daemon"'
            return response
        if role < needed:
            return json_error(403, "forbidden", "this token may read but not write")
    if canonical(request.path) == "/uptime/check" and request.method == "POST":
        wait = request.app[CHECK_BUCKET].take(auth.checks_per_minute)
        if wait > 0:
            response = json_error(
                429, "rate_limited", f"at most {auth.checks_per_minute} check runs a minute"
            )
            response.headers["Retry-After"] = str(max(1, round(wait)))
            return response
    return await handler(request)
