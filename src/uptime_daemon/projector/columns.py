"""Arrays written one after the other as little-endian bytes, and read back with their lengths checked.

The packed hours (``hours``), the cold days' index and the packed periods and incidents
(``periods``) are each a few ``array`` columns; this is their one way to and from bytes.
"""

from __future__ import annotations

import struct
import sys
import zlib
from array import array
from collections.abc import Sequence
from typing import Any


def join(columns: Sequence[array[Any]]) -> bytes:
    """The columns' items, little-endian, one column after the other."""
    if sys.byteorder == "big":  # pragma: no cover - the format is little-endian everywhere
        columns = [column[:] for column in columns]
        for column in columns:
            column.byteswap()
    return b"".join(column.tobytes() for column in columns)


def read(raw: bytes, offset: int, columns: Sequence[tuple[array[Any], int]], what: str) -> None:
    """Fill each column with its count of items from ``raw`` at ``offset`` on, to its very end.

    ``ValueError`` naming ``what`` when ``raw`` is shorter or longer than the columns.
    """
    for column, items in columns:
        end = offset + items * column.itemsize
        if end > len(raw):
            raise ValueError(f"{what}: truncated")
        column.frombytes(raw[offset:end])
        if sys.byteorder == "big":  # pragma: no cover
            column.byteswap()
        offset = end
    if offset != len(raw):
        raise ValueError(f"{what}: trailing bytes")


def unzip(data: bytes, header: struct.Struct, what: str) -> tuple[bytes, tuple[Any, ...]]:
    """``data`` decompressed, and the header at its start (``ValueError`` naming ``what``)."""
    try:
        raw = zlib.decompress(data)
    except zlib.error as exc:
        raise ValueError(f"{what}: {exc}") from exc
    if len(raw) < header.size:
        raise ValueError(f"{what}: truncated")
    return raw, header.unpack_from(raw)
