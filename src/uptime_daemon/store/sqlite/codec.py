"""Event rows in the compact format: interned names and metadata, dictionary-compressed payloads.

Why this shape:

* A check event repeats its stream name, its type and (almost always) the same metadata; the row
  keeps small integers instead and the strings live once in ``names`` / ``metadata``. Both sides
  cache those tables in memory: the ``Encoder`` on the writer thread (string → id), the ``Decoder``
  on the reader thread (id → string), so a replay builds no string per event and shares them.
* Payloads are JSON of one shape: zstd with a dictionary trained on the file's own payloads takes
  ~600 bytes to ~75, and decompressing costs about a microsecond. A new file stores payloads raw
  until ``TRAIN_AFTER`` of them exist, then trains once and recompresses the rows written raw
  meanwhile, a bounded pass at a time between the writer's batches.
* A digest (``store.Digest``, given by the layer above) is stored beside its payload: its key
  interned in ``names`` like a stream name, its bytes as they came. ``Decoder.digest_rows`` hands
  them back instead of the payload, which it then neither reads nor decompresses.
* Frames are magicless and carry no dictionary id or checksum: the row says which dictionary, and
  SQLite's own page checks are what we trust for the rest. Nothing is ever deleted from the three
  side tables, so an id, once read, means the same thing for the life of the file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Final
from uuid import UUID

import structlog
import zstandard

from uptime_daemon.store import Digest, DigestRow, LogRow, RecordedEvent
from uptime_daemon.store.sqlite.connection import transaction
from uptime_daemon.store.sqlite.schema import sequence

# The package's name, as the other modules of the store log under.
log = structlog.get_logger(__package__)

RAW: Final = 0
"""``dictionary_id`` of a payload stored as it came (too early to train, or it did not shrink)."""
TRAIN_AFTER: Final = 2000
"""Raw payloads a file holds before its dictionary is trained; also how many samples training takes."""
DICTIONARY_BYTES: Final = 16 * 1024
LEVEL: Final = 3
"""zstd level: higher ones save ~5 % more on these payloads for 5-100 times the writer's CPU."""
_FORMAT: Final = zstandard.FORMAT_ZSTD1_MAGICLESS
RECOMPRESS_SPAN: Final = 5000
"""Positions one ``recompress`` pass covers (tens of milliseconds of the writer's time)."""
_METADATA_CACHE: Final = 4096
"""Distinct metadata values the writer remembers (a client may send unique ones per event)."""

Pack = Callable[[bytes], bytes]
Digested = tuple[int | None, bytes | None]
"""An event row's ``(digest_key, digest)`` columns."""


def compressor(dictionary: bytes) -> Pack:
    """The compressing function for one stored dictionary."""
    params = zstandard.ZstdCompressionParameters.from_level(
        LEVEL, format=_FORMAT, write_content_size=1, write_checksum=0, write_dict_id=0
    )
    return zstandard.ZstdCompressor(
        dict_data=zstandard.ZstdCompressionDict(dictionary), compression_params=params
    ).compress


def decompressor(dictionary: bytes) -> Pack:
    """The decompressing function for one stored dictionary (reused: it keeps its context)."""
    return zstandard.ZstdDecompressor(
        dict_data=zstandard.ZstdCompressionDict(dictionary), format=_FORMAT
    ).decompress


def train(samples: Sequence[bytes]) -> bytes | None:
    """A dictionary for payloads like ``samples``, or ``None`` when zstd cannot train on them."""
    pool: list[bytes | bytearray | memoryview] = list(samples)
    try:
        return zstandard.train_dictionary(DICTIONARY_BYTES, pool).as_bytes()
    except zstandard.ZstdError as exc:
        log.info("store_dictionary_not_trained", samples=len(samples), reason=str(exc))
        return None


def store_dictionary(conn: sqlite3.Connection, dictionary: bytes) -> int:
    """Add a dictionary to the file (inside the caller's transaction); its id."""
    cursor = conn.execute("INSERT INTO dictionaries (value) VALUES (?)", (dictionary,))
    return int(cursor.lastrowid or 0)


