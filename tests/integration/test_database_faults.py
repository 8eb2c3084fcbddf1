"""Faults of MLflow's own database under ``--source db``, with the real parts: a PostgreSQL
server stopped and started again mid-read, and writers committing while the source reads.

The writers that prove the snapshot commit one change to two tables in one transaction
(``latest_metrics`` and ``tags`` of a run, to the same number): MLflow's own `log_batch`
commits params, metrics and tags in separate transactions, so no client call spans two
tables and could show a half-read run. A reader without one snapshot per batch sees the
metric of one commit and the tag of another within a few batches.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from mlflow_fun.errors import DatabaseUnavailableError
from mlflow_fun.extract.database.source import DatabaseSource
from mlflow_fun.extract.http import RetrySettings
from mlflow_fun.model import RunRecord
from tests.db_servers import PostgresServer, restartable_postgres

SCRIPT = Path(sys.executable).parent / "mlflow-fun"
RUNS = 240
PATIENT = RetrySettings(max_retries=8, backoff_factor=0.5, backoff_jitter=0.0, backoff_max=4.0)


def _seed(url: str, runs: int = RUNS) -> str:
    """One experiment of ``runs`` finished runs logged through MLflow's client; its id."""
    client = MlflowClient(tracking_uri=url)
    experiment_id = client.create_experiment("db-faults")
    now = int(time.time() * 1000)
    for n in range(runs):
        run = client.create_run(experiment_id, start_time=now + n, run_name=f"run-{n}")
        client.log_batch(
            run.info.run_id,
            metrics=[Metric("progress", 0.0, now, 0), Metric("rmse", 1.0 / (n + 1), now, 0)],
            params=[Param("alpha", str(n % 7 / 10)), Param("layers", str(n % 3))],
            tags=[RunTag("stage", "0")],
        )
        client.set_terminated(run.info.run_id, end_time=now + n + 1)
    return experiment_id


def _comparable(run: RunRecord) -> tuple[Any, ...]:
    metrics = {k: "nan" if math.isnan(v) else v for k, v in run.metrics.items()}
    return (run.run_id, sorted(run.info.items()), sorted(metrics.items()), run.params, run.tags)


@pytest.fixture(scope="module")
def postgres_store() -> Iterator[tuple[PostgresServer, str]]:
    """A PostgreSQL MLflow store of one experiment of `RUNS` runs: (server, experiment id)."""
    with restartable_postgres() as server:
        yield server, _seed(server.url)


def test_source_reads_through_a_restart(
    postgres_store: tuple[PostgresServer, str], caplog: pytest.LogCaptureFixture
) -> None:
    server, experiment_id = postgres_store
    with DatabaseSource(server.url) as source:
        expected = sorted(map(_comparable, source.iter_runs(experiment_id)))
    assert len(expected) == RUNS
    read: list[RunRecord] = []
    restarter = threading.Timer(2.0, server.start)
    source = DatabaseSource(server.url, page_size=20, run_rows_per_query=40, retry=PATIENT)
    with source, caplog.at_level(logging.INFO, logger="mlflow_fun.extract.database.reader"):
        for run in source.iter_runs(experiment_id):
            read.append(run)
            if len(read) == 50:  # mid-read: inside a keyset window, between two batches
                server.stop()
                restarter.start()
    restarter.join()
    assert sorted(map(_comparable, read)) == expected
    retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
    assert retries, "the read never met the stopped server"
    assert all(server.url.split("@")[0].split(":")[-1] not in r for r in retries)  # no password


def test_source_gives_up_in_one_line(postgres_store: tuple[PostgresServer, str]) -> None:
    server, experiment_id = postgres_store
    budget = RetrySettings(max_retries=2, backoff_factor=0.1, backoff_jitter=0.0)
    password = sa.make_url(server.url).password
    with DatabaseSource(server.url, page_size=20, retry=budget) as source:
        runs = source.iter_runs(experiment_id)
        next(runs)
        server.stop()
        try:
            with pytest.raises(DatabaseUnavailableError) as raised:
                list(runs)
        finally:
            server.start()
    message = str(raised.value)
    assert "\n" not in message and str(password) not in message
    port = sa.make_url(server.url).port
    assert message.startswith(
        f"cannot connect to database postgresql+psycopg2://mlflow@127.0.0.1:{port}/mlflow: "
        f'connection to server at "127.0.0.1", port {port} failed: Connection refused'
    )
    assert message.endswith(
        "(tried 3 times; MLFLOW_HTTP_REQUEST_MAX_RETRIES and MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR "
        "set how long to wait)"
    )


