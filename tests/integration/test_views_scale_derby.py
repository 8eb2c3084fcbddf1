"""The analyst views over many experiments in the embedded Derby metastore
(`tests.views_scale` says why and how)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.views_scale import build_and_read, check, seeded_store


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return seeded_store(tmp_path_factory)


def test_views_over_many_experiments_in_derby(store: Path, tmp_path: Path) -> None:
    check(build_and_read(store, tmp_path / "data"), store)
