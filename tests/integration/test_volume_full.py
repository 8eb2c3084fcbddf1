"""The warehouse's volume full: a small tmpfs holds the data dir (warehouse and metastore).

Once the volume is full, an incremental refresh and a full refresh each fail with one line
and exit 1, the tables still read as they were, and once space is freed the next run
catches up to what a build elsewhere writes. Mounting needs root (CI runs as root here).
"""

from __future__ import annotations

import csv
import errno
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.seed import Seeded, _run

SCRIPT = Path(sys.executable).parent / "mlflow-fun"
VOLUME_MB = 96


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    argv = [str(SCRIPT), *map(str, args)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=600)


def _ok(*args: str | Path) -> str:
    result = _cli(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.fixture
def volume(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of `VOLUME_MB` MiB, unmounted at the end."""
    if os.geteuid() != 0:
        pytest.fail("mounting a tmpfs needs root: run this test as root (CI does)")
    path = tmp_path / "volume"
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={VOLUME_MB}m", "tmpfs", str(path)],
                   check=True)  # fmt: skip
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def _fill(path: Path) -> int:
    """Write zeros to ``path`` until the volume has no byte left; the bytes written."""
    written, chunk = 0, b"\0" * (1 << 20)
    with open(path, "wb", buffering=0) as out:
        while chunk:
            try:
                written += out.write(chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
                chunk = chunk[: len(chunk) // 2]
    return written


def test_a_full_volume_fails_in_one_line_and_keeps_the_tables(
    seeded: Seeded, volume: Path, tmp_path: Path
) -> None:
    client = MlflowClient(seeded.url)
    experiment_id = client.create_experiment("full-volume")
    for i in range(20):
        _run(client, experiment_id, 1000 + i, metrics={"rmse": 1.0 / (i + 1)},
             params={"alpha": str(i / 10)})  # fmt: skip
    build = ["build", "--tracking_uri", seeded.url, "--experiment_ids", experiment_id,
             "--data_dir", volume / "data"]  # fmt: skip
    table = ["sql", "--data_dir", volume / "data", "--output", "csv",
             f"select * from exp_{experiment_id} order by run_uuid"]  # fmt: skip
    _ok(*build)
    before = _ok(*table)
    assert before.count("\n") == 21

    for i in range(5):
        _run(client, experiment_id, 5000 + i, metrics={"rmse": 0.01 * i}, params={"beta": "x"})
    assert _fill(volume / "filler") > 0
    # No byte left: the lock file cannot be written. 128 KiB left: the job starts, and
    # the metastore and the tables (on the same volume) fail as the job writes.
    for headroom, refresh in ((0, []), (128 << 10, ["--full-refresh"])):
        with open(volume / "filler", "r+b") as filler:
            filler.truncate(filler.seek(0, os.SEEK_END) - headroom)
        failed = _cli(*build, *refresh)
        lines = failed.stderr.strip().splitlines()
        assert failed.returncode == 1, failed.stderr[-3000:]
        assert "Traceback" not in failed.stderr, failed.stderr[-3000:]
        assert lines[-1].startswith("mlflow-fun: error: "), lines[-5:]
        if headroom == 0:
            assert lines[-1].startswith(
                f"mlflow-fun: error: No space left on device ({volume}/data/"
            ), lines[-1]
        print(f"headroom {headroom}: {lines[-1]}")
        assert _ok(*table) == before  # the tables read as they were
        _fill(volume / "filler-more")

    for filler in volume.glob("filler*"):
        filler.unlink()
    _ok(*build)
    elsewhere = ["--data_dir", tmp_path / "elsewhere"]
    _ok(*build[:-2], *elsewhere)
    after = _rows(_ok(*table))
    assert len(after) == 25
    assert after == _rows(_ok(*table[:1], *elsewhere, *table[3:]))  # column order aside


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))
