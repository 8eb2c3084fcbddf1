"""The driver JVM's class archive, with a real local job: written once, then mapped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.seed import Seeded

SCRIPT = Path(sys.executable).parent / "mlflow-fun"


def _build(data_dir: Path, url: str, experiment_id: str, archives: Path) -> str:
    env = {**os.environ, "MLFLOW_FUN_CLASS_ARCHIVE": str(archives)}
    result = subprocess.run(
        [str(SCRIPT), "build", "--log-level", "INFO", "--data_dir", str(data_dir),
         "--tracking_uri", url, "--experiment_ids", experiment_id],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stderr


def test_the_first_local_job_writes_the_archive_the_next_maps_it(
    seeded: Seeded, tmp_path: Path
) -> None:
    archives = tmp_path / "jvm"
    first = _build(tmp_path / "a", seeded.url, seeded.typed, archives)
    [archive] = list(archives.iterdir())
    assert f"jvm class archive written path={archive}" in first
    assert archive.name.startswith("spark-") and archive.suffix == ".jsa"
    assert archive.stat().st_size > 10_000_000  # Spark's, Hive's and Delta's classes

    second = _build(tmp_path / "b", seeded.url, seeded.typed, archives)
    assert f"jvm class archive mapped path={archive}" in second
    assert "refused" not in second
    assert list(archives.iterdir()) == [archive]


def test_a_failed_command_says_its_error_last_after_writing_the_archive(tmp_path: Path) -> None:
    # A new archive folder: this command's JVM writes the archive as the session stops.
    archives = tmp_path / "jvm"
    (tmp_path / "data").mkdir()  # no table under it: Spark's metastore is asked
    env = {**os.environ, "MLFLOW_FUN_CLASS_ARCHIVE": str(archives)}
    result = subprocess.run(
        [str(SCRIPT), "--log-level", "INFO", "best", "--source", "table",
         "--data_dir", str(tmp_path / "data"), "--experiment-id", "424242", "--metric", "rmse"],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    [archive] = list(archives.iterdir())
    lines = result.stderr.splitlines()
    assert f"jvm class archive written path={archive}" in result.stderr
    assert lines[-1] == (
        "mlflow-fun: error: table mlflow_metrics.exp_424242 does not exist; run "
        "`mlflow-fun build --experiment_ids 424242` first"
    ), lines[-5:]
