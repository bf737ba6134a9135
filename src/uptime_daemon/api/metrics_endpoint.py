"""``GET /metrics``: the exposition is rendered off the event loop, in one dedicated thread.

At 10,000 services the text is tens of megabytes and takes seconds of Python to build; on the event
loop that stalled every check and API call for as long (lateness p99 went from tens of ms to about a
second with a 15 s scrape interval). In a thread the loop keeps its turns at the GIL (every 5 ms),
so checks start on time while the scrape is slower. One thread: concurrent scrapes queue, they never
multiply the work.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Final

from aiohttp import hdrs, web
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry

METRICS_EXECUTOR: Final = web.AppKey("metrics_executor", ThreadPoolExecutor)
METRICS_REGISTRY: Final = web.AppKey("metrics_registry", CollectorRegistry)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text, or OpenMetrics when the scraper's ``Accept`` asks for it."""
    encoder, content_type = choose_encoder(",".join(request.headers.getall(hdrs.ACCEPT, [])))
    registry = request.app[METRICS_REGISTRY]
    body = await asyncio.get_running_loop().run_in_executor(
        request.app[METRICS_EXECUTOR], encoder, registry
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
    """Serve ``registry`` at ``/metrics``."""
    app[METRICS_REGISTRY] = registry
    app.cleanup_ctx.append(_executor_ctx)
    app.router.add_get("/metrics", metrics)
