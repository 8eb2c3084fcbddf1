"""The driver JVM's class archive, with real local commands: written once, then mapped.

The first local JVM with a new archive folder writes the archive as its session stops,
whichever command it runs (one code path, `mlflow_fun.session`): here a `best` that
fails, so one archive write (about 15 s of a JVM dumping its classes) serves both tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.seed import Seeded

SCRIPT = Path(sys.executable).parent / "mlflow-fun"


def _env(archives: Path) -> dict[str, str]:
    return {**os.environ, "MLFLOW_FUN_CLASS_ARCHIVE": str(archives)}


@pytest.fixture(scope="module")
def first_command(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """A `best` from the tables of an empty data dir (Spark's metastore is asked, and has
    no such table), the first JVM of a new archive folder; and that folder."""
    root = tmp_path_factory.mktemp("class_archive")
    archives = root / "jvm"
    (root / "data").mkdir()
    result = subprocess.run(
        [str(SCRIPT), "--log-level", "INFO", "best", "--source", "table",
         "--data_dir", str(root / "data"), "--experiment-id", "424242", "--metric", "rmse"],
        capture_output=True, text=True, timeout=600, env=_env(archives),
    )  # fmt: skip
    return result, archives


def test_a_failed_command_says_its_error_last_after_writing_the_archive(
    first_command: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    result, archives = first_command
    assert result.returncode == 1, result.stderr
    [archive] = list(archives.iterdir())
    lines = result.stderr.splitlines()
    assert f"jvm class archive written path={archive}" in result.stderr
    assert lines[-1] == (
        "mlflow-fun: error: table mlflow_metrics.exp_424242 does not exist; run "
        "`mlflow-fun build --experiment_ids 424242` first"
    ), lines[-5:]


def test_the_next_local_job_maps_the_archive(
    first_command: tuple[subprocess.CompletedProcess[str], Path], seeded: Seeded, tmp_path: Path
) -> None:
    _, archives = first_command
    [archive] = list(archives.iterdir())
    assert archive.name.startswith("spark-") and archive.suffix == ".jsa"
    assert archive.stat().st_size > 10_000_000  # Spark's and Hive's classes at least

    job = subprocess.run(
        [str(SCRIPT), "build", "--log-level", "INFO", "--data_dir", str(tmp_path / "data"),
         "--tracking_uri", seeded.url, "--experiment_ids", seeded.typed],
        capture_output=True, text=True, timeout=600, env=_env(archives),
    )  # fmt: skip
    assert job.returncode == 0, job.stderr
    assert f"jvm class archive mapped path={archive}" in job.stderr
    assert "refused" not in job.stderr
    assert list(archives.iterdir()) == [archive]