def test_job_reads_through_a_restart(
    postgres_store: tuple[PostgresServer, str], tmp_path: Path
) -> None:
    """`mlflow-fun build --source db`: PostgreSQL restarts once the job has read its first
    batch; the job retries and its table holds every run with its values."""
    server, experiment_id = postgres_store
    env = dict(
        os.environ, MLFLOW_HTTP_REQUEST_MAX_RETRIES="8", MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR="0.5"
    )
    data_dir = tmp_path / "data"
    argv = [str(SCRIPT), "--log-level", "DEBUG", "build", "--source", "db", "--no-progress",
            "--connection", server.url, "--experiment-ids", experiment_id,
            "--page-size", "10", "--data-dir", str(data_dir)]  # fmt: skip
    job = subprocess.Popen(
        argv, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    assert job.stderr is not None
    lines, restarted = [], False
    for line in job.stderr:
        lines.append(line)
        if not restarted and "run batch runs=" in line:
            server.stop()
            time.sleep(2.0)
            server.start()
            restarted = True
    assert job.wait(timeout=600) == 0, "".join(lines[-40:])
    assert restarted
    assert any("retry 1 of 8" in line for line in lines), "".join(lines[-40:])
    with DatabaseSource(server.url) as source:
        expected = sorted(
            (run.run_id, run.metrics["rmse"], run.params["alpha"], run.tags["stage"])
            for run in source.iter_runs(experiment_id)
        )
    query = (
        f"select run_uuid, _m_rmse, _p_alpha, _t_stage from exp_{experiment_id} order by run_uuid"
    )
    read = [str(SCRIPT), "sql", "--data-dir", str(data_dir), "--output", "csv", query]
    done = subprocess.run(read, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = list(csv.reader(io.StringIO(done.stdout)))[1:]
    assert len(rows) == RUNS
    table = [(r[0], float(r[1]), r[2], r[3]) for r in rows]
    assert table == [(i, m, str(float(a)), t) for i, m, a, t in expected]


def _sqlite_store(tmp_path: Path) -> tuple[str, str]:
    url = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return url, _seed(url, runs=60)


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_a_batch_is_one_state_while_writers_commit(
    store: str, postgres_store: tuple[PostgresServer, str], tmp_path: Path
) -> None:
    """Each run read equals one committed state: its ``progress`` metric and ``stage`` tag,
    changed together by every writer's transaction, always agree."""
    if store == "sqlite":
        url, experiment_id = _sqlite_store(tmp_path)
        write = _writer(url, connect_args={"timeout": 30})
    else:
        server, experiment_id = postgres_store
        url, write = server.url, _writer(server.url, pool_size=2)
    stop = threading.Event()
    commits = [0]

    def writer() -> None:
        while not stop.is_set():
            commits[0] += 1
            write(commits[0])

    threads = [threading.Thread(target=writer) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        seen = 0
        with DatabaseSource(url, page_size=5, run_rows_per_query=20) as source:
            for _ in range(8):
                for run in source.iter_runs(experiment_id):
                    assert run.metrics["progress"] == float(run.tags["stage"]), run.run_id
                    seen += 1
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert seen == 8 * (60 if store == "sqlite" else RUNS)
    assert commits[0] > 100, commits  # the writers really ran during the reads


def _writer(url: str, **engine_args: Any) -> Callable[[int], None]:
    engine = sa.create_engine(url, **engine_args)
    return lambda n: _write(engine, n)


def _write(engine: sa.Engine, n: int) -> None:
    """One transaction: a run's latest ``progress`` and its ``stage`` tag both become ``n``."""
    with engine.begin() as conn:
        run_uuid = conn.execute(
            sa.text("select run_uuid from runs order by run_uuid limit 1 offset :k"),
            {"k": n % 60},
        ).scalar_one()
        conn.execute(
            sa.text(
                "update latest_metrics set value = :v where run_uuid = :r and key = 'progress'"
            ),
            {"v": float(n), "r": run_uuid},
        )
        conn.execute(
            sa.text("update tags set value = :v where run_uuid = :r and key = 'stage'"),
            {"v": str(n), "r": run_uuid},
        )