class Encoder:
    """Turns event fields into a row's integers and bytes; lives on one connection's thread.

    Lookups that insert a new name or metadata value are remembered as *fresh* until the
    transaction commits: after a rollback (a conflicting append's SAVEPOINT, or a failed batch)
    ``forget_since`` drops them, so the cache never holds an id the file does not have.
    """

    def __init__(self, digest: Digest | None = None) -> None:
        self._digest = digest
        self._names: dict[str, int] = {}
        self._metadata: dict[bytes, int] = {}
        self._fresh_names: list[str] = []
        self._fresh_metadata: list[bytes] = []
        self._metadata_clears = 0
        self._pack: Pack | None = None
        self.dictionary_id = RAW
        self.raw_since_training = 0
        self._backlog: tuple[int, int] | None = None

    def load(self, conn: sqlite3.Connection) -> None:
        """Take the file's newest dictionary, or count the raw payloads waiting for one."""
        if self.load_dictionary(conn):
            return
        self.raw_since_training = int(
            conn.execute(
                "SELECT COUNT(*) FROM (SELECT 1 FROM events WHERE dictionary_id = 0 LIMIT ?)",
                (TRAIN_AFTER,),
            ).fetchone()[0]
        )

    def load_dictionary(self, conn: sqlite3.Connection) -> bool:
        """Compress with the file's newest dictionary, if it has one."""
        row = conn.execute("SELECT id, value FROM dictionaries ORDER BY id DESC LIMIT 1").fetchone()
        if row is not None:
            self.adopt(int(row[0]), bytes(row[1]))
        return row is not None

    def adopt(self, dictionary_id: int, dictionary: bytes) -> None:
        """Compress with this dictionary from now on (once it is committed in the file)."""
        self._pack = compressor(dictionary)
        self.dictionary_id = dictionary_id

    @property
    def training_due(self) -> bool:
        """No dictionary yet, and enough raw payloads to train one."""
        return self._pack is None and self.raw_since_training >= TRAIN_AFTER

    def pack(self, data: bytes) -> tuple[int, bytes]:
        """``(dictionary_id, stored bytes)``: compressed when that is smaller, else raw."""
        if self._pack is None:
            self.raw_since_training += 1
            return RAW, data
        packed = self._pack(data)
        if len(packed) < len(data):
            return self.dictionary_id, packed
        return RAW, data

    def digested(self, conn: sqlite3.Connection, kind: str, data: bytes) -> Digested:
        """``(digest_key, digest)`` columns for an event: its key interned, or ``(None, None)``."""
        found = None if self._digest is None else self._digest(kind, data)
        if found is None:
            return None, None
        key, packed = found
        return self.name_id(conn, key), packed

    def name_id(self, conn: sqlite3.Connection, name: str) -> int:
        """The id of a stream name or event type, interning it on first use."""
        found = self.find_name(conn, name)
        if found is not None:
            return found
        cursor = conn.execute("INSERT INTO names (name) VALUES (?)", (name,))
        self._fresh_names.append(name)
        self._names[name] = ident = int(cursor.lastrowid or 0)
        return ident

    def find_name(self, conn: sqlite3.Connection, name: str) -> int | None:
        """The id of ``name`` if the file has it (a stream never written has none)."""
        known = self._names.get(name)
        if known is not None:
            return known
        row = conn.execute("SELECT id FROM names WHERE name = ?", (name,)).fetchone()
        if row is None:
            return None
        self._names[name] = ident = int(row[0])
        return ident

    def metadata_id(self, conn: sqlite3.Connection, value: bytes) -> int:
        """The id of a metadata value, stored once per distinct value."""
        known = self._metadata.get(value)
        if known is not None:
            return known
        if len(self._metadata) >= _METADATA_CACHE:
            self._metadata.clear()
            self._fresh_metadata.clear()
            self._metadata_clears += 1
        row = conn.execute("SELECT id FROM metadata WHERE value = ?", (value,)).fetchone()
        if row is None:
            cursor = conn.execute("INSERT INTO metadata (value) VALUES (?)", (value,))
            self._fresh_metadata.append(value)
            row = (cursor.lastrowid,)
        self._metadata[value] = ident = int(row[0])
        return ident

    def mark(self) -> tuple[int, int, int]:
        """A point to roll the cache back to, taken with a SAVEPOINT."""
        return len(self._fresh_names), len(self._fresh_metadata), self._metadata_clears

    def forget_since(self, mark: tuple[int, int, int]) -> None:
        """Drop ids inserted since ``mark``: those rows were rolled back."""
        names, metadata, clears = mark
        if clears != self._metadata_clears:  # emptied since the mark: start again from nothing
            self._metadata.clear()
            self._fresh_metadata.clear()
            metadata = 0
        for name in self._fresh_names[names:]:
            self._names.pop(name, None)
        for value in self._fresh_metadata[metadata:]:
            self._metadata.pop(value, None)
        del self._fresh_names[names:], self._fresh_metadata[metadata:]

    def forget_uncommitted(self) -> None:
        """Drop every id inserted since the last commit: the whole transaction rolled back."""
        self.forget_since((0, 0, self._metadata_clears))

    def committed(self) -> None:
        """Every id cached so far is in the file for good."""
        self._fresh_names.clear()
        self._fresh_metadata.clear()

    def train(self, conn: sqlite3.Connection) -> None:
        """Train on the newest raw payloads and store the dictionary; the raw rows become a backlog.

        One transaction on the writer thread between batches. Only after the commit does the
        encoder compress with it; ``recompress`` then works through the rows written raw so far.
        """
        with transaction(conn, "BEGIN IMMEDIATE"):
            samples = conn.execute(
                "SELECT data FROM events WHERE dictionary_id = 0 ORDER BY position DESC LIMIT ?",
                (TRAIN_AFTER,),
            ).fetchall()
            dictionary = train([bytes(row[0]) for row in samples])
            if dictionary is None:
                self.raw_since_training = 0  # try again after as many more
                return
            dictionary_id = store_dictionary(conn, dictionary)
            through = sequence(conn)
        self.adopt(dictionary_id, dictionary)
        self._backlog = (0, through)
        log.info("store_dictionary_trained", dictionary_id=dictionary_id, samples=len(samples))

    @property
    def recompress_due(self) -> bool:
        """Rows written raw before the dictionary existed are still waiting."""
        return self._backlog is not None

    def recompress(self, conn: sqlite3.Connection) -> None:
        """Compress the raw rows of the next ``RECOMPRESS_SPAN`` positions of the backlog.

        Bounded work per call (one short transaction), so the writer can interleave it with
        appends; a process that stops first leaves the rest raw, which reads just as well.
        """
        if self._backlog is None or self._pack is None:
            return
        start, through = self._backlog
        stop = min(start + RECOMPRESS_SPAN, through)
        with transaction(conn, "BEGIN IMMEDIATE"):
            rows = conn.execute(
                "SELECT position, data FROM events "
                "WHERE position > ? AND position <= ? AND dictionary_id = 0",
                (start, stop),
            ).fetchall()
            conn.executemany(
                "UPDATE events SET dictionary_id = ?, data = ? WHERE position = ?",
                _smaller(self._pack, self.dictionary_id, rows),
            )
        self._backlog = None if stop >= through else (stop, through)


