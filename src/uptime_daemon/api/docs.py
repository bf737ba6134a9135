"""``/api/openapi.json`` and ``/api/docs``: the generated document and Swagger UI, served locally."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import orjson
import swagger_ui_bundle  # type: ignore[import-untyped]
from aiohttp import web

SWAGGER_DIR: Final = Path(swagger_ui_bundle.swagger_ui_path)
OPENAPI_DOCUMENT = web.AppKey("openapi_document", bytes)

_PAGE: Final = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>uptime-daemon API</title>
<link rel="stylesheet" href="/api/docs/static/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/api/docs/static/swagger-ui-bundle.js"></script>
<script src="/api/docs/static/init.js"></script>
</body></html>
"""
_INIT: Final = 'window.ui = SwaggerUIBundle({url: "/api/openapi.json", dom_id: "#swagger-ui"});\n'


async def openapi_json(request: web.Request) -> web.Response:
    """The OpenAPI document, generated once at start-up from the endpoint models."""
    return web.Response(body=request.app[OPENAPI_DOCUMENT], content_type="application/json")


async def docs_page(_request: web.Request) -> web.Response:
    """Swagger UI, with no external fetch."""
    return web.Response(text=_PAGE, content_type="text/html")


async def docs_init(_request: web.Request) -> web.Response:
    """Swagger UI's start-up script (a file, so a strict CSP could forbid inline scripts)."""
    return web.Response(text=_INIT, content_type="application/javascript")


def setup(app: web.Application, document: dict[str, Any]) -> None:
    """Serve ``document`` and the UI."""
    app[OPENAPI_DOCUMENT] = orjson.dumps(document)
    app.router.add_get("/api/openapi.json", openapi_json)
    app.router.add_get("/api/docs", docs_page)
    app.router.add_get("/api/docs/static/init.js", docs_init)
    app.router.add_static("/api/docs/static", SWAGGER_DIR, show_index=False)
