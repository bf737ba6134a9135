"""What an HTTP answer means, whichever client fetched it: the request's headers, status, body checks.

Both HTTP clients (aiohttp's in ``http.py``, the lean one in ``http_lean.py``) send the same headers
and judge the same way, so a service's verdict never depends on which of them ran its check.
"""

from __future__ import annotations

import base64
from typing import Final

import orjson

from uptime_daemon.config.model import HttpService
from uptime_daemon.results import FailureReason

DETAIL_CHARS: Final = 200
NO_BODY_STATUSES: Final = frozenset({204, 304})
"""Answers that have no body whatever their headers say; nothing is read after their headers."""
_MISSING: Final = object()


def _lookup(document: object, path: str) -> object:
    current = document
    for part in path.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return _MISSING
    return current


def json_equal(actual: object, expected: object) -> bool:
    """JSON equality: like ``==``, except that ``true`` is not ``1`` (Python's bool is an int)."""
    if isinstance(actual, bool) or isinstance(expected, bool):
        return type(actual) is type(expected) and actual == expected
    if isinstance(actual, dict) and isinstance(expected, dict):
        return actual.keys() == expected.keys() and all(
            json_equal(actual[key], expected[key]) for key in expected
        )
    if isinstance(actual, list) and isinstance(expected, list | tuple):
        return len(actual) == len(expected) and all(map(json_equal, actual, expected))
    return actual == expected


def check_body(service: HttpService, body: bytes) -> str | None:
    """The first failed body assertion, described; ``None`` when all hold."""
    if service.body_contains is not None and service.body_contains.encode() not in body:
        return f"body does not contain {service.body_contains!r}"[:DETAIL_CHARS]
    if not service.json_assertions:
        return None
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "body is not JSON"
    for assertion in service.json_assertions:
        value = _lookup(document, assertion.path)
        if value is _MISSING:
            return f"json {assertion.path}: missing"[:DETAIL_CHARS]
        if not json_equal(value, assertion.equals):
            return f"json {assertion.path}: expected {assertion.equals!r}, got {value!r}"[
                :DETAIL_CHARS
            ]
    return None


def keeps_body(service: HttpService) -> bool:
    """Whether an assertion needs the body itself (otherwise it is only counted against the cap)."""
    return service.body_contains is not None or bool(service.json_assertions)


def request_headers(service: HttpService) -> dict[str, str]:
    """The configured headers plus the credentials, as both clients send them."""
    headers = dict(service.headers)
    if service.bearer_token is not None:
        headers["Authorization"] = f"Bearer {service.bearer_token.get_secret_value()}"
    elif service.basic_auth is not None:
        raw = f"{service.basic_auth.username}:{service.basic_auth.password.get_secret_value()}"
        headers["Authorization"] = "Basic " + base64.b64encode(raw.encode()).decode()
    return headers


def judge_status(
    service: HttpService, status: int, reason: str | None
) -> tuple[FailureReason | None, str]:
    """``http_status`` with the line and what was expected, or ``None`` and the status line."""
    status_line = f"{status} {reason or ''}".strip()
    if not service.status_accepted(status):
        return (
            FailureReason.HTTP_STATUS,
            f"{status_line}, expected {', '.join(service.accepted_status)}",
        )
    return None, status_line


def body_too_large(service: HttpService, status_line: str) -> tuple[FailureReason, str]:
    """The verdict on a body past ``max_body_bytes``."""
    return (
        FailureReason.BODY_TOO_LARGE,
        f"{status_line}, body exceeds {service.max_body_bytes} bytes",
    )


def judge_body(
    service: HttpService, status_line: str, body: bytes
) -> tuple[FailureReason | None, str]:
    """The body assertions' verdict on a body within the cap."""
    problem = check_body(service, body)
    if problem is not None:
        return FailureReason.ASSERTION, problem
    return None, status_line
