"""Every error leaves the API as JSON naming what was wrong; nothing escapes as a traceback."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_error(status: int, error: str, message: str, **fields: object) -> web.Response:
    """A JSON error body: ``{"error": code, "message": text, ...fields}``."""
    return web.json_response({"error": error, "message": message, **fields}, status=status)


class BadRequest(web.HTTPBadRequest):
    """A 400 whose JSON body names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        """Build the JSON body once."""
        super().__init__(
            text=web.json_response(
                {"error": "bad_request", "field": field, "message": message}
            ).text,
            content_type="application/json",
        )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn aiohttp's HTML errors and our bugs into JSON; log the bugs with their traceback."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.content_type == "application/json" or exc.status < 400:  # noqa: PLR2004
            raise
        response = json_error(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)
        for header in (
            "Allow",
            "WWW-Authenticate",
            "Retry-After",
        ):  # RFC 9110: a 405 lists what is allowed
            if header in exc.headers:
                response.headers[header] = exc.headers[header]
        return response
    except Exception:
        log.exception("request_failed", method=request.method, path=request.path)
        return json_error(500, "internal_error", "internal error; see the daemon's log")
