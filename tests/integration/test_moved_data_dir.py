"""A data dir copied to another path reads and writes its own tables, not the original's."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from mlflow import MlflowClient

from tests.seed import Seeded, _run

SCRIPT = Path(sys.executable).parent / "mlflow-fun"


def _ok(*args: str | Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    return result


def test_a_copied_data_dir_reads_and_writes_its_own_tables(seeded: Seeded, tmp_path: Path) -> None:
    client = MlflowClient(seeded.url)
    experiment_id = client.create_experiment("copied-data-dir")
    for i in range(3):
        _run(client, experiment_id, 1000 + i, metrics={"rmse": 1.0 + i})
    original, copy = tmp_path / "original", tmp_path / "copy"
    build = ["build", "--tracking_uri", seeded.url, "--experiment_ids", experiment_id]
    _ok(*build, "--data_dir", original)
    shutil.copytree(original, copy)
    count = ["sql", "--output", "csv", f"select count(*) as n from exp_{experiment_id}"]

    best = _run(client, experiment_id, 5000, metrics={"rmse": 0.5})
    _ok(*build, "--data_dir", original)  # the original moves on; the copy must not
    copied = _ok(*count, "--engine", "spark", "--data_dir", copy)  # Spark opens the metastore
    assert copied.stdout == "n\n3\n"
    assert "data dir moved: relocating its tables" in copied.stderr
    assert _ok(*count, "--data_dir", original).stdout == "n\n4\n"

    shutil.rmtree(original)  # the copy stands alone
    rebuilt = _ok(*build, "--data_dir", copy)  # writes the copy's tables, not the old path
    assert "relocating" not in rebuilt.stderr  # done once
    assert not original.exists()
    assert _ok(*count, "--data_dir", copy).stdout == "n\n4\n"
    answer = _ok("best", "--source", "table", "--data_dir", copy, "--experiment-id",
                 experiment_id, "--metric", "rmse")  # fmt: skip
    assert answer.stdout == f"('{best}', 0.5)\n"
