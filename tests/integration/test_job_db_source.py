"""The job with ``--source db``: the same tables as from the tracking server, and bad input.

The job runs twice on each store, once through the tracking server's REST API and once on
the database under it, into two metastore databases; every ``exp_<id>`` table must be
identical (rows, columns, types, comments), and so must ``metric_history``. The stores:
the session's sqlite server and a throwaway PostgreSQL whose password comes from
``MLFLOW_FUN_DB_PASSWORD``.
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from chispa import assert_df_equality
from mlflow import MlflowClient
from mlflow.entities import DatasetInput, InputTag, Metric, Param, RunTag

from mlflow_fun.config import JobConfig
from mlflow_fun.extract.database import source as db_source
from mlflow_fun.extract.database.schema import PASSWORD_ENV, safe_url
from mlflow_fun.extract.http import strip_credentials
from mlflow_fun.extract.local_server import LocalMlflowServer, free_port
from mlflow_fun.load.job import run_job
from tests.db_servers import postgres_server
from tests.seed import Seeded, seed_all

SCRIPT = Path(sys.executable).parent / "mlflow-fun"


@dataclass
class JobStore:
    """A database, the tracking server over it, and the experiments the job loads."""

    name: str
    db_url: str
    server_url: str
    experiment_ids: tuple[str, ...]


def _log_extremes(url: str) -> str:
    """Infinities, a NaN latest value, a running run, a deleted run, an empty tag, a param
    whose values need a STRING column and keys that need renaming."""
    client = MlflowClient(url)
    experiment_id = client.create_experiment("job-db-extremes")
    plan: list[tuple[str, list[tuple[str, float, int]], dict[str, str]]] = [
        ("x1", [("big", math.inf, 0), ("late", 0.1, 0), ("late", math.nan, 1)], {"p": "1"}),
        ("x2", [("big", -math.inf, 0), ("train/loss", 0.5, 0)], {"p": "abc", "größe": "ß"}),
        ("x3", [("late", 2.0, 0)], {"p": "2.5", "LR": "0.1", "lr": "1"}),
    ]
    for start, (name, points, params) in enumerate(plan, start=100):
        run_id = client.create_run(experiment_id, start_time=start, run_name=name).info.run_id
        client.log_batch(
            run_id,
            metrics=[Metric(k, v, start, step) for k, v, step in points],
            params=[Param(k, v) for k, v in params.items()],
            tags=[RunTag("blank", ""), RunTag("team/name", "blue")],
        )
        client.log_inputs(run_id, datasets=_inputs(name))
        if name != "x3":
            client.set_terminated(run_id, end_time=start + 10)
    client.delete_run(client.create_run(experiment_id, start_time=500).info.run_id)
    return experiment_id


def _inputs(run_name: str) -> list[DatasetInput]:
    """Dataset inputs: x1 trains on one dataset and tests on another, x2 trains, x3 none."""
    import pandas as pd
    from mlflow.data import from_pandas

    frame = pd.DataFrame({"alcohol": [9.5, 10.1], "quality": [5, 6]})
    plan = {"x1": [("wine-train", "train"), ("wine-test", "test")], "x2": [("wine-train", "train")]}
    return [
        DatasetInput(
            from_pandas(frame, source="file:///data/wine.csv", name=n)._to_mlflow_entity(),
            tags=[InputTag("mlflow.data.context", context)],
        )
        for n, context in plan.get(run_name, [])
    ]


def _experiment_ids(seeded: Seeded, extremes: str) -> tuple[str, ...]:
    return (seeded.typed, seeded.odd_keys, seeded.best, seeded.empty, extremes)


@pytest.fixture(scope="module")
def sqlite_job_store(mlflow_server: LocalMlflowServer, seeded: Seeded) -> JobStore:
    db_url = f"sqlite:///{mlflow_server.root / 'mlflow.db'}"
    ids = _experiment_ids(seeded, _log_extremes(seeded.url))
    return JobStore("sqlite", db_url, seeded.url, ids)


@pytest.fixture(scope="module")
def postgresql_job_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JobStore]:
    root = tmp_path_factory.mktemp("mlflow_pg_job")
    with postgres_server() as db_url, LocalMlflowServer(root, backend_store_uri=db_url) as server:
        seeded = seed_all(server.url)
        ids = _experiment_ids(seeded, _log_extremes(server.url))
        yield JobStore("postgresql", db_url, server.url, ids)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def job_store(request: pytest.FixtureRequest) -> JobStore:
    return request.getfixturevalue(f"{request.param}_job_store")  # type: ignore[no-any-return]


def _without_password(db_url: str) -> tuple[str, str]:
    """The URL without its password, and the password ('' if none)."""
    url = sa.make_url(db_url)
    bare = sa.engine.URL.create(
        url.drivername, url.username, None, url.host, url.port, url.database, url.query
    )
    return bare.render_as_string(hide_password=False), url.password or ""


def test_db_tables_equal_rest_tables(
    spark: Any,
    job_store: JobStore,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ids = job_store.experiment_ids
    rest_db, db_db = f"jobsrc_rest_{job_store.name}", f"jobsrc_db_{job_store.name}"
    connection, password = _without_password(job_store.db_url)
    if password:  # PostgreSQL: the password only in the environment
        monkeypatch.setenv(PASSWORD_ENV, password)
    by_server = JobConfig(
        database=rest_db,
        experiment_ids=ids,
        tracking_uri=job_store.server_url,
        full_refresh=True,
        with_history=True,
    )
    by_database = replace(by_server, database=db_db, source="db", connection=connection)
    rest = run_job(by_server, spark=spark, progress=False)
    # as over many experiments: a run index, and the small experiments read in groups
    monkeypatch.setattr(db_source, "INDEX_FROM_EXPERIMENTS", 1)
    with caplog.at_level(logging.DEBUG, logger="mlflow_fun"):
        direct = run_job(by_database, spark=spark, progress=False)
    assert f"run group read experiments={len(ids)} " in caplog.text
    counts = [(r.experiment_id, r.status, r.run_count, r.column_count) for r in rest.results]
    assert [(r.experiment_id, r.status, r.run_count, r.column_count) for r in direct.results] == (
        counts
    )
    assert [c[1] for c in counts] == ["ok"] * len(ids)
    assert counts[-1][2] == 3 and counts[-2][2] == 0  # extremes: 3 active runs; empty: none
    _assert_same_tables(spark, rest_db, db_db, ids)
    _assert_same_inputs(spark, rest_db, db_db, job_store)
    status = spark.table(f"{db_db}.mlflow_status").collect()
    # The status table strips the user as well as the password.
    assert {r.tracking_uri for r in status} == {strip_credentials(safe_url(job_store.db_url))}
    assert {(r.experiment_id, r.status) for r in status} == {(i, "ok") for i in ids}
    if password:
        assert safe_url(job_store.db_url) == connection
        assert all(password not in str(value) for r in status for value in r)
        assert password not in caplog.text
        assert f"tracking_uri={connection}" in caplog.text

    # The job's default refresh (incremental) after changes: x3 finished, x4 new.
    extremes = ids[-1]
    client = MlflowClient(job_store.server_url)
    running = client.search_runs([extremes], filter_string="attributes.run_name = 'x3'")[0]
    client.set_terminated(running.info.run_id, end_time=200)
    new_run = client.create_run(extremes, start_time=300, run_name="x4").info.run_id
    client.log_batch(new_run, metrics=[Metric("big", 3.0, 300, 0)], params=[Param("q", "7")])
    # as over many experiments (the index, as above): the database source names the runs
    # from its run index, leaving out those the state holds settled (x1, x2: finished, in
    # the margin), unread
    incremental = [
        run_job(replace(c, experiment_ids=(extremes,), full_refresh=False), spark=spark)
        for c in (by_server, by_database)
    ]
    pulled = [i.results[0].runs_pulled for i in incremental]
    assert pulled[0] - pulled[1] == 2  # x1 and x2: pulled again by REST, not by the index
    # Whether this refresh merges or falls back to a full one is the job's choice; both
    # sources must lead to the same choice and the same tables.
    modes = [[(r.mode, r.status, r.run_count) for r in i.results] for i in incremental]
    assert modes[0] == modes[1] and modes[0][0][1:] == ("ok", 4)
    _assert_same_tables(spark, rest_db, db_db, (extremes,))


def _assert_same_tables(spark: Any, rest_db: str, db_db: str, ids: tuple[str, ...]) -> None:
    """The exp_<id> tables and metric_history of both databases are identical."""
    for experiment_id in ids:
        by_rest = spark.table(f"{rest_db}.exp_{experiment_id}").orderBy("run_id")
        by_db = spark.table(f"{db_db}.exp_{experiment_id}").orderBy("run_id")
        assert_df_equality(by_db, by_rest, allow_nan_equality=True)
        assert [f.metadata for f in by_db.schema] == [f.metadata for f in by_rest.schema]
    order = ["run_id", "key", "timestamp", "step", "value"]
    history = spark.table(f"{db_db}.metric_history").orderBy(order)
    assert_df_equality(
        history, spark.table(f"{rest_db}.metric_history").orderBy(order), allow_nan_equality=True
    )
    assert history.count() > 20


def _assert_same_inputs(spark: Any, rest_db: str, db_db: str, store: JobStore) -> None:
    """The run_inputs view of both databases holds MLflow's own dataset inputs."""
    runs = MlflowClient(store.server_url).search_runs([store.experiment_ids[-1]])
    expected = sorted(
        (run.info.run_id, i.dataset.name, i.dataset.digest, i.dataset.source_type, t.value)
        for run in runs
        for i in run.inputs.dataset_inputs
        for t in i.tags
        if t.key == "mlflow.data.context"
    )
    assert sorted((row[1], row[4]) for row in expected) == [
        ("wine-test", "test"),
        ("wine-train", "train"),
        ("wine-train", "train"),
    ]
    columns = "run_id, dataset_name, dataset_digest, dataset_source_type, context"
    for database in (rest_db, db_db):
        rows = spark.sql(f"select {columns} from {database}.run_inputs").collect()
        assert sorted(tuple(row) for row in rows) == expected, database


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def _not_mlflow(path: Path) -> str:
    connection = sqlite3.connect(path)
    with connection:
        connection.execute("create table customers (id integer)")
    connection.close()
    return f"sqlite:///{path}"


