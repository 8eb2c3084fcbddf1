"""`AheadLocations`: the tables' locations read in the order asked, in growing chunks by
name pattern, the first ones known before the rest is read; errors reach the asker."""

from __future__ import annotations

import threading

import pytest

from mlflow_fun.load.locations import CHUNKS, EVERY_TABLE, AheadLocations

NAMES = [f"exp_{i}" for i in range(1, 601)]
STORE = {name: f"file:/w/db.db/{name}" for name in NAMES}


def _listing(pattern: str) -> dict[str, str]:
    """What the metastore lists for ``pattern`` (``a|b``, ``*``)."""
    if pattern == EVERY_TABLE:
        return dict(STORE)
    return {name: STORE[name] for name in pattern.split("|") if name in STORE}


def test_locations_are_read_in_growing_chunks_then_every_table() -> None:
    patterns: list[str] = []

    def fetch(pattern: str) -> dict[str, str]:
        patterns.append(pattern)
        return _listing(pattern)

    ahead = AheadLocations(fetch, [*NAMES, "odd name", "exp_gone"])

    assert ahead.get("exp_600") == STORE["exp_600"]  # in the last listing: all read by now
    assert [len(p.split("|")) for p in patterns[:-1]] == list(CHUNKS)
    assert patterns[0] == "|".join(NAMES[:16])
    assert patterns[-1] == EVERY_TABLE  # 600 + 1 names, 496 in chunks
    assert ahead.get("exp_1") == STORE["exp_1"]
    assert ahead.get("exp_gone") is None  # covered, but the metastore has no such table
    assert not ahead.covers("odd name")  # not a plain name: the caller lists it itself
    with pytest.raises(KeyError):
        ahead.get("odd name")


def test_the_first_tables_are_known_while_the_rest_is_read() -> None:
    release = threading.Event()

    def fetch(pattern: str) -> dict[str, str]:
        if pattern != "|".join(NAMES[:16]):
            assert release.wait(10)  # the second chunk is held back
        return _listing(pattern)

    ahead = AheadLocations(fetch, NAMES[:40])

    assert ahead.get("exp_16") == STORE["exp_16"]  # while chunk two is still being read
    release.set()
    assert ahead.get("exp_40") == STORE["exp_40"]


def test_a_failed_read_reaches_whoever_asks_for_a_table_it_held() -> None:
    def fetch(pattern: str) -> dict[str, str]:
        if pattern.startswith("exp_17|"):
            raise RuntimeError("metastore: Connection refused")
        return _listing(pattern)

    ahead = AheadLocations(fetch, NAMES[:60])

    assert ahead.get("exp_3") == STORE["exp_3"]
    with pytest.raises(RuntimeError, match="Connection refused"):
        ahead.get("exp_20")


def test_closed_it_reads_no_further_chunk() -> None:
    asked: list[str] = []
    first_read, go_on = threading.Event(), threading.Event()

    def fetch(pattern: str) -> dict[str, str]:
        asked.append(pattern)
        first_read.set()
        assert go_on.wait(10)
        return _listing(pattern)

    ahead = AheadLocations(fetch, NAMES[:100])
    assert first_read.wait(10)
    ahead.close()
    go_on.set()

    assert ahead.get("exp_2") == STORE["exp_2"]  # the chunk being read is finished
    with pytest.raises(RuntimeError, match="closed"):
        ahead.get("exp_50")
    assert len(asked) == 1
