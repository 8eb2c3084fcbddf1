"""What the view-scale tests share: the store, the job run, the checks.

The analyst views over many experiments, in the embedded Derby and a PostgreSQL metastore.

A view that was a UNION of every ``exp_<id>`` table outgrew Derby's 32,700-character
view column at 200 experiments and failed the job. The views now read ``runs``: the job
over ``MLFLOW_FUN_SCALE_EXPERIMENTS`` experiments (default 250, past that limit; the
closing figures were taken at 1,000) succeeds, each view's stored text is as short as for
one experiment, and ``best_runs`` equals the best runs computed here from MLflow's own
database.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mlflow_fun.load.directions import DEFAULT_DIRECTIONS
from tests.seed import load_seed_store

REPO = Path(__file__).resolve().parent.parent
EXPERIMENTS = int(os.environ.get("MLFLOW_FUN_SCALE_EXPERIMENTS", "250"))
RUNS_PER_EXPERIMENT = 4
# The text of the views over one experiment, which must not grow with more.
VIEW_TEXT_LIMIT = 4_000


def seeded_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MLflow's sqlite store with EXPERIMENTS experiments of RUNS_PER_EXPERIMENT runs."""
    root = tmp_path_factory.mktemp("scale_store")
    seeded = load_seed_store().seed_store(
        root, runs=EXPERIMENTS * RUNS_PER_EXPERIMENT, experiments=EXPERIMENTS, best_runs=0
    )
    assert seeded.run_count == EXPERIMENTS * RUNS_PER_EXPERIMENT
    return Path(seeded.db_path)


def expected_views(db_path: Path) -> tuple[dict[str, int], list[list[Any]]]:
    """metrics_long rows per metric and best_runs rows, from MLflow's tables, in Python."""
    with sqlite3.connect(db_path) as db:
        rows = db.execute(
            "select r.experiment_id, r.run_uuid, r.start_time, m.key, m.value, m.is_nan "
            "from latest_metrics m join runs r on r.run_uuid = m.run_uuid "
            "where r.lifecycle_stage = 'active'"
        ).fetchall()
    counts: dict[str, int] = {}
    best: dict[tuple[str, str], tuple[Any, ...]] = {}
    for experiment_id, run_id, start_time, key, value, is_nan in rows:
        counts[key] = counts.get(key, 0) + 1
        if is_nan:
            continue
        sign = 1 if DEFAULT_DIRECTIONS[key] == "min" else -1
        rank = (sign * value, start_time, run_id)
        group = (str(experiment_id), key)
        if group not in best or rank < best[group][0]:
            best[group] = (rank, run_id, value)
    return counts, sorted(
        [eid, key, DEFAULT_DIRECTIONS[key], run_id, value]
        for (eid, key), (_, run_id, value) in best.items()
    )


def build_and_read(store: Path, data_dir: Path, *args: str, env: dict[str, str] | None = None):
    command = [
        sys.executable, "-m", "tests.views_check", "--data_dir", str(data_dir),
        "--source", "db", "--connection", f"sqlite:///{store}", *args,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=3000, cwd=REPO, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"{EXPERIMENTS + 1} of {EXPERIMENTS + 1} table(s) written" in done.stdout
    assert "analyst views not created" not in done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def check(answer: dict[str, Any], store: Path) -> None:
    counts, best = expected_views(store)
    assert answer["metrics_long"] == counts
    assert sum(counts.values()) == EXPERIMENTS * RUNS_PER_EXPERIMENT * 5
    assert len(best) == EXPERIMENTS * 5  # five metrics, each with a direction
    assert sorted(answer["best"]) == best
    assert max(answer["text_lengths"].values()) < VIEW_TEXT_LIMIT, answer["text_lengths"]
