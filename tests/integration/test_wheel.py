"""The wheel, installed into a fresh venv away from the checkout, against a real server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from mlflow_fun import __version__
from tests.seed import Seeded

ROOT = Path(__file__).resolve().parents[2]
# What only the full `mlflow` (the server) brings; the client package must not pull it.
SERVER_ONLY = {"flask", "gunicorn", "mlflow", "matplotlib", "scikit-learn", "docker"}


def _run(*command: str | Path, cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(
        [str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_the_wheel_installs_and_runs_without_the_checkout(seeded: Seeded, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["MLFLOW_FUN_CLASS_ARCHIVE"] = "off"  # not under test here; saves writing one
    dist, venv, work = tmp_path / "dist", tmp_path / "venv", tmp_path / "work"
    work.mkdir()
    _run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, ROOT, cwd=work, env=env
    )
    [wheel] = list(dist.glob("mlflow_fun-*.whl"))
    _run(sys.executable, "-m", "venv", venv, cwd=work, env=env)
    pip = [venv / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    _run(*pip, "-c", ROOT / "constraints.txt", f"{wheel}[spark]", cwd=work, env=env)

    installed = json.loads(
        _run(venv / "bin" / "python", "-m", "pip", "list", "--format", "json", cwd=work, env=env)
    )
    names = {package["name"].lower().replace("_", "-") for package in installed}
    assert "mlflow-skinny" in names and "pyspark" in names and "delta-spark" in names
    assert names & SERVER_ONLY == set()
    where = _run(
        venv / "bin" / "python", "-c",
        "import importlib.resources as r, mlflow_fun, mlflow_fun.jobs.build_tables as job\n"
        "print(mlflow_fun.__file__, job.__file__, r.files('mlflow_fun.conf') / 'local.yaml')",
        cwd=work, env=env,
    ).split()  # fmt: skip
    site = str(venv / "lib")
    assert all(path.startswith(site) and Path(path).is_file() for path in where), where

    cli = venv / "bin" / "mlflow-fun"
    assert _run(cli, "--version", cwd=work, env=env) == f"mlflow-fun {__version__}\n"
    data = work / "data"
    _run(
        cli, "build", "--data_dir", data, "--tracking_uri", seeded.url,
        "--experiment_ids", seeded.best, cwd=work, env=env,
    )  # fmt: skip
    best = _run(
        cli, "best", "--source", "table", "--data_dir", data, "--experiment-id", seeded.best,
        "--metric", "rmse", cwd=work, env=env,
    )  # fmt: skip
    assert best == f"('{seeded.best_runs['a']}', 0.5)\n"
    rows = _run(
        cli, "sql", "--data_dir", data, "--output", "json",
        f"select run_id from exp_{seeded.best} where _m_rmse is not null "
        "order by _m_rmse, start_time limit 1",
        cwd=work, env=env,
    )  # fmt: skip
    assert json.loads(rows) == [{"run_id": seeded.best_runs["a"]}]
    assert sorted(os.listdir(work)) == ["data"]  # no metastore_db or derby.log beside it
