"""Where a rebuild's tables are, read from the metastore ahead of the writes that need them.

A table that exists is written where the metastore says it is. One ``SHOW TABLE
EXTENDED`` over every table costs the metastore one lookup per table (1.6 s for 200
tables on this project's 2-core machine), and the first pull of a rebuild waited for all
of it. `AheadLocations` reads them in the order the tables will be written, in a thread of
its own, in chunks that grow (16, 32, 64, 128 and 256 names, then every table at once): the
first table's location is known after 16 lookups, the others while the first tables are
written. Each chunk is one listing by name pattern (``exp_1|exp_2|…``), so the names read
this way are plain identifiers (`is_identifier`); any other is left to the caller's own
listing.

Example:
    >>> ahead = AheadLocations(lambda pattern: metastore_locations(spark, db, pattern), names)
    >>> ahead.get("exp_7") if ahead.covers("exp_7") else None
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence

from mlflow_fun.transform.naming import is_identifier

CHUNKS = (16, 32, 64, 128, 256)
EVERY_TABLE = "*"


class AheadLocations:
    """Locations of ``names`` read by ``fetch`` (a listing by pattern: ``a|b`` for either,
    ``*`` for every table; table -> location) in that order, in the background.

    Args:
        fetch: Reads the metastore; called from this object's thread only.
        names: The tables that exist, in the order their locations will be asked for.
    """

    def __init__(self, fetch: Callable[[str], Mapping[str, str]], names: Sequence[str]) -> None:
        self._fetch = fetch
        plain = list(dict.fromkeys(n for n in names if is_identifier(n)))
        self._patterns: list[str] = []
        self._chunk_of: dict[str, int] = {}
        start = 0
        for size in CHUNKS:
            chunk = plain[start : start + size]
            if not chunk:
                break
            self._add_chunk(chunk, "|".join(chunk))
            start += size
        if start < len(plain):
            self._add_chunk(plain[start:], EVERY_TABLE)
        self._found: dict[str, str] = {}
        self._read = 0  # chunks read so far
        self._error: Exception | None = None
        self._closed = False
        self._changed = threading.Condition()
        threading.Thread(target=self._run, name="locations", daemon=True).start()

    def covers(self, name: str) -> bool:
        """True if ``name``'s location is read here (`get` may be asked for it)."""
        return name in self._chunk_of

    def get(self, name: str) -> str | None:
        """The location of ``name`` (None: not in the metastore), once its chunk is read.

        Raises:
            KeyError: ``name`` is not read here (`covers`).
            Exception: The read of its chunk failed: the metastore's error.
        """
        chunk = self._chunk_of[name]
        with self._changed:
            self._changed.wait_for(lambda: self._read > chunk or self._error is not None)
            if self._read <= chunk and self._error is not None:
                raise self._error
            return self._found.get(name)

    def close(self) -> None:
        """Read no further chunk (the one being read is finished)."""
        with self._changed:
            self._closed = True

    def _add_chunk(self, names: Sequence[str], pattern: str) -> None:
        for name in names:
            self._chunk_of[name] = len(self._patterns)
        self._patterns.append(pattern)

    def _run(self) -> None:
        for pattern in self._patterns:
            with self._changed:
                if self._closed:
                    self._error = RuntimeError("table locations no longer read: closed")
                    self._changed.notify_all()
                    return
            try:
                found = self._fetch(pattern)
            except Exception as e:  # given to whoever asks for a location of this chunk on
                with self._changed:
                    self._error = e
                    self._changed.notify_all()
                return
            with self._changed:
                self._found.update(found)
                self._read += 1
                self._changed.notify_all()
