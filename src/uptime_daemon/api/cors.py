"""CORS: browsers on the origins in ``server.allowed_origins`` may call the JSON API from another site.

The rules, read from the settings in force at each request (a reload changes them):

* Only the JSON API answers cross-origin: ``/uptime``, ``/health``, ``/maintenance``, ``/streams``
  (and the seeds' ``/api/...`` spellings), ``/status/data`` and ``/api/openapi.json``. Not
  ``/metrics`` (Prometheus is no browser, and no page needs to read it), not the HTML pages, not
  ``/ws/health`` (browsers do not apply CORS to WebSockets; socket.io checks origins itself).
* A listed ``Origin`` is echoed in ``Access-Control-Allow-Origin`` (exactly: no pattern, never
  ``null``), with ``Vary: Origin`` on every answer of the API, since they differ by origin and a
  cache must not mix them. With ``"*"`` configured any origin gets ``Access-Control-Allow-Origin: *``.
* ``Access-Control-Allow-Credentials`` is never sent, with ``*`` (the Fetch standard refuses the
  pair, and any site would ride the browser's credentials) nor with a listed origin. The API
  authenticates with a bearer token the page's script sets itself; the daemon sets no cookie and
  has no HTTP-auth realm on these paths, so no call needs credentials mode. Allowing it would only
  let a listed page ride ambient credentials a proxy in front may use (an SSO cookie, the proxy's
  Basic auth), which listing an origin does not grant. The socket.io feed answers the same way.
* An unlisted origin gets no CORS header at all; its preflight is refused with a JSON 403, which a
  browser fails as it would a 204 without headers, but which says what is wrong to whoever
  reads the network panel or the proxy's log, and tells nothing about methods or headers.
* A preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) is answered here,
  before the access check and the check rate limit: browsers send it without the token, and it
  runs nothing. ``Access-Control-Allow-Methods`` is what the router takes on the path (404 for a
  path it does not know, 405 with ``Allow`` for a method the path does not take).

CORS only decides what a page may *read*; bearer tokens still decide what a caller may *do*. But a
browser sends some cross-site writes without asking first (a "simple" ``POST``), so a write (``POST``,
``PUT``, ``PATCH``, ``DELETE``) whose ``Origin`` is neither this daemon's own (its ``Host``) nor
allowed is refused with a 403 before it runs: a page on another site cannot run checks or declare
a maintenance window (silencing alerts) through a visitor's browser, even where no operator token
is configured. Clients that are not browsers (curl, scripts, Alertmanager) send no ``Origin``.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

from aiohttp import hdrs, web
from aiohttp.web_urldispatcher import MatchInfoError

from uptime_daemon.api.access import WRITES, is_preflight
from uptime_daemon.api.endpoint import canonical
from uptime_daemon.api.errors import Handler, json_error
from uptime_daemon.api.keys import SETTINGS

ANY_ORIGIN: Final = "*"
CROSS_ORIGIN_PREFIXES: Final = ("/uptime", "/health", "/maintenance", "/streams", "/api/streams")
"""Path prefixes (after the seeds' ``/api``) served cross-origin, matched segment by segment."""
CROSS_ORIGIN_PATHS: Final = frozenset({"/status/data", "/api/openapi.json"})
ALLOWED_HEADERS: Final = (
    "Authorization",
    "Content-Type",
    "If-None-Match",
    "Last-Event-ID",
    "Idempotency-Key",
)
"""Request headers a page may send: none of them carries ambient authority (cookies, for one, are
not headers a script may set)."""
EXPOSED_HEADERS: Final = "Allow, ETag, Retry-After, WWW-Authenticate"
"""Response headers beyond the CORS-safelisted ones a page needs to read: the 405's ``Allow``, the
429's ``Retry-After``, the 401's ``WWW-Authenticate``, and ``ETag`` for conditional requests."""
MAX_AGE_SECONDS: Final = 600
"""How long a browser may reuse a preflight answer: a reload that drops an origin takes hold in
browsers within ten minutes."""
OPENAPI_NOTE: Final = (
    "Browsers on the origins listed in `server.allowed_origins` (`ALLOWED_ORIGINS`) may call this "
    "API cross-origin (CORS): a listed origin is echoed in `Access-Control-Allow-Origin`, and "
    'with `"*"` any origin gets `*`. Credentials mode is never allowed: send the bearer token in '
    "`Authorization`. Preflights need no token; `/metrics` and the WebSocket are not cross-origin."
)


def is_cross_origin_path(path: str) -> bool:
    """Whether ``path`` is part of the API served cross-origin."""
    path = canonical(path)
    return path in CROSS_ORIGIN_PATHS or any(
        path == prefix or path.startswith(prefix + "/") for prefix in CROSS_ORIGIN_PREFIXES
    )


def _origin(request: web.Request) -> str | None:
    """The one ``Origin`` header, as the browser sent it; ``None`` when absent or repeated."""
    values = request.headers.getall(hdrs.ORIGIN, [])
    return values[0] if len(values) == 1 else None


def _allow_origin(origin: str | None, allowed: tuple[str, ...]) -> dict[str, str]:
    """The ``Access-Control-Allow-Origin`` that lets ``origin`` read the answer; empty if none does."""
    if ANY_ORIGIN in allowed:
        return {hdrs.ACCESS_CONTROL_ALLOW_ORIGIN: ANY_ORIGIN}
    if origin is not None and origin in allowed:
        return {hdrs.ACCESS_CONTROL_ALLOW_ORIGIN: origin}
    return {}


def _vary(response: web.StreamResponse, *fields: str) -> None:
    """Add ``fields`` to ``Vary``, keeping what is there (``Accept-Encoding``, say)."""
    present = [v.strip() for v in response.headers.get(hdrs.VARY, "").split(",") if v.strip()]
    names = {v.lower() for v in present}
    present += [f for f in fields if f.lower() not in names]
    response.headers[hdrs.VARY] = ", ".join(present)


def cors_headers(request: web.Request) -> dict[str, str]:
    """The CORS headers of an actual (not preflight) answer to ``request``; empty when it gets none.

    The middleware adds them to every answer that has not been sent yet; a handler that streams
    (``prepare()`` before it returns) sets them itself before preparing.
    """
    allowed_origins = request.app[SETTINGS].current.server.allowed_origins
    if not allowed_origins or not is_cross_origin_path(request.path):
        return {}
    headers = _allow_origin(_origin(request), allowed_origins)
    if headers:
        headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = EXPOSED_HEADERS
    if ANY_ORIGIN not in allowed_origins:  # with "*" the answer is the same for every origin
        headers[hdrs.VARY] = hdrs.ORIGIN
    return headers


def add_cors_headers(response: web.StreamResponse, request: web.Request) -> None:
    """Give ``response`` the CORS headers of ``request``, for a handler about to ``prepare()`` it."""
    _decorate(response, cors_headers(request))


def _decorate(response: web.StreamResponse, headers: dict[str, str]) -> None:
    if response.prepared:  # sent already (see ``cors_headers``)
        return
    for name, value in headers.items():
        if name == hdrs.VARY:
            _vary(response, value)
        else:
            response.headers[name] = value


def _preflight(
    request: web.Request, error: web.HTTPException, allowed_origins: tuple[str, ...]
) -> web.Response:
    """Answer a preflight for a path the router has no ``OPTIONS`` route on (``error`` says why)."""
    origin = _origin(request)
    allow = _allow_origin(origin, allowed_origins)
    if not allow:
        return json_error(
            403, "origin_not_allowed", f"origin {origin!r} is not in server.allowed_origins"
        )
    response = _preflight_answer(request, error)
    response.headers.update(allow)
    _vary(
        response,
        hdrs.ORIGIN,
        hdrs.ACCESS_CONTROL_REQUEST_METHOD,
        hdrs.ACCESS_CONTROL_REQUEST_HEADERS,
    )
    return response


def _preflight_answer(request: web.Request, error: web.HTTPException) -> web.Response:
    if not isinstance(error, web.HTTPMethodNotAllowed):
        return json_error(404, "not_found", f"no route for {request.path}")
    methods = ", ".join(sorted(error.allowed_methods))
    requested = request.headers[hdrs.ACCESS_CONTROL_REQUEST_METHOD]
    if requested not in error.allowed_methods:
        response = json_error(
            405, "method_not_allowed", f"{request.path} takes {methods}, not {requested}"
        )
        response.headers[hdrs.ALLOW] = methods
        return response
    asked = {
        name.strip().lower()
        for name in request.headers.get(hdrs.ACCESS_CONTROL_REQUEST_HEADERS, "").split(",")
    }
    response = web.Response(status=204)
    response.headers[hdrs.ACCESS_CONTROL_ALLOW_METHODS] = methods
    if granted := [name for name in ALLOWED_HEADERS if name.lower() in asked]:
        response.headers[hdrs.ACCESS_CONTROL_ALLOW_HEADERS] = ", ".join(granted)
    response.headers[hdrs.ACCESS_CONTROL_MAX_AGE] = str(MAX_AGE_SECONDS)
    return response


_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


def is_own_origin(origin: str, request: web.Request) -> bool:
    """Whether ``origin`` is the daemon's own as the page's browser sees it.

    The same host and port as the request's ``Host``, and its scheme. Behind a TLS proxy the scheme is the proxy's ``X-Forwarded-Proto``: a browser cannot set that
    header, so trusting it opens nothing to another site.
    """
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip()
    theirs, ours = urlsplit(origin), urlsplit(f"//{request.host}")
    try:
        their_port, our_port = theirs.port, ours.port
    except ValueError:
        return False
    scheme = theirs.scheme
    default = _DEFAULT_PORTS.get(scheme)
    return (
        theirs.hostname is not None
        and theirs.hostname == ours.hostname
        and scheme in {request.scheme, forwarded}
        and (their_port or default) == (our_port or default)
    )


def _cross_site_write(request: web.Request, allowed_origins: tuple[str, ...]) -> str | None:
    """The foreign ``Origin`` of a write a browser sent from another site, else ``None``."""
    if request.method not in WRITES or hdrs.ORIGIN not in request.headers:
        return None
    origin = request.headers[hdrs.ORIGIN]
    if ANY_ORIGIN in allowed_origins or origin in allowed_origins or is_own_origin(origin, request):
        return None
    return origin


@web.middleware
async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer preflights; add the CORS headers to every answer of the API, errors included.

    A preflight is answered here when no route takes ``OPTIONS`` on its path and the path is
    served cross-origin or unknown (404). Any other preflight goes on as any request would: to a
    route that answers ``OPTIONS`` itself, or to the ``405`` of a path not served cross-origin.
    """
    allowed_origins = request.app[SETTINGS].current.server.allowed_origins
    match = request.match_info
    if (
        allowed_origins
        and is_preflight(request)
        and isinstance(match, MatchInfoError)
        and (
            is_cross_origin_path(request.path)
            or not isinstance(match.http_exception, web.HTTPMethodNotAllowed)
        )
    ):
        return _preflight(request, match.http_exception, allowed_origins)
    if (foreign := _cross_site_write(request, allowed_origins)) is not None:
        return json_error(
            403,
            "origin_not_allowed",
            f"a {request.method} from a page on {foreign!r} is refused: that origin is not in "
            "server.allowed_origins",
        )
    headers = cors_headers(request)
    if not headers:
        return await handler(request)
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # the JSON 4xx the handlers raise pass the error middleware
        _decorate(exc, headers)
        raise
    _decorate(response, headers)
    return response
