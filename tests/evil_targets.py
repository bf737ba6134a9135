"""Misbehaving targets for the fault suite, run as a separate process: ``python -m tests.evil_targets PORT...``.

Ports, in order: hang (accepts, never answers), trickle (one byte every 0.2 s, forever), huge (claims
and streams a 1 GB body), garbage (answers junk instead of HTTP), ws (a WebSocket that hangs up
mid-script with 1011). A plain TCP port also serves as "bad TLS" when probed with https://.
"""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web


async def _hang(reader: asyncio.StreamReader, _writer: asyncio.StreamWriter) -> None:
    await reader.read(65536)
    await asyncio.Event().wait()


async def _garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(65536)
    writer.write(b"\x16\x03\x01 this is not HTTP at all \x00\xff\r\n\r\n")
    await writer.drain()
    writer.close()


async def _trickle(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    await response.prepare(request)
    while True:
        await response.write(b".")
        await asyncio.sleep(0.2)


async def _huge(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Length": str(1 << 30)})
    await response.prepare(request)
    chunk = b"\0" * (1 << 16)
    for _ in range((1 << 30) // len(chunk)):
        await response.write(chunk)
    return response


async def _ws(request: web.Request) -> web.WebSocketResponse:
    socket = web.WebSocketResponse()
    await socket.prepare(request)
    await socket.receive()
    await socket.close(code=1011, message=b"gone")
    return socket


async def main(ports: list[int]) -> None:
    hang, trickle, huge, garbage, ws = ports
    await asyncio.start_server(_hang, "127.0.0.1", hang)
    await asyncio.start_server(_garbage, "127.0.0.1", garbage)
    app = web.Application()
    app.router.add_get("/trickle", _trickle)
    app.router.add_get("/huge", _huge)
    app.router.add_get("/ws", _ws)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    for port in (trickle, huge, ws):
        await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)  # noqa: T201 - the test waits for this line
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main([int(p) for p in sys.argv[1:6]]))
