"""Declare an endpoint once; get query validation, JSON serialization and its OpenAPI entry from it.

``@api.get("/uptime/summary", query=WindowQuery, response=UptimeSummary)`` registers the route with
aiohttp, validates ``request.query`` into ``WindowQuery`` (a 400 naming the field when it does not
fit), serializes the returned model, and records everything ``openapi()`` needs. The document is
therefore generated from the very models the handlers use.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema

from uptime_daemon.api.models import ErrorBody

JSON: Final = "application/json"
_PATH_PARAM: Final = re.compile(r"{(\w+)}")
SEED_PREFIX: Final = "/api"
"""The seeds' paths are ours under ``/api`` (``/api/uptime/summary``): the same handlers."""
SEED_ALIASED: Final = ("/uptime", "/health", "/streams")


def canonical(path: str) -> str:
    """The path without the seeds' ``/api`` prefix, for the rules that match paths."""
    if path.startswith(SEED_PREFIX + "/") and path[len(SEED_PREFIX) :].startswith(SEED_ALIASED):
        return path[len(SEED_PREFIX) :]
    return path


Q = TypeVar("Q", bound=BaseModel)

Handler = Callable[[web.Request, Any], Awaitable[BaseModel | web.StreamResponse]]


E = TypeVar("E", bound=web.HTTPError)


def json_error_exception(
    kind: type[E], error: str, message: str, field_name: str | None = None
) -> E:
    """An aiohttp HTTP error to raise, with the documented JSON body (``ErrorBody``)."""
    body = ErrorBody(error=error, message=message, field=field_name)
    return kind(text=body.model_dump_json(by_alias=True), content_type=JSON)


def bad_request(field_name: str | None, message: str) -> web.HTTPBadRequest:
    """A 400 whose JSON body names the offending field."""
    return json_error_exception(web.HTTPBadRequest, "bad_request", message, field_name)


def not_found(error: str, message: str, field_name: str | None = None) -> web.HTTPNotFound:
    """A 404 with a JSON body."""
    return json_error_exception(web.HTTPNotFound, error, message, field_name)


def json_response(model: BaseModel, status: int = 200) -> web.Response:
    """Serialize with aliases (camelCase), as the OpenAPI document says."""
    return web.Response(body=model.model_dump_json(by_alias=True), status=status, content_type=JSON)


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether ``Accept-Encoding`` allows gzip: named (or ``*``) with a quality above 0."""
    qualities: dict[str, float] = {}
    for item in accept_encoding.lower().split(","):
        coding, *params = (part.strip() for part in item.split(";"))
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        qualities[coding] = quality
    for coding in ("gzip", "x-gzip", "*"):
        if coding in qualities:
            return qualities[coding] > 0
    return False


@dataclass(frozen=True, slots=True)
class Endpoint:
    """What the OpenAPI document says about one operation."""

    method: str
    path: str
    summary: str
    tag: str
    query: type[BaseModel] | None
    response: type[BaseModel] | None
    content_type: str = JSON
    body: type[BaseModel] | None = None
    status: int = 200
    """The success status (201 for an endpoint that creates something)."""
    errors: tuple[int, ...] = ()
    description: str = ""
    seed_path: str | None = None
    """The seeds' spelling (under ``/api``), when it has one."""
    conditional: bool = False
    """Answers carry an ``ETag``; ``If-None-Match`` naming it gets a 304 (and gzip when accepted)."""


@dataclass(slots=True)
class Api:
    """A route table that remembers its endpoints."""

    routes: web.RouteTableDef = field(default_factory=web.RouteTableDef)
    endpoints: list[Endpoint] = field(default_factory=list)

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        tag: str,
        response: type[BaseModel] | None,
        query: type[BaseModel] | None = None,
        body: type[BaseModel] | None = None,
        status: int = 200,
        errors: tuple[int, ...] = (),
        content_type: str = JSON,
        description: str = "",
        seed_path: str | None = None,
        conditional: bool = False,
    ) -> Callable[[Handler], Handler]:
        """Register ``handler(request, query)`` for ``method path``.

        An endpoint that takes a JSON ``body`` instead of a query gets ``handler(request, body)``.
        Under ``/uptime``, ``/health`` and ``/streams`` the same handler also answers at ``/api`` +
        ``seed_path`` (default: ``path``), the seeds' spelling. A ``conditional`` handler sets
        ``ETag`` itself and answers ``If-None-Match`` (the document says so).
        """
        if query is not None and body is not None:
            raise ValueError("an endpoint takes a query or a body, not both")

        def decorate(handler: Handler) -> Handler:
            async def wrapped(request: web.Request) -> web.StreamResponse:
                if body is not None:
                    parsed: BaseModel | None = await _parse_body(body, request)
                else:
                    parsed = _parse_query(query, request) if query is not None else None
                result = await handler(request, parsed)
                if isinstance(result, web.StreamResponse):
                    return result
                return json_response(result, status)

            self.routes.route(method, path)(wrapped)
            seed = SEED_PREFIX + (seed_path or path) if path.startswith(SEED_ALIASED) else None
            if seed is not None:
                self.routes.route(method, seed)(wrapped)
            every_error = errors if query is None and body is None else (*errors, 400)
            self.endpoints.append(
                Endpoint(
                    method=method.lower(),
                    path=path,
                    summary=summary,
                    tag=tag,
                    query=query,
                    response=response,
                    content_type=content_type,
                    body=body,
                    status=status,
                    errors=tuple(sorted(set(every_error))),
                    description=description or (handler.__doc__ or "").strip(),
                    seed_path=seed,
                    conditional=conditional,
                )
            )
            return handler

        return decorate


