"""The ``/metrics`` body: prometheus_client's registry, then families rendered from cached bytes.

prometheus_client builds a ``Sample`` for every line and formats it again on every scrape, about
10 µs a line here: fine for the daemon's few dozen own series, seconds a scrape for the tens of
series each of 10,000 services has. Those come from sources (``metrics.ServiceSeries``,
``projector.collector.ProjectionCollector``) that keep each service's lines of each family as bytes,
rewrite them only when the service changed, and hand them over as ``Block`` s: a scrape of them is a
list of references to those bytes, never joined into one body (``pieces``, then ``chunks`` as the
endpoint writes them), so a 14 MiB scrape costs no 14 MiB copy. The lines are what prometheus_client writes for the same samples (labels sorted by name,
values by ``floatToGoString``), in Prometheus text or OpenMetrics, so the two halves make one valid
body in either format.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Protocol

from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry
from prometheus_client.utils import floatToGoString

OPENMETRICS_TYPE: Final = "application/openmetrics-text"
EOF: Final = b"# EOF\n"

Block = Sequence[bytes]
"""One service's lines, one ``bytes`` per family of its source (empty when it has none there)."""


class FamilyType(StrEnum):
    """The metric types these sources write."""

    COUNTER = "counter"
    GAUGE = "gauge"
    SUMMARY = "summary"
    HISTOGRAM = "histogram"


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family: its name (OpenMetrics': no ``_total``), type and help."""

    name: str
    type: FamilyType
    help: str

    @property
    def sample(self) -> str:
        """The name its samples carry (a counter's ends in ``_total``)."""
        return f"{self.name}_total" if self.type is FamilyType.COUNTER else self.name

    def header(self, *, openmetrics: bool) -> bytes:
        """``# HELP`` and ``# TYPE``; Prometheus text names a counter family by its samples' name."""
        name = self.name if openmetrics else self.sample
        text = self.help.replace("\\", r"\\").replace("\n", r"\n")
        if openmetrics:
            text = text.replace('"', r"\"")
        return f"# HELP {name} {text}\n# TYPE {name} {self.type.value}\n".encode()


def escape(value: str) -> str:
    """A label value as both formats quote it."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def series(name: str, **labels: str) -> str:
    """``name{a="…",b="…"} `` (labels sorted, as prometheus_client writes them): a line's prefix."""
    inner = ",".join(f'{key}="{escape(labels[key])}"' for key in sorted(labels))
    return f"{name}{{{inner}}} " if inner else f"{name} "


_HOLE: Final = "\x00"
"""Where a template's service goes (``escape`` leaves it as it is; a name never holds it)."""


@dataclass(frozen=True, slots=True)
class Template:
    """A series' line prefix with the service's name left out, to be filled in (``line``).

    ``template(name, **labels).line(escape(service), value)`` is ``series(name, service=service,
    **labels)`` followed by ``value`` and a line break. Each of 10,000 services has about twenty
    series; their prefixes kept as strings were ~25 MiB of a daemon's heap (``tracemalloc``,
    ``bench/scale.py``). A service keeps its escaped name once, and its lines are made from the
    templates, which are shared.
    """

    head: str
    tail: str

    def line(self, escaped: str, value: str) -> str:
        """The line of the service whose name ``escape`` gave ``escaped``, with ``value``.

        ``value`` is ``number``'s text; the line's prefix is never kept.
        """
        return f"{self.head}{escaped}{self.tail}{value}\n"


@functools.lru_cache(maxsize=4096)
def template(name: str, **labels: str) -> Template:
    """The ``Template`` of ``name``'s series with ``labels`` besides ``service`` (made once each)."""
    head, tail = series(name, service=_HOLE, **labels).split(_HOLE)
    return Template(head, tail)


_COMMON: Final = {0.0: "0.0", 1.0: "1.0"}
"""Most of a scrape's values (state sets, ratios of healthy services, flags): no formatting."""


def number(value: float) -> str:
    """A sample value as prometheus_client writes it (``1.0``, ``NaN``, ``+Inf``)."""
    common = _COMMON.get(value)
    if common is not None:
        return common
    return str(floatToGoString(value))  # type: ignore[no-untyped-call]  # prometheus-client leaves it unannotated


CHUNK_BYTES: Final = 256 * 1024
"""What the endpoint writes at a time: one body is never held whole, joined or compressed."""
GZIP_LEVEL: Final = 1
"""Scrape text is so repetitive that level 1 already shrinks it ~10 ×, at a third of level 6's CPU."""


def render(
    families: Sequence[Family], blocks: Iterable[Block], *, openmetrics: bool
) -> list[bytes]:
    """Each family's header, then every block's lines of that family: the body's pieces, in order."""
    blocks = list(blocks)
    pieces: list[bytes] = []
    for index, family in enumerate(families):
        pieces.append(family.header(openmetrics=openmetrics))
        pieces.extend(block[index] for block in blocks)
    return pieces


class TextSource(Protocol):
    """Families rendered without prometheus_client; their names must not be in the registry."""

    def pieces(self, *, openmetrics: bool) -> list[bytes]:
        """The source's families, complete (headers and lines), in the asked format, in pieces."""
        ...


def exposition(
    registry: CollectorRegistry, sources: Iterable[TextSource], accept: str
) -> tuple[list[bytes], str]:
    """The whole body for an ``Accept`` header in pieces, and its content type.

    The registry first, then the sources. OpenMetrics ends with ``# EOF``; prometheus_client
    writes it after the registry, so the sources go before it.
    """
    encoder, content_type = choose_encoder(accept)
    openmetrics = content_type.startswith(OPENMETRICS_TYPE)
    head = encoder(registry)
    pieces = [head.removesuffix(EOF) if openmetrics else head]
    for source in sources:
        pieces.extend(source.pieces(openmetrics=openmetrics))
    if openmetrics:
        pieces.append(EOF)
    return pieces, content_type


def chunks(pieces: Iterable[bytes], *, gzip: bool, size: int = CHUNK_BYTES) -> Iterator[bytes]:
    """The pieces joined into chunks of about ``size`` bytes, gzip-compressed as they go if asked.

    Concatenated, the chunks are the body (or its gzip member, ``GZIP_LEVEL``). Never yields an
    empty chunk: an empty write would end a chunked response early.
    """
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS) if gzip else None
    batch: list[bytes] = []
    held = 0
    for piece in pieces:
        batch.append(piece)
        held += len(piece)
        if held >= size:
            chunk = b"".join(batch)
            batch.clear()
            held = 0
            if compressor is not None:
                chunk = compressor.compress(chunk)
            if chunk:
                yield chunk
    chunk = b"".join(batch)
    if compressor is not None:
        chunk = compressor.compress(chunk) + compressor.flush()
    if chunk:
        yield chunk
