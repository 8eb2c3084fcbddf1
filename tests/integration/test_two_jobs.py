"""Two jobs at once on one PostgreSQL metastore and one warehouse, as from two hosts (each
with its own lock file): Delta's conflict detection and the writer's retries keep every
table right, and a job that still loses fails in one line."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import make_url

from tests.db_servers import postgres_server
from tests.views_scale import REPO, load_seed_store

SCRIPT = Path(sys.executable).parent / "mlflow-fun"
EXPERIMENTS, RUNS = 6, 900


def _counts(db_path: Path) -> list[tuple[str, int]]:
    """Active runs per experiment in MLflow's own store."""
    with sqlite3.connect(db_path) as db:
        rows = db.execute(
            "select experiment_id, count(*) from runs where lifecycle_stage = 'active' "
            "group by experiment_id order by experiment_id"
        ).fetchall()
    return [(str(e), n) for e, n in rows]


def test_two_jobs_at_once_leave_the_tables_right(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    store = tmp_path_factory.mktemp("two_jobs_store")
    seeded = load_seed_store().seed_store(store, runs=RUNS, experiments=EXPERIMENTS, best_runs=0)
    db_path = Path(seeded.db_path)
    with postgres_server() as url:
        parsed = make_url(url)
        env = dict(
            os.environ,
            MLFLOW_FUN_METASTORE_URL=f"jdbc:postgresql://127.0.0.1:{parsed.port}/{parsed.database}",
            MLFLOW_FUN_METASTORE_USER=str(parsed.username),
            MLFLOW_FUN_METASTORE_PASSWORD=str(parsed.password),
        )
        conf = str(REPO / "conf" / "metastore-postgres.yaml")
        common = ["--conf", conf, "--data-dir", str(tmp_path / "data")]
        build = [str(SCRIPT), "build", *common, "--source", "db", "--no-progress",
                 "--connection", f"sqlite:///{db_path}"]  # fmt: skip

        def start(lock: str, *extra: str) -> subprocess.Popen[str]:
            argv = [*build, "--lock-file", str(tmp_path / lock), *extra]
            pipe = subprocess.PIPE
            return subprocess.Popen(argv, env=env, stdout=pipe, stderr=pipe, text=True)

        first = start("lock-0")  # the first process alone creates the metastore's schema
        assert first.wait(timeout=600) == 0, first.communicate()[1][-3000:]
        jobs = [start("lock-1", "--full-refresh"), start("lock-2", "--full-refresh")]
        ended = [(job.wait(timeout=900), *job.communicate()) for job in jobs]
        for code, _, err in ended:
            assert "Traceback" not in err, err[-3000:]
            if code != 0:  # a loser: one line saying what to do
                assert code == 1 and err.splitlines()[-1].startswith("mlflow-fun: error: "), err
        assert 0 in [code for code, _, _ in ended], [e[2][-2000:] for e in ended]
        expected = [(e, n) for e, n in _counts(db_path) if n]
        query = " union all ".join(
            [
                "select 'runs' as t, experiment_id as e, count(*) as n, count(distinct run_id) "
                "as d from runs where lifecycle_stage = 'active' group by experiment_id",
                *(
                    f"select 'exp', '{e}', count(*), count(distinct run_uuid) from exp_{e}"
                    for e, _ in expected
                ),
            ]
        ) + " order by t, e"  # fmt: skip
        read = [str(SCRIPT), "sql", *common, "--engine", "spark", "--output", "csv", query]
        done = subprocess.run(read, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(expected) == EXPERIMENTS
    rows = [f"{t},{e},{n},{n}" for t in ("exp", "runs") for e, n in expected]
    assert done.stdout.splitlines() == ["t,e,n,d", *rows]  # every run once, in both tables