def _parse_query(model: type[Q], request: web.Request) -> Q:
    raw: dict[str, str] = {}
    for key in request.query:
        values = request.query.getall(key)
        if len(values) > 1:
            raise bad_request(key, "given more than once")
        raw[key] = values[0]
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        name = str(first["loc"][0]) if first["loc"] else None
        message = "unknown query parameter" if first["type"] == "extra_forbidden" else first["msg"]
        raise bad_request(name, message) from None


async def _parse_body(model: type[Q], request: web.Request) -> Q:
    """The JSON body as ``model``: a 400 naming the field when it does not fit (an empty body is ``{}``)."""
    raw = await request.read()
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        name = ".".join(str(part) for part in first["loc"]) or None
        kind = first["type"]
        message = "unknown field" if kind == "extra_forbidden" else first["msg"]
        if kind == "json_invalid":
            name, message = None, "the body is not valid JSON"
        raise bad_request(name, message) from None


def openapi(endpoints: list[Endpoint], *, title: str, version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document for ``endpoints``."""
    models: set[type[BaseModel]] = {ErrorBody}
    for endpoint in endpoints:
        if endpoint.response is not None:
            models.add(endpoint.response)
    keyed: list[tuple[type[BaseModel], Literal["serialization", "validation"]]] = [
        (model, "serialization") for model in sorted(models, key=lambda m: m.__name__)
    ]
    bodies = sorted({e.body for e in endpoints if e.body is not None}, key=lambda m: m.__name__)
    keyed += [(model, "validation") for model in bodies]
    refs, schemas = models_json_schema(
        keyed, ref_template="#/components/schemas/{model}", by_alias=True
    )
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        paths.setdefault(endpoint.path, {})[endpoint.method] = _operation(endpoint, refs)
    for endpoint in endpoints:  # the seeds' spelling of the same operations, after ours
        if endpoint.seed_path is not None:
            operation = _operation(endpoint, refs)
            operation["operationId"] += "_seed"
            operation["description"] = (
                f"The seeds' path for `{endpoint.path}`: the same operation and answer."
            )
            paths.setdefault(endpoint.seed_path, {})[endpoint.method] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "read or operator token",
                },
                "metricsBasic": {"type": "http", "scheme": "basic"},
            },
        },
    }


def _operation(endpoint: Endpoint, refs: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": endpoint.summary,
        "tags": [endpoint.tag],
        "operationId": f"{endpoint.method}_{re.sub(r'[^a-zA-Z0-9]+', '_', endpoint.path).strip('_')}",
        "parameters": _parameters(endpoint),
        "responses": {},
    }
    if endpoint.description:
        operation["description"] = endpoint.description
    if endpoint.body is not None:
        schema = refs[(endpoint.body, "validation")]
        operation["requestBody"] = {"required": True, "content": {JSON: {"schema": schema}}}
    ok: dict[str, Any] = {"description": "Created" if endpoint.status == 201 else "OK"}  # noqa: PLR2004
    if endpoint.response is not None:
        ok["content"] = {JSON: {"schema": refs[(endpoint.response, "serialization")]}}
    elif endpoint.content_type != JSON:
        ok["content"] = {endpoint.content_type: {"schema": {"type": "string"}}}
    operation["responses"][str(endpoint.status)] = ok
    if endpoint.conditional:
        _conditional(operation)
    error_ref = refs[(ErrorBody, "serialization")]
    errors = set(endpoint.errors)
    if endpoint.path not in {"/health", "/health/ready"}:
        errors.add(401)  # any read endpoint can be protected (server.auth.protect_reads)
        operation["security"] = [{}, {"bearer": []}]
    if endpoint.method in ("post", "delete"):
        errors |= {403, 429}
    if endpoint.body is not None:
        errors.add(413)  # the body is read up to client_max_size (64 KiB)
    for status in sorted(errors):
        operation["responses"][str(status)] = {
            "description": _ERROR_TEXT.get(status, "Error"),
            "content": {JSON: {"schema": error_ref}},
        }
    return operation


def _conditional(operation: dict[str, Any]) -> None:
    """``If-None-Match`` in, ``ETag`` (and the coding) out, and the 304."""
    operation["parameters"].append(
        {
            "name": "If-None-Match",
            "in": "header",
            "required": False,
            "description": "An `ETag` this answer gave: 304, no body, while the answer is the same.",
            "schema": {"type": "string"},
        }
    )
    etag = {
        "description": "Strong validator of the body (gzipped: its own, ending `-gzip`)",
        "schema": {"type": "string"},
    }
    ok = operation["responses"]["200"]
    ok["headers"] = {
        "ETag": etag,
        "Content-Encoding": {
            "description": "`gzip` when the request's `Accept-Encoding` allows it",
            "schema": {"type": "string", "enum": ["gzip"]},
        },
    }
    operation["responses"]["304"] = {
        "description": "Not modified: `If-None-Match` names the current answer",
        "headers": {"ETag": etag},
    }


_ERROR_TEXT: Final = {
    400: "Bad request: the body names the field",
    401: "Missing or wrong bearer token",
    403: "Token lacks the role",
    404: "Unknown service or stream",
    409: "Conflicts with the current state (the body says why)",
    413: "Body larger than 64 KiB",
    429: "Rate limited; Retry-After says when to try again",
    503: "Not ready",
}


def _parameters(endpoint: Endpoint) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PATH_PARAM.findall(endpoint.path)
    ]
    if endpoint.query is not None:
        schema = endpoint.query.model_json_schema(by_alias=True)
        required = set(schema.get("required", []))
        for name, prop in schema.get("properties", {}).items():
            entry = {key: value for key, value in prop.items() if key != "title"}
            param: dict[str, Any] = {
                "name": name,
                "in": "query",
                "required": name in required,
                "schema": entry,
            }
            if "description" in entry:
                param["description"] = entry.pop("description")
            params.append(param)
    return params
