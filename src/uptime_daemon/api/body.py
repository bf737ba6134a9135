"""Send a large body that is kept ready (``/uptime/summary``) without copying it per answer.

aiohttp's ``Response`` joins the head and the whole body into one new ``bytes`` before it writes
them (``http_writer``: ``writelines`` is off before Python 3.12.9). For the summary of 1,000
services that is a 1.26 MB copy per answer, and a block that size is one glibc maps and unmaps on
its own (``malloc.map_large``): the kernel faults it in page by page, 500 times a second at
500 answers/s. ``send_body`` writes the head with the body's first ``HEAD_BYTES`` (one small join)
and hands the rest to the transport as a view of the kept body, which uvloop sends from where it
is. Smaller bodies go out as a plain ``Response``.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web
from aiohttp.typedefs import LooseHeaders

from uptime_daemon.api.cors import add_cors_headers

HEAD_BYTES: Final = 64 * 1024
"""The part of a larger body written with the head: under any mmap threshold glibc uses."""


async def send_body(
    request: web.Request, body: bytes, *, headers: LooseHeaders, content_type: str
) -> web.StreamResponse:
    """Answer ``request`` with ``body``: as it is, never joined whole with the head."""
    if len(body) <= HEAD_BYTES:
        return web.Response(body=body, headers=headers, content_type=content_type)
    response = web.StreamResponse(headers=headers)
    response.content_type = content_type
    response.content_length = len(body)
    add_cors_headers(response, request)  # prepared here: the middleware cannot add them after
    await response.prepare(request)
    view = memoryview(body)
    await response.write(view[:HEAD_BYTES])
    await response.write(view[HEAD_BYTES:])
    await response.write_eof()
    return response
