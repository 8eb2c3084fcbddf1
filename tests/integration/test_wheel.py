"""The wheel, installed into a fresh venv away from the checkout: locally and on a cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from chispa import assert_df_equality
from mlflow import MlflowClient
from sqlalchemy import make_url

from mlflow_fun import __version__
from mlflow_fun.session import LOCAL_JVM_OPTIONS
from mlflow_fun.spark_jars import ivy_home, spark_submit_jar_args
from tests.db_servers import POSTGRES_DRIVER, postgres_server
from tests.seed import Seeded
from tests.standalone_cluster import StandaloneCluster

ROOT = Path(__file__).resolve().parents[2]
# What only the full `mlflow` (the server) brings; the client package must not pull it.
SERVER_ONLY = {"flask", "gunicorn", "mlflow", "matplotlib", "scikit-learn", "docker"}


def _run(*command: str | Path, cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(
        [str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@dataclass(frozen=True)
class Installed:
    """The wheel installed into a new venv; ``work`` is a folder away from the checkout."""

    venv: Path
    work: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    tmp_path = tmp_path_factory.mktemp("wheel")
    # PYTHONDONTWRITEBYTECODE out too: pip installs without compiling every module it
    # installs (34 -> 21 s here), and the venv's first processes write the bytecode of the
    # modules they import, which the later ones read.
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["MLFLOW_FUN_CLASS_ARCHIVE"] = "off"  # not under test here; saves writing one
    dist, venv, work = tmp_path / "dist", tmp_path / "venv", tmp_path / "work"
    work.mkdir()
    _run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, ROOT, cwd=work, env=env
    )
    [wheel] = list(dist.glob("mlflow_fun-*.whl"))
    _run(sys.executable, "-m", "venv", venv, cwd=work, env=env)
    pip = [venv / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check",
           "--no-compile"]  # fmt: skip
    _run(*pip, "-c", ROOT / "constraints.txt", f"{wheel}[spark]", cwd=work, env=env)
    return Installed(venv, work, env)


def test_the_wheel_installs_and_runs_without_the_checkout(
    seeded: Seeded, installed: Installed
) -> None:
    venv, work, env = installed.venv, installed.work, installed.env

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


def _executors(events: Path, app_id: str) -> tuple[set[str], set[str]]:
    """Executor ids of application ``app_id`` in its Spark event logs: those that
    registered with its driver, and those that ran a task."""
    registered, ran = set(), set()
    # Spark 4 writes a folder per application: events_<n>_<app> files and an empty marker.
    for log in events.rglob(f"events_*{app_id}*"):
        for line in filter(None, log.read_text().splitlines()):
            event = json.loads(line)
            if event["Event"] == "SparkListenerExecutorAdded":
                registered.add(event["Executor ID"])
            elif event["Event"] == "SparkListenerTaskEnd":
                ran.add(event["Task Info"]["Executor ID"])
    return registered, ran


def test_the_installed_job_on_a_standalone_cluster_equals_local_mode(
    spark: Any, seeded: Seeded, installed: Installed, tmp_path: Path
) -> None:
    """spark-submit of the installed job file to a Master and two Workers, one core each,
    with a PostgreSQL metastore and a warehouse folder every process shares."""
    python = installed.venv / "bin" / "python"
    site = _run(python, "-c", "import pyspark, mlflow_fun.jobs.build_tables as job, importlib."
                "resources as r; print(pyspark.__file__, job.__file__, r.files('mlflow_fun.conf'))",
                cwd=tmp_path, env=installed.env).split()  # fmt: skip
    spark_home, job, conf_dir = Path(site[0]).parent, site[1], Path(site[2])
    ids = [seeded.best, seeded.typed, seeded.paged]
    local, shared = tmp_path / "local", tmp_path / "shared"
    cli = installed.venv / "bin" / "mlflow-fun"
    _run(cli, "build", "--data-dir", local, "--tracking-uri", seeded.url,
         "--experiment-ids", ",".join(ids), cwd=tmp_path, env=installed.env)  # fmt: skip
    events = tmp_path / "events"
    events.mkdir()
    jars = spark_submit_jar_args()
    if "--packages" in jars:
        jars[jars.index("--packages") + 1] += f",{POSTGRES_DRIVER}"
    else:
        jars += ["--packages", POSTGRES_DRIVER, "--conf", f"spark.jars.ivy={ivy_home()}"]
    with postgres_server() as url, StandaloneCluster(tmp_path / "cluster", spark_home) as cluster:
        parsed = make_url(url)
        env = dict(
            installed.env,
            PYSPARK_PYTHON=str(python),  # the driver's and the executors' Python
            MLFLOW_FUN_METASTORE_URL=f"jdbc:postgresql://127.0.0.1:{parsed.port}/{parsed.database}",
            MLFLOW_FUN_METASTORE_USER=str(parsed.username),
            MLFLOW_FUN_METASTORE_PASSWORD=str(parsed.password),
        )
        # The Delta build writes every table with delta-rs in the driver (a local warehouse);
        # the Parquet tables of a second database are written by Spark, on the executors.
        for again in ([], ["--table-format", "parquet", "--database", "mlflow_parquet"]):
            started = time.monotonic()
            _run(installed.venv / "bin" / "spark-submit", "--master", cluster.master_url,
                 "--total-executor-cores", "2", "--executor-cores", "1", "--executor-memory",
                 "768m", "--conf", "spark.driver.host=127.0.0.1",
                 "--conf", "spark.eventLog.enabled=true", "--conf", f"spark.eventLog.dir={events}",
                 "--conf", "spark.eventLog.compress=false", *jars,
                 # the driver's and executors' JVMs as a local job's (C1 alone, serial GC)
                 "--driver-java-options", LOCAL_JVM_OPTIONS,
                 "--conf", f"spark.executor.extraJavaOptions={LOCAL_JVM_OPTIONS}",
                 job, "--conf", conf_dir / "metastore-postgres.yaml", "--data-dir", shared,
                 "--tracking-uri", seeded.url, "--experiment-ids", ",".join(ids), "--no-progress",
                 *again, cwd=tmp_path, env=env)  # fmt: skip
            took = time.monotonic() - started
        first_app, app = sorted(cluster.state()["completedapps"], key=lambda a: a["starttime"])
    # each application had one executor on each worker, and the Parquet build's ran tasks on
    # both. Not counted: an executor the Master starts in the instant the driver stops (the
    # first ones exited before the application was removed), which never registers.
    registered, ran = _executors(events, app["id"])
    launched = [
        sorted(p.name for p in cluster.worker_dir(i).glob(f"{app['id']}/*") if p.name in registered)
        for i in (0, 1)
    ]
    assert [len(executors) for executors in launched] == [1, 1], (launched, registered)
    assert ran == {launched[0][0], launched[1][0]}
    assert first_app["id"] != app["id"]
    for experiment_id in ids:
        tables = [
            spark.read.format("delta")
            .load(str(home / "warehouse" / "mlflow_metrics.db" / f"exp_{experiment_id}"))
            .orderBy("run_id")
            for home in (local, shared)
        ]
        assert_df_equality(*tables, allow_nan_equality=True)
        (folder,) = (shared / "warehouse" / "mlflow_parquet.db" / f"exp_{experiment_id}").iterdir()
        parquet = spark.read.parquet(str(folder)).orderBy("run_id")
        assert_df_equality(tables[0], parquet, allow_nan_equality=True, ignore_nullable=True)
        runs = MlflowClient(seeded.url).search_runs([experiment_id], max_results=1000)
        assert tables[0].count() == len(runs)
    print(f"standalone cluster job: {took:.1f} s, app {app['id']}")
