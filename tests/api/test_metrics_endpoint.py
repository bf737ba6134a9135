"""``GET /metrics`` written in chunks: the same body plain or gzipped, and HEAD.

``Accept-Encoding`` is read by ``api.endpoint.accepts_gzip``, tested with the summary's ETag.
"""

from __future__ import annotations

import gzip
import random
import zlib

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from tests.api.helpers import Client, fetch_json
from uptime_daemon.exposition import chunks


@given(
    pieces=st.lists(st.binary(max_size=300), max_size=60),
    size=st.integers(min_value=1, max_value=2000),
    compress=st.booleans(),
)
def test_chunks_put_together_are_the_body(pieces: list[bytes], size: int, compress: bool) -> None:
    """Joined (and gunzipped) the chunks are the pieces joined; none is empty, none much over size."""
    out = list(chunks(pieces, gzip=compress, size=size))
    assert all(out)
    body = b"".join(out)
    if compress:
        body = gzip.decompress(body)
    assert body == b"".join(pieces)
    if not compress:
        assert all(len(chunk) < size + 300 for chunk in out)


def test_a_large_body_is_written_in_many_chunks_each_gzip_member_valid() -> None:
    """14 MiB-like text: bounded chunks, and a gzip stream any reader takes (zlib, gzip)."""
    rng = random.Random(5)
    lines = [
        f'uptime_service_up{{service="svc-{i:05d}"}} {rng.random()}\n'.encode()
        for i in range(40_000)
    ]
    plain = list(chunks(lines, gzip=False, size=64 * 1024))
    assert len(plain) > 20
    assert max(map(len, plain)) < 64 * 1024 + 100
    packed = b"".join(chunks(lines, gzip=True, size=64 * 1024))
    assert zlib.decompress(packed, 16 + zlib.MAX_WBITS) == b"".join(lines)
    assert len(packed) < len(b"".join(lines)) / 2


async def test_metrics_plain_gzipped_and_head(client: Client) -> None:
    """Plain with a length, gzip when asked (the same families), HEAD with no body."""
    await fetch_json(client, "/uptime/check?service=web", method="POST")
    async with client.get("/metrics", headers={"Accept-Encoding": "identity"}) as response:
        assert response.status == 200
        assert "Content-Encoding" not in response.headers
        plain = await response.read()
        assert int(response.headers["Content-Length"]) == len(plain)
    async with client.get(
        "/metrics", headers={"Accept-Encoding": "gzip"}, auto_decompress=False
    ) as response:
        assert response.status == 200
        assert response.headers["Content-Encoding"] == "gzip"
        assert "Accept-Encoding" in response.headers["Vary"]
        packed = await response.read()
    text = gzip.decompress(packed).decode()

    def families(body: str) -> set[str]:
        return {family.name for family in text_string_to_metric_families(body)}

    assert families(text) == families(plain.decode())
    assert 'uptime_service_up{service="web"} 1.0' in text
    async with client.head("/metrics") as response:
        assert response.status == 200
        assert await response.read() == b""