def test_bad_connections_are_one_line_and_write_nothing(tmp_path: Path) -> None:
    port = free_port()
    missing = tmp_path / "missing.db"
    cases = [
        (
            "not a url",
            "mlflow-fun: error: the connection is not an SQLAlchemy database URL; expected e.g. "
            "sqlite:////path/mlflow.db, postgresql+psycopg2://user:password@host/db or "
            "mysql+pymysql://user:password@host/db",
        ),
        (
            "nosuchdb://u:s3cret-pw@h/db",
            "mlflow-fun: error: no SQLAlchemy driver for nosuchdb://u@h/db: Can't load plugin: "
            "sqlalchemy.dialects:nosuchdb. Install it, e.g. `pip install psycopg2-binary` "
            "(postgresql+psycopg2) or `pip install PyMySQL` (mysql+pymysql)",
        ),
        (
            f"postgresql+psycopg2://mlflow:s3cret-pw@127.0.0.1:{port}/mlflow",
            f"mlflow-fun: error: cannot connect to database postgresql+psycopg2://mlflow@"
            f'127.0.0.1:{port}/mlflow: connection to server at "127.0.0.1", port {port} failed: '
            "Connection refused (tried 3 times; MLFLOW_HTTP_REQUEST_MAX_RETRIES and "
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR set how long to wait)",
        ),
        (
            f"sqlite:///{missing}",
            f"mlflow-fun: error: cannot open database sqlite:///{missing}: the sqlite file "
            f"{missing} does not exist",
        ),
        (
            _not_mlflow(tmp_path / "other.db"),
            f"mlflow-fun: error: database sqlite:///{tmp_path / 'other.db'} is not an MLflow "
            "tracking store that mlflow-fun can read: missing runs, latest_metrics, params, "
            "tags, experiments, experiment_tags, metrics. Point at the database of `mlflow server "
            "--backend-store-uri` (MLflow 2.0 or newer), or create its schema with "
            "`mlflow db upgrade <url>`",
        ),
    ]
    for number, (connection, message) in enumerate(cases):
        data_dir = tmp_path / f"data{number}"
        result = _cli(
            "build", "--data_dir", str(data_dir), "--source", "db", "--connection", connection
        )
        assert _one_error_line(result) == message
        assert "s3cret" not in result.stderr
        assert os.listdir(data_dir) == []
    assert not missing.exists()


