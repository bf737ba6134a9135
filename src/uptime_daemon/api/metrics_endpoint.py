"""``GET /metrics``: the exposition is rendered off the event loop, in one dedicated thread.

The body is the registry (prometheus_client) followed by the text sources (``METRICS_SOURCES``),
which render the many per-service series from cached bytes (``exposition``): at 10,000 services a
scrape is a few megabytes joined, not seconds of formatting. It still runs in a thread, so what
work there is never holds the event loop: the loop keeps its turns at the GIL (every 5 ms). One
thread: concurrent scrapes queue, they never multiply the work.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Final

from aiohttp import hdrs, web
from prometheus_client.registry import CollectorRegistry

from uptime_daemon.exposition import TextSource, exposition

METRICS_EXECUTOR: Final = web.AppKey("metrics_executor", ThreadPoolExecutor)
METRICS_REGISTRY: Final = web.AppKey("metrics_registry", CollectorRegistry)
METRICS_SOURCES: Final = web.AppKey("metrics_sources", list[TextSource])
"""Rendered after the registry; the composition root appends to it as the parts come up."""


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text, or OpenMetrics when the scraper's ``Accept`` asks for it."""
    accept = ",".join(request.headers.getall(hdrs.ACCEPT, []))
    sources: list[TextSource] = request.app[METRICS_SOURCES]
    body, content_type = await asyncio.get_running_loop().run_in_executor(
        request.app[METRICS_EXECUTOR], exposition, request.app[METRICS_REGISTRY], sources, accept
    )
    response = web.Response(body=body, headers={hdrs.CONTENT_TYPE: content_type})
    response.enable_compression()  # when the scraper accepts it; aiohttp compresses bodies over 4 KiB in an executor
    return response


async def _executor_ctx(app: web.Application) -> AsyncIterator[None]:
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="metrics")
    app[METRICS_EXECUTOR] = executor
    yield
    executor.shutdown(wait=True, cancel_futures=True)


def setup(app: web.Application, registry: CollectorRegistry) -> None:
    """Serve ``registry`` at ``/metrics``, and the sources appended to ``app[METRICS_SOURCES]``."""
    app[METRICS_REGISTRY] = registry
    app[METRICS_SOURCES] = []
    app.cleanup_ctx.append(_executor_ctx)
    app.router.add_get("/metrics", metrics)
