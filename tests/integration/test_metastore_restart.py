"""The PostgreSQL metastore stopped mid-job: for a few seconds the job rides over the gap
(Hive's metastore client retries its calls) or fails in one line; stopped until the job
ends, the job stops at the first call that finds it gone (no table started after it, no
later step asking it again) and fails in one line. Either way every table reads as before,
and the next run leaves the tables a fault-free build writes."""

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
from tests.spark_settings import LEAN_READS
from tests.views_scale import REPO, load_seed_store

SCRIPT = Path(sys.executable).parent / "mlflow-fun"
EXPERIMENTS, RUNS = 6, 300
TABLES = EXPERIMENTS + 1  # and MLflow's Default experiment
WRITERS = 2  # tables written at once (mlflow_fun.config.DEFAULT_WRITERS)
OUTAGE_SECONDS = 2.0
FRESH = "fresh_metrics"  # a database the job builds for the first time
# Hive retries each metastore call 10 times, 2 s apart: three tries 1 s apart, each
# waiting at most 0.5 s for a pooled connection (mlflow_fun.metastore_pool's default),
# carry the job over a 2 s outage. Against a metastore that stays down, one try waiting
# 0.25 s is enough: what is tested there is that the job stops asking.
RIDE_OVER = {
    "spark.hadoop.hive.hmshandler.retry.attempts": "3",
    "spark.hadoop.hive.hmshandler.retry.interval": "1s",
}
ONE_TRY = {
    "spark.hadoop.hive.hmshandler.retry.attempts": "1",
    "spark.hadoop.datanucleus.connectionPool.connectionWaitTimeout": "250",
}
LOST = "mlflow-fun: error: the metastore did not answer (java.net.ConnectException: "


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
        settings = yaml.safe_load((REPO / "conf" / "metastore-postgres.yaml").read_text())
        confs = {}
        for name, hive in (
            ("ride_over", RIDE_OVER),
            ("one_try", ONE_TRY),
            ("read", {**ONE_TRY, **LEAN_READS}),  # the test's reads: 19 -> 15 CPU-s each
        ):
            confs[name] = tmp_path / f"{name}.yaml"
            confs[name].write_text(
                yaml.safe_dump({**settings, "spark_conf": {**settings["spark_conf"], **hive}})
            )

        def build(conf: str, *more: str) -> list[str]:
            return [str(SCRIPT), "--log-level", "INFO", "build", "--conf", str(confs[conf]),
                    "--data-dir", str(tmp_path / "data"), "--source", "db", "--no-progress",
                    "--connection", f"sqlite:///{seeded.db_path}", *more]  # fmt: skip

        def read(*databases: str) -> list[str]:
            query = " union all ".join(
                f"select '{d}.{t}' as t, count(*) as n, sum(cast(hash(*) as bigint)) as h "
                f"from {d}.{t}"
                for d in databases
                for t in tables
            ) + " order by t"  # fmt: skip
            done = subprocess.run(
                [str(SCRIPT), "sql", "--conf", str(confs["read"]), "--data-dir",
                 str(tmp_path / "data"), "--engine", "spark", "--output", "csv", query],
                env=env, capture_output=True, text=True, timeout=900,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr[-3000:]
            return done.stdout.splitlines()[1:]

        first = subprocess.run(
            build("one_try"), env=env, capture_output=True, text=True, timeout=900
        )
        assert first.returncode == 0, first.stderr[-3000:]
        tables = [f"exp_{e}" for e in _experiment_ids(first.stderr)]
        before = read("mlflow_metrics")
        assert len(before) == TABLES, before

        # A short outage; one that lasts until the job has ended, in a rebuild (its tables
        # are written before the metastore's next call) and in a first build (each new
        # table is named in the metastore).
        # Each database read after the last job to write it (a JVM less).
        for conf, outage, database, read_after in (
            ("ride_over", OUTAGE_SECONDS, "mlflow_metrics", True),
            ("one_try", None, "mlflow_metrics", False),
            ("one_try", None, FRESH, True),
        ):
            job = subprocess.Popen(
                [*build(conf, "--database", database), "--full-refresh"], env=env,
                stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
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
            print(f"{database} outage {outage}: the job exited {code}: {lines[-1].strip()}")
            if code != 0 or outage is None:
                assert code == 1 and lines[-1].startswith("mlflow-fun: error: "), lines[-5:]
            if outage is None:
                _assert_stopped_asking(lines, written_before=database == "mlflow_metrics")
            if read_after:
                assert read("mlflow_metrics") == before  # every table reads as before

        for database in ("mlflow_metrics", FRESH):
            again = subprocess.run(
                build("one_try", "--database", database), env=env, capture_output=True,
                text=True, timeout=900,
            )  # fmt: skip
            assert again.returncode == 0, again.stderr[-3000:]
        both = read(FRESH, "mlflow_metrics")  # ordered by name: the fresh tables first
        fresh = [row.replace(f"{FRESH}.", "mlflow_metrics.", 1) for row in both[:TABLES]]
        assert (fresh, both[TABLES:]) == (before, before)


def _assert_stopped_asking(lines: list[str], written_before: bool) -> None:
    """The job that outlived the metastore: one line says the metastore is gone; no table
    is started after it (at most the writers' tables then in flight fail), and neither the
    analyst views nor the status rows are tried."""
    log = "".join(lines[-40:])
    assert lines[-1].startswith(LOST), log
    assert sum("metastore unreachable cause=java.net.ConnectException" in x for x in lines) == 1
    written = sum("table written experiment_id=" in x for x in lines)
    failed = sum("experiment failed experiment_id=" in x for x in lines)
    assert not any("analyst views created" in x for x in lines), log
    if written_before:  # a rebuild: every table written, then `runs` found the metastore gone
        assert (written, failed) == (TABLES, 0), log
        assert sum("writing runs, history or state failed" in x for x in lines) == 1, log
        assert (
            sum("analyst views not created: writing the runs rows failed" in x for x in lines) == 1
        )
    else:  # a first build: the tables after the first registration that failed are skipped
        assert written >= 1 and 1 <= failed <= WRITERS, log
        skipped = TABLES - written - failed
        assert skipped >= 1 and f"stopped before {skipped} experiment(s)" in log, log
        # Beyond the tables written before the metastore was found gone, only those then in
        # flight (one per writer, the first failure among them) ended either way. The
        # other writer may finish its table before the metastore stops: two written then.
        lost = next(i for i, line in enumerate(lines) if "metastore unreachable" in line)
        before = sum("table written experiment_id=" in x for x in lines[:lost])
        assert written + failed <= before + WRITERS, log


def _experiment_ids(log: str) -> list[str]:
    """The experiment ids of the job's "table written" lines."""
    ids = {
        word.split("=", 1)[1]
        for line in log.splitlines()
        if "table written" in line
        for word in line.split()
        if word.startswith("experiment_id=")
    }
    assert len(ids) == TABLES, log[-3000:]
    return sorted(ids)
