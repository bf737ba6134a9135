"""Every error leaves the API as JSON naming what was wrong; nothing escapes as a traceback.

Three places produce errors: our handlers (``bad_request``, ``not_found``), this middleware
(aiohttp's own 404/405/413, our bugs) and, before any middleware runs, aiohttp's connection
protocol (a request line or header too long, a request that is not HTTP). The last answers through
``JsonErrorAppRunner``'s protocol. All three send the same ``ErrorBody``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Final

import structlog
from aiohttp import http_exceptions, web

from uptime_daemon.api.models import ErrorBody

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
JSON: Final = "application/json"
_KEPT_HEADERS: Final = ("Allow", "WWW-Authenticate", "Retry-After")
"""Headers an aiohttp error carries that the JSON answer keeps (RFC 9110: a 405 lists what is allowed)."""


def _code(reason: str) -> str:
    """The ``error`` of a status that has no more specific one: ``Method Not Allowed`` → ``method_not_allowed``."""
    return reason.lower().replace(" ", "_").replace("-", "_")


def json_error(status: int, error: str, message: str, field: str | None = None) -> web.Response:
    """An ``ErrorBody`` response; ``field`` is null when no one parameter is at fault."""
    body = ErrorBody(error=error, message=message, field=field)
    return web.Response(text=body.model_dump_json(by_alias=True), status=status, content_type=JSON)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn aiohttp's HTML errors and our bugs into JSON; log the bugs with their traceback.

    A client's own mistake (a body that does not decode, hanging up mid-request) is one info line.
    """
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.content_type == JSON or exc.status < 400:  # noqa: PLR2004
            raise
        response = json_error(exc.status, _code(exc.reason), exc.reason)
        for header in _KEPT_HEADERS:
            if header in exc.headers:
                response.headers[header] = exc.headers[header]
        return response
    except web.RequestPayloadError as exc:  # a body that cannot be decoded as sent: the client's
        error = " ".join(str(exc).split())  # "400, message: Can not decode content-encoding: gzip"
        log.info("http_request_malformed", method=request.method, path=request.path, error=error)
        return json_error(400, "bad_request", "the request body cannot be read as sent")
    except Exception as exc:
        if isinstance(exc, ConnectionResetError) and request.transport is None:
            # The client hung up before its request was read: nothing of ours broke, and the
            # answer goes nowhere (aiohttp drops it quietly).
            log.info("client_disconnected", method=request.method, path=request.path)
            return json_error(400, "client_disconnected", "the request was cut short")
        log.exception("request_failed", method=request.method, path=request.path)
        return json_error(500, "internal_error", "internal error; see the daemon's log")


def _malformed(exc: http_exceptions.HttpProcessingError) -> str:
    """What was wrong with a request aiohttp could not parse, without echoing its bytes back."""
    if isinstance(exc, http_exceptions.LineTooLong):
        return "the request line or a header is too long"
    if isinstance(exc, http_exceptions.BadHttpMethod):
        return "not an HTTP request"
    if isinstance(exc, http_exceptions.BadStatusLine):
        return "malformed request line"
    return "malformed HTTP request"


class JsonErrorProtocol(web.RequestHandler):
    """aiohttp's connection protocol, answering the errors it meets itself with an ``ErrorBody``.

    aiohttp parses the request line and headers before any middleware, and answers what it cannot
    parse with ``handle_error``: a ``text/plain`` body and an error-level traceback in the log.
    There is no public hook for that (aio-libs/aiohttp#3287), so this protocol overrides it. A
    malformed request is the client's mistake: one info line, no traceback. An exception that got
    past every middleware is ours: logged with its traceback, as the middleware logs our bugs.
    """

    __slots__ = ()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,  # noqa: ARG002 - aiohttp's text for its own body; ours is JSON
    ) -> web.StreamResponse:
        """The JSON answer to a request aiohttp could not parse or could not get a response for."""
        phrase = HTTPStatus(status).phrase
        if isinstance(exc, http_exceptions.HttpProcessingError):
            log.info(
                "http_request_malformed",
                remote=request.remote,
                status=status,
                error=type(exc).__name__,
            )
            body = ErrorBody(error=_code(phrase), message=_malformed(exc), field=None)
        elif exc is not None:
            log.error(
                "request_failed",
                method=request.method,
                path=request.path,
                status=status,
                exc_info=exc,
            )
            body = ErrorBody(
                error="internal_error", message="internal error; see the daemon's log", field=None
            )
        else:  # the handler timed out (504)
            log.warning("request_failed", method=request.method, path=request.path, status=status)
            body = ErrorBody(error=_code(phrase), message=phrase, field=None)
        if request.writer.output_size > 0:  # as aiohttp's own: too late for another response
            raise ConnectionError("the response was already being sent; cannot send an error")
        response = web.Response(
            status=status, text=body.model_dump_json(by_alias=True), content_type=JSON
        )
        response.force_close()
        return response

    def log_exception(self, *args: object, **kw: object) -> None:
        """Log as aiohttp does, except a body it cannot drain: that is the client's mistake.

        After the answer aiohttp reads what is left of the body; a body that cannot be decoded
        fails there again, and the middleware has already said so in one line.
        """
        if isinstance(kw.get("exc_info"), web.RequestPayloadError):
            log.debug("http_request_body_undrained")
            return
        super().log_exception(*args, **kw)


class _JsonErrorServer(web.Server):
    """aiohttp's ``Server`` (the protocol factory), making ``JsonErrorProtocol`` connections."""

    def __call__(self) -> web.RequestHandler:
        return JsonErrorProtocol(self, loop=self._loop, **self._kwargs)


class JsonErrorAppRunner(web.AppRunner):
    """An ``AppRunner`` whose connections answer aiohttp's own parse errors as JSON."""

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()  # starts the application, as AppRunner does
        return _JsonErrorServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            **plain._kwargs,  # noqa: SLF001 - the protocol's options (access log, limits) as given
        )
