"""The short soak of CI (``make soak`` runs 200 rounds): incremental refreshes back to back
while a load generator logs new runs, steps, finishes, deletes and restores; the tables
end equal to a full refresh and to MLflow's ``search_runs``, and `maintain` compacts."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from mlflow_fun.extract.local_server import LocalMlflowServer

ROUNDS = 4


def _soak() -> ModuleType:
    """``scripts/soak.py`` as a module (scripts/ is not a package)."""
    script = Path(__file__).resolve().parents[2] / "scripts" / "soak.py"
    spec = importlib.util.spec_from_file_location("soak", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["soak"] = module  # dataclasses look their module up while defined
    spec.loader.exec_module(module)
    return module


def test_a_short_soak_ends_equal_to_a_full_refresh_and_mlflow(
    spark: Any, mlflow_server: LocalMlflowServer, tmp_path: Path
) -> None:
    soak = _soak()
    report = soak.run(
        spark,
        mlflow_server.url,
        rounds=ROUNDS,
        experiments=2,
        runs=20,
        maintain_every=4,
        pause=0.1,
        workdir=tmp_path,
        prefix="short-soak",
        database="short_soak",
    )
    assert [r.index for r in report.rounds] == list(range(1, ROUNDS + 1))
    assert [r.maintained for r in report.rounds] == [False, False, False, True]
    assert sum(report.changes.values()) >= ROUNDS  # the generator kept logging
    assert report.changes["new"] >= 1
    assert all(r.modes in ("incremental", "full", "full,incremental") for r in report.rounds)
    # maintenance compacts every table to one file, whatever the rounds before wrote
    assert [r.files for r in report.rounds if r.maintained] == [1]
    assert report.equal_to_full, report.differences
    assert report.equal_to_mlflow, report.differences
    assert report.differences == []
    assert len(report.targets()) == 1  # the figures need a long soak: no PASS/MISS here
