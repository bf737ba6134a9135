"""``GET /metrics``: the exposition is rendered and written in pieces, off the event loop.

The body is the registry (prometheus_client) followed by the text sources (``METRICS_SOURCES``),
which render the many per-service series from cached bytes (``exposition``): at 10,000 services a
scrape is ~14 MiB of lines already made. The body is never held whole: the metrics thread gathers
references to those lines (``exposition.exposition``), then joins them, and gzips them when the
scraper accepts it, ``exposition.CHUNK_BYTES`` at a time (``exposition.chunks``), each chunk
written as it is made. The work never holds the event loop: the loop keeps its turns at the
interpreter, every millisecond while the thread works (``interpreter.loop_first``), and a scrape
adds about a chunk to the daemon's memory, not two or three copies of the body. One thread:
concurrent scrapes queue, they never multiply the work.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Final

from aiohttp import hdrs, web
from prometheus_client.registry import CollectorRegistry

from uptime_daemon.api.endpoint import accepts_gzip
from uptime_daemon.exposition import TextSource, chunks, exposition
from uptime_daemon.interpreter import loop_first

METRICS_EXECUTOR: Final = web.AppKey("metrics_executor", ThreadPoolExecutor)
METRICS_REGISTRY: Final = web.AppKey("metrics_registry", CollectorRegistry)
METRICS_SOURCES: Final = web.AppKey("metrics_sources", list[TextSource])
"""Rendered after the registry; the composition root appends to it as the parts come up."""


async def metrics(request: web.Request) -> web.StreamResponse:
    """Prometheus text, or OpenMetrics when the scraper's ``Accept`` asks for it; gzip if accepted."""
    accept = ",".join(request.headers.getall(hdrs.ACCEPT, []))
    sources: list[TextSource] = request.app[METRICS_SOURCES]
    loop = asyncio.get_running_loop()
    executor = request.app[METRICS_EXECUTOR]
    pieces, content_type = await loop.run_in_executor(
        executor, _render, request.app[METRICS_REGISTRY], sources, accept
    )
    gzip = accepts_gzip(request.headers.get(hdrs.ACCEPT_ENCODING, ""))
    response = web.StreamResponse(
        headers={hdrs.CONTENT_TYPE: content_type, hdrs.VARY: hdrs.ACCEPT_ENCODING}
    )
    if gzip:
        response.headers[hdrs.CONTENT_ENCODING] = "gzip"
    else:
        response.content_length = sum(map(len, pieces))
    await response.prepare(request)
    if request.method != hdrs.METH_HEAD:
        body: Iterator[bytes] = chunks(pieces, gzip=gzip)
        while (chunk := await loop.run_in_executor(executor, _next_chunk, body)) is not None:
            await response.write(chunk)
    await response.write_eof()
    return response


# In the metrics thread, the event loop first at the interpreter while the thread works.
_render = loop_first()(exposition)


@loop_first()
def _next_chunk(body: Iterator[bytes]) -> bytes | None:
    return next(body, None)


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