def _smaller(
    pack: Pack, dictionary_id: int, rows: Iterable[tuple[int, bytes]]
) -> Iterable[tuple[int, bytes, int]]:
    """Update parameters for the rows whose payload shrinks."""
    for position, data in rows:
        packed = pack(data)
        if len(packed) < len(data):
            yield dictionary_id, packed, position


LogRowV2 = tuple[int, int, int, int, int, bytes, float]
"""``(position, stream_id, revision, type_id, dictionary_id, data, recorded_at)`` as stored."""
DigestRowV3 = tuple[int, int, int, int, int | None, bytes | None, int | None, bytes | None, float]
"""``(position, stream_id, revision, type_id, digest_key, digest, dictionary_id, data,
recorded_at)``; ``dictionary_id`` and ``data`` read only for an event without a digest."""
EventRow = tuple[int, int, int, bytes, int, int, bytes, bytes, float]
"""``(position, stream_id, revision, id, type_id, dictionary_id, data, metadata, recorded_at)``."""


class Decoder:
    """Turns stored rows back into names and payloads; lives on the reader thread.

    It learns ids as it meets them: a page with an id it does not know yet makes it read what the
    side tables gained since, in the same snapshot the page came from.
    """

    def __init__(self) -> None:
        self._names: dict[int, str] = {}
        self._order: list[tuple[int, str]] = []
        """The names in id order, as learnt: what a prefix's id set is grown from."""
        self._last_name = 0
        self._unpack: dict[int, Pack] = {}
        self._by_prefix: dict[tuple[str, ...], tuple[int, set[int]]] = {}
        """Prefixes → (names looked at, ids of those that match)."""

    def refresh(self, conn: sqlite3.Connection) -> None:
        """Learn the names and dictionaries added since the last refresh."""
        for ident, name in conn.execute(
            "SELECT id, name FROM names WHERE id > ? ORDER BY id", (self._last_name,)
        ):
            self._names[ident] = name
            self._order.append((ident, name))
            self._last_name = ident
        known = max(self._unpack, default=0)
        for ident, dictionary in conn.execute(
            "SELECT id, value FROM dictionaries WHERE id > ?", (known,)
        ):
            self._unpack[ident] = decompressor(bytes(dictionary))

    def stream_ids(self, conn: sqlite3.Connection, wanted: tuple[str, ...]) -> set[int]:
        """The interned ids of the streams whose names start with any of ``wanted``.

        Kept per set of prefixes and grown by the names added since (a subscription asks at every
        commit: one indexed query when nothing is new). The caller must not change the set.
        """
        self.refresh(conn)
        seen, ids = self._by_prefix.get(wanted, (0, set()))
        for ident, name in self._order[seen:]:
            if name.startswith(wanted):
                ids.add(ident)
        self._by_prefix[wanted] = (len(self._order), ids)
        return ids

    def log_rows(self, conn: sqlite3.Connection, rows: list[LogRowV2]) -> list[LogRow]:
        """``LogRow`` s with names and plain payloads: the replay's hot loop, kept to one tuple."""
        try:
            return self._log_rows(rows)
        except KeyError:
            self.refresh(conn)
            return self._log_rows(rows)

    def digest_rows(self, conn: sqlite3.Connection, rows: list[DigestRowV3]) -> list[DigestRow]:
        """``DigestRow`` s: names looked up, and a payload unpacked only where there is no digest."""
        try:
            return self._digest_rows(rows)
        except KeyError:
            self.refresh(conn)
            return self._digest_rows(rows)

    def name(self, conn: sqlite3.Connection, ident: int) -> str:
        """The interned string with id ``ident``."""
        if ident not in self._names:
            self.refresh(conn)
        return self._names[ident]

    def payload(self, conn: sqlite3.Connection, dictionary_id: int, data: bytes) -> bytes:
        """One stored payload as it was appended."""
        if dictionary_id == RAW:
            return data
        if dictionary_id not in self._unpack:
            self.refresh(conn)
        return self._unpack[dictionary_id](data)

    def events(self, conn: sqlite3.Connection, rows: list[EventRow]) -> list[RecordedEvent]:
        """``RecordedEvent`` s, exactly as version 1 returned them."""
        try:
            return self._events(rows)
        except KeyError:
            self.refresh(conn)
            return self._events(rows)

    def _log_rows(self, rows: list[LogRowV2]) -> list[LogRow]:
        names, unpack = self._names, self._unpack
        return [
            (position, names[stream], revision, names[kind], unpack[z](d) if z else d, at)
            for position, stream, revision, kind, z, d, at in rows
        ]

    def _digest_rows(self, rows: list[DigestRowV3]) -> list[DigestRow]:
        names, unpack = self._names, self._unpack
        return [
            (position, names[stream], revision, names[kind], None, at, names[key], packed)
            if key is not None and packed is not None
            else (
                position,
                names[stream],
                revision,
                names[kind],
                unpack[z](d) if z else d,  # type: ignore[arg-type] # not NULL without a digest
                at,
                None,
                None,
            )
            for position, stream, revision, kind, key, packed, z, d, at in rows
        ]

    def _events(self, rows: list[EventRow]) -> list[RecordedEvent]:
        names, unpack = self._names, self._unpack
        return [
            RecordedEvent(
                id=UUID(bytes=uid),
                type=names[kind],
                data=unpack[z](d) if z else d,
                metadata=metadata,
                stream=names[stream],
                revision=revision,
                position=position,
                recorded_at=datetime.fromtimestamp(at, UTC),
            )
            for position, stream, revision, uid, kind, z, d, metadata, at in rows
        ]