def test_password_from_the_environment_on_postgresql(
    postgresql_job_store: JobStore, tmp_path: Path
) -> None:
    connection, password = _without_password(postgresql_job_store.db_url)
    url = sa.make_url(connection)
    build = ["build", "--data_dir", str(tmp_path / "d"), "--source", "db"]
    wrong = _cli(*build, "--connection", connection, env={PASSWORD_ENV: "wrong-pw"})
    assert _one_error_line(wrong) == (
        f"mlflow-fun: error: cannot connect to database {connection}: connection to server at "
        f'"{url.host}", port {url.port} failed: FATAL:  password authentication failed for user '
        '"mlflow"'
    )
    assert "wrong-pw" not in wrong.stderr
    unknown = _cli(*build, "--connection", connection, "--experiment_ids", "424242")
    assert "no password supplied" in _one_error_line(unknown)
    unknown = _cli(
        *build, "--connection", connection, "--experiment_ids", "424242",
        env={PASSWORD_ENV: password},
    )  # fmt: skip
    assert _one_error_line(unknown) == (
        f"mlflow-fun: error: experiment id(s) 424242 do not exist at {connection}; "
        "nothing was written"
    )
    assert password not in unknown.stderr
    in_url = sa.make_url(postgresql_job_store.db_url).render_as_string(hide_password=False)
    overridden = _cli(
        *build, "--connection", in_url, "--experiment_ids", "424242",
        env={PASSWORD_ENV: "wrong-pw"},
    )  # fmt: skip
    assert "experiment id(s) 424242 do not exist" in _one_error_line(overridden)
    assert os.listdir(tmp_path / "d") == []
