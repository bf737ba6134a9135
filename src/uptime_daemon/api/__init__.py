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
    streams,
    uptime,
)
from uptime_daemon.api.access import CHECK_BUCKET, TokenBucket, access_middleware
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
            "description": "Prometheus text format, or OpenMetrics when the Accept header asks for it.",
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
                }
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
    return document


def create_web_app(
    *, registry: CollectorRegistry, live_health_interval_seconds: float = 10.0
) -> web.Application:
    """An application with every route and the JSON error middleware; keys are set by the caller."""
    app = web.Application(
        middlewares=[error_middleware, access_middleware], client_max_size=64 * 1024
    )
    app[CHECK_BUCKET] = TokenBucket(capacity=0)
    for api in _APIS:
        app.add_routes(api.routes)
    metrics_endpoint.setup(app, registry)
    live.setup(app, health_interval_seconds=live_health_interval_seconds)
    page.setup(app)
    docs.setup(app, openapi_document())
    return app
