"""The HTTP interface: JSON API, OpenAPI + Swagger UI, live feed.

It reads only configuration, the projection and the store's read side; checks on demand and
component health come in as callables set by the composition root.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from uptime_daemon import __version__
from uptime_daemon.api import (
    docs,
    health,
    live,
    maintenance,
    metrics_endpoint,
    page,
    socketio_feed,
    streams,
    uptime,
)
from uptime_daemon.api.access import CHECK_BUCKET, TokenBucket, access_middleware
from uptime_daemon.api.cors import OPENAPI_NOTE, cors_middleware
from uptime_daemon.api.endpoint import Endpoint, openapi
from uptime_daemon.api.errors import error_middleware

__all__ = ["create_web_app", "openapi_document"]

_APIS = (health.api, uptime.api, maintenance.api, streams.api, page.api)


def endpoints() -> list[Endpoint]:
    """Every declared JSON endpoint."""
    return [endpoint for api in _APIS for endpoint in api.endpoints]


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document of this build."""
    document = openapi(endpoints(), title="uptime-daemon", version=__version__)
    document["info"]["description"] = OPENAPI_NOTE
    document["paths"]["/"] = {
        "get": {
            "summary": "Status page (HTML; its data is /status/data, live over /ws/health)",
            "tags": ["status page"],
            "operationId": "get_status_page",
            "responses": {
                "200": {
                    "description": "OK",
                    "content": {"text/html": {"schema": {"type": "string"}}},
                }
            },
        }
    }
    document["paths"]["/metrics"] = {
        "get": {
            "summary": "Prometheus metrics",
            "tags": ["metrics"],
            "operationId": "get_metrics",
            "description": (
                "Prometheus text format, or OpenMetrics when the Accept header asks for it; "
                "gzip-compressed when Accept-Encoding accepts gzip (Content-Encoding: gzip)."
            ),
            "responses": {
                "200": {
                    "description": "OK",
                    "content": {
                        "text/plain": {"schema": {"type": "string"}},
                        "application/openmetrics-text": {"schema": {"type": "string"}},
                    },
                }
            },
        }
    }
    document["paths"]["/ws/health"] = {
        "get": {
            "summary": "Live feed (WebSocket upgrade)",
            "tags": ["live"],
            "operationId": "get_ws_health",
            "description": live.__doc__,
            "parameters": [
                {
                    "name": "from",
                    "in": "query",
                    "required": False,
                    "description": "Resume after this commit position.",
                    "schema": {"type": "integer", "minimum": 0},
                },
                {
                    "name": "services",
                    "in": "query",
                    "required": False,
                    "description": "false: health_status without the per-service list.",
                    "schema": {"type": "boolean", "default": True},
                },
            ],
            "responses": {
                "101": {"description": "Switching protocols"},
                "400": {
                    "description": "Not a WebSocket upgrade, or a bad ?from=",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}
                    },
                },
            },
        }
    }
    document["paths"][socketio_feed.PATH] = _socketio_path()
    return document


def _socketio_path() -> dict[str, Any]:
    """The socket.io feed's HTTP side: the engine.io handshake and long polling.

    The upgrade to a WebSocket and the packets themselves are socket.io's protocol, told in words.
    """
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    text = {"text/plain": {"schema": {"type": "string"}}}

    def query(
        name: str, description: str, *, required: bool = True, **schema: object
    ) -> dict[str, Any]:
        return {
            "name": name,
            "in": "query",
            "required": required,
            "description": description,
            "schema": {"type": "string", **schema},
        }

    version = query(
        "EIO", "engine.io protocol version (socket.io 3 and later speak 4).", enum=["4"]
    )
    transport = query(
        "transport", "Long polling; the client upgrades to `websocket` itself.", enum=["polling"]
    )
    session = "The session the handshake opened (its `sid`)."
    errors = {
        "400": {"description": "Not engine.io 4, or an origin not allowed", "content": error},
        "401": {"description": "Missing or wrong bearer token", "content": error},
        "404": {"description": "No such session (closed, or never opened)", "content": error},
    }
    operation = {"tags": ["live"], "security": [{}, {"bearer": []}]}
    return {
        "get": operation
        | {
            "summary": f"Live feed over socket.io (namespace {socketio_feed.NAMESPACE})",
            "operationId": "get_socket_io",
            "description": socketio_feed.__doc__,
            "parameters": [version, transport, query("sid", session, required=False)],
            "responses": {
                "200": {
                    "description": 'Without `sid`: the open packet (`0{"sid": …}`); with it, '
                    "the packets queued for the client",
                    "content": text,
                },
                **errors,
            },
        },
        "post": operation
        | {
            "summary": "socket.io: packets from the client (long polling)",
            "operationId": "post_socket_io",
            "parameters": [version, transport, query("sid", session)],
            "requestBody": {"required": True, "content": text},
            "responses": {"200": {"description": "`ok`", "content": text}, **errors},
        },
    }


def create_web_app(
    *, registry: CollectorRegistry, live_health_interval_seconds: float = 10.0
) -> web.Application:
    """An application with every route and the JSON error middleware; keys are set by the caller."""
    app = web.Application(
        # CORS outermost: its headers reach every error, and a preflight never meets the access check.
        middlewares=[cors_middleware, error_middleware, access_middleware],
        client_max_size=64 * 1024,
    )
    app[CHECK_BUCKET] = TokenBucket(capacity=0)
    for api in _APIS:
        app.add_routes(api.routes)
    metrics_endpoint.setup(app, registry)
    live.setup(app, health_interval_seconds=live_health_interval_seconds)
    socketio_feed.setup(app)
    page.setup(app)
    docs.setup(app, openapi_document())
    return app
