"""The PostgreSQL metastore stopped mid-job: for a few seconds the job rides over the gap
(Hive's metastore client retries its calls) or fails in one line; stopped until the job
ends, the job fails in one line. Either way every table reads as before, and the next run
leaves the tables a fault-free build writes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from sqlalchemy import make_url

from tests.db_servers import restartable_postgres
from tests.views_scale import REPO, load_seed_store

SCRIPT = Path(sys.executable).parent / "mlflow-fun"
EXPERIMENTS, RUNS = 6, 300
OUTAGE_SECONDS = 2.0
HIVE_RETRIES = {
    "spark.hadoop.hive.hmshandler.retry.attempts": "3",
    "spark.hadoop.hive.hmshandler.retry.interval": "1s",
    # Each try waits at most 1 s for a pooled connection (2 s by default,
    # mlflow_fun.metastore_pool): the job that outlives the metastore fails sooner.
    "spark.hadoop.datanucleus.connectionPool.connectionWaitTimeout": "1000",
}


def test_the_metastore_restarted_mid_job(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    store = tmp_path_factory.mktemp("metastore_restart_store")
    seeded = load_seed_store().seed_store(store, runs=RUNS, experiments=EXPERIMENTS, best_runs=0)
    with restartable_postgres() as metastore:
        url = make_url(metastore.url)
        env = dict(
            os.environ,
            MLFLOW_FUN_METASTORE_URL=f"jdbc:postgresql://127.0.0.1:{url.port}/{url.database}",
            MLFLOW_FUN_METASTORE_USER=str(url.username),
            MLFLOW_FUN_METASTORE_PASSWORD=str(url.password),
        )
        # Hive retries each metastore call 10 times, 2 s apart: a metastore that stays down
        # fails the job after ~10 minutes. Three tries 1 s apart, each waiting at most 1 s
        # for a connection (a 2 s outage fits in them), keep this test short.
        settings = yaml.safe_load((REPO / "conf" / "metastore-postgres.yaml").read_text())
        settings["spark_conf"].update(HIVE_RETRIES)
        conf = tmp_path / "metastore.yaml"
        conf.write_text(yaml.safe_dump(settings))
        common = ["--conf", str(conf), "--data-dir", str(tmp_path / "data")]
        build = [str(SCRIPT), "--log-level", "INFO", "build", *common, "--source", "db",
                 "--no-progress", "--connection", f"sqlite:///{seeded.db_path}"]  # fmt: skip
        first = subprocess.run(build, env=env, capture_output=True, text=True, timeout=900)
        assert first.returncode == 0, first.stderr[-3000:]
        query = " union all ".join(
            f"select 'exp_{e}' as t, count(*) as n, sum(cast(hash(*) as bigint)) as h "
            f"from exp_{e}"
            for e in _experiment_ids(first.stderr)
        ) + " order by t"  # fmt: skip
        read = [str(SCRIPT), "sql", *common, "--engine", "spark", "--output", "csv", query]
        before = _ok(read, env)
        assert before.count("\n") == EXPERIMENTS + 2, before

        # A short outage, then one that lasts until the job has ended.
        for outage in (OUTAGE_SECONDS, None):
            job = subprocess.Popen(
                [*build, "--full-refresh"], env=env, stderr=subprocess.PIPE,
                stdout=subprocess.DEVNULL, text=True,
            )  # fmt: skip
            assert job.stderr is not None
            lines, stopped = [], False
            for line in job.stderr:
                lines.append(line)
                if not stopped and "table written experiment_id=" in line:
                    metastore.stop()  # one table written, six to go
                    stopped = True
                    if outage is not None:
                        time.sleep(outage)
                        metastore.start()
            code = job.wait(timeout=900)
            if outage is None:
                metastore.start()
            assert stopped, "".join(lines[-30:])
            assert not any("Traceback" in line for line in lines), "".join(lines[-60:])
            if code != 0 or outage is None:
                assert code == 1 and lines[-1].startswith("mlflow-fun: error: "), lines[-5:]
            if outage is None:  # no views tried over a `runs` the job could not write
                views = [line for line in lines if "analyst views not created" in line]
                assert [v.split("views ", 1)[1] for v in views] == [
                    "not created: writing the runs rows failed\n"
                ], "".join(lines[-30:])
            print(f"outage {outage}: the job exited {code}: {lines[-1].strip()}")
            assert _ok(read, env) == before  # every table reads as before

        again = subprocess.run(build, env=env, capture_output=True, text=True, timeout=900)
        assert again.returncode == 0, again.stderr[-3000:]
        assert _ok(read, env) == before


def _experiment_ids(log: str) -> list[str]:
    """The experiment ids of the job's "table written" lines."""
    ids = {
        word.split("=", 1)[1]
        for line in log.splitlines()
        if "table written" in line
        for word in line.split()
        if word.startswith("experiment_id=")
    }
    assert len(ids) == EXPERIMENTS + 1, log[-3000:]  # and MLflow's Default experiment
    return sorted(ids)


def _ok(argv: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout
