"""A lean keep-alive HTTP/1.1 GET client for load generators: bodies counted, never kept.

``bench/api.py``'s open loop at 500 requests/s of a 1.26 MB answer made aiohttp's client read
630 MB/s in Python: a core of its own on a two-core machine shared with the daemon it measures, so
the client's own lag was in the figures. This one reads into one preallocated buffer per
connection (``asyncio.BufferedProtocol``: no bytes object per chunk), parses only the head (status,
``Content-Length``, ``ETag``) and counts the body's bytes. Only what the daemon sends is handled:
a ``Content-Length`` body, or none for 1xx/204/304; anything else is an error.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Final, cast
from urllib.parse import urlsplit

READ_BYTES: Final = 1 << 18
HEAD_LIMIT: Final = 1 << 16


class HttpError(ConnectionError):
    """The server answered something this client does not read, or closed the connection."""


@dataclass(frozen=True, slots=True)
class Answer:
    """What a GET got: status, the body's length, the ``ETag`` (or "")."""

    status: int
    length: int
    etag: str


class _Connection(asyncio.BufferedProtocol):
    """One keep-alive connection, one request at a time."""

    def __init__(self) -> None:
        self._view = memoryview(bytearray(READ_BYTES))
        self._head = bytearray()
        self._remaining = -1  # the body's bytes still to come; -1 while the head is read
        self._answer: Answer | None = None
        self._waiter: asyncio.Future[Answer] | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)  # uvloop's is no subclass of it

    def get_buffer(self, sizehint: int) -> memoryview:  # noqa: ARG002 - the buffer is fixed
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        if self._waiter is None or self._waiter.done():
            self._fail(HttpError("bytes arrived with no request waiting"))
            return
        if self._remaining < 0:
            self._head += self._view[:nbytes]
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                if len(self._head) > HEAD_LIMIT:
                    self._fail(HttpError("response head too long"))
                return
            try:
                self._answer, length = _parse_head(bytes(self._head[:end]))
            except HttpError as error:
                self._fail(error)
                return
            self._remaining = length - (len(self._head) - end - 4)
        else:
            self._remaining -= nbytes
        if self._remaining == 0:
            assert self._answer is not None  # set with the head
            self._waiter.set_result(self._answer)
        elif self._remaining < 0:
            self._fail(HttpError("more bytes than the Content-Length"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._fail(HttpError(f"connection lost: {exc}"))

    def _fail(self, error: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(error)
        if self.transport is not None:
            self.transport.abort()

    async def get(self, request: bytes) -> Answer:
        if self.transport is None:
            raise HttpError("connection closed")
        self._head.clear()
        self._remaining = -1
        self._answer = None
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self._waiter


def _parse_head(head: bytes) -> tuple[Answer, int]:
    """The answer and its body's length from a response head (without the blank line)."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise HttpError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    status = int(parts[1])
    fields: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        fields[name.strip().lower()] = value.strip()
    etag = fields.get(b"etag", b"").decode("latin-1")
    if status in (204, 304) or 100 <= status < 200:
        return Answer(status, 0, etag), 0
    if b"content-length" not in fields:
        raise HttpError("a body without Content-Length (chunked bodies are not read)")
    length = int(fields[b"content-length"])
    return Answer(status, length, etag), length


class LeanGet:
    """GETs of one URL over at most ``connections`` keep-alive connections, each one at a time."""

    def __init__(self, url: str, *, connections: int) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"only http:// URLs: {url}")
        self._host, self._port = parts.hostname, parts.port or 80
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        self._request_line = f"GET {target or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\n".encode()
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(connections)

    async def get(self, headers: dict[str, str]) -> Answer:
        """One GET with ``headers``; ``HttpError``/``OSError`` when it fails."""
        request = self._request_line + b"".join(
            f"{name}: {value}\r\n".encode("latin-1") for name, value in headers.items()
        )
        async with self._slots:
            connection = self._idle.pop() if self._idle else await self._connect()
            try:
                answer = await connection.get(request + b"\r\n")
            except BaseException:  # a timeout's cancellation too: the connection's state is unknown
                if connection.transport is not None:
                    connection.transport.abort()
                raise
            self._idle.append(connection)
            return answer

    async def _connect(self) -> _Connection:
        _, protocol = await asyncio.get_running_loop().create_connection(
            _Connection, self._host, self._port
        )
        return protocol

    def close(self) -> None:
        """Close the idle connections."""
        for connection in self._idle:
            if connection.transport is not None:
                connection.transport.close()
        self._idle.clear()
