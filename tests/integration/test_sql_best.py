"""SQL on MLflow's own database: sql_best, main_sql and DatabaseSource against REST.

Three stores, each behind a real ``mlflow server`` that created MLflow's schema: the
session's sqlite server, a throwaway PostgreSQL and a throwaway MariaDB. The runs are
logged through MLflow's client; the answers read from the database must equal the REST
answers.
"""

from __future__ import annotations

import math
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from mlflow_fun.cli.main_sql import main
from mlflow_fun.errors import (
    ConfigError,
    DatabaseError,
    ExperimentNotFoundError,
    MetricNotFoundError,
    SchemaMismatchError,
)
from mlflow_fun.extract.database.schema import safe_url
from mlflow_fun.extract.database.source import DatabaseSource
from mlflow_fun.extract.local_server import LocalMlflowServer, free_port
from mlflow_fun.extract.open import open_source
from mlflow_fun.extract.rest import RestSource
from mlflow_fun.model import RunRecord
from mlflow_fun.query.server import get_best_run_fast
from mlflow_fun.query.sql import get_best_run
from tests.db_servers import mariadb_server, postgres_server
from tests.seed import Seeded, seed_all

MAX_DOUBLE = 1.7976931348623157e308  # how MLflow stores +inf


@dataclass
class Store:
    """One database behind one tracking server, with the runs logged to it."""

    name: str
    db_url: str
    server_url: str
    seeded: Seeded
    extremes: str
    extreme_runs: dict[str, str]

    def experiment_ids(self) -> list[str]:
        s = self.seeded
        return [s.empty, s.paged, s.typed, s.odd_keys, s.best, self.extremes]


def _log_extremes(url: str) -> tuple[str, dict[str, str]]:
    """Infinities, a latest value that is NaN, a history whose latest is not its maximum,
    an unfinished run, an empty tag, experiment tags and a deleted experiment."""
    client = MlflowClient(url)
    experiment_id = client.create_experiment("sql-extremes", tags={"team": "ü-blue"})
    history = {
        "x1": [("big", math.inf, 0), ("neg", -math.inf, 0), ("late", 0.1, 0), ("late", math.nan, 1)]
        + [("hist", 1.0, 0), ("hist", 9.0, 1), ("hist", 5.0, 2)],
        "x2": [("big", 1.0, 0), ("neg", -1.0, 0), ("late", 0.2, 0), ("hist", 7.0, 0)],
    }
    runs: dict[str, str] = {}
    for start, (name, points) in enumerate(history.items(), start=100):
        run_id = client.create_run(experiment_id, start_time=start, run_name=name).info.run_id
        client.log_batch(
            run_id,
            metrics=[Metric(k, v, start, step) for k, v, step in points],
            params=[Param("größe", "ß"), Param("empty", "")],
            tags=[RunTag("blank", "")],
        )
        client.set_terminated(run_id, end_time=start + 10)
        runs[name] = run_id
    runs["running"] = client.create_run(experiment_id, start_time=300).info.run_id
    client.delete_experiment(client.create_experiment("sql-gone"))
    return experiment_id, runs


@pytest.fixture(scope="module")
def sqlite_store(mlflow_server: LocalMlflowServer, seeded: Seeded) -> Store:
    db_url = f"sqlite:///{mlflow_server.root / 'mlflow.db'}"
    extremes, runs = _log_extremes(seeded.url)
    return Store("sqlite", db_url, seeded.url, seeded, extremes, runs)


def _served_store(name: str, db_url: str, root: Path) -> Iterator[Store]:
    with LocalMlflowServer(root, backend_store_uri=db_url) as server:
        seeded = seed_all(server.url)
        extremes, runs = _log_extremes(server.url)
        yield Store(name, db_url, server.url, seeded, extremes, runs)


@pytest.fixture(scope="module")
def postgresql_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    with postgres_server() as db_url:
        yield from _served_store("postgresql", db_url, tmp_path_factory.mktemp("mlflow_pg"))


@pytest.fixture(scope="module")
def mariadb_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    with mariadb_server() as db_url:
        yield from _served_store("mariadb", db_url, tmp_path_factory.mktemp("mlflow_mariadb"))


@pytest.fixture(scope="module", params=["sqlite", "postgresql", "mariadb"])
def store(request: pytest.FixtureRequest) -> Store:
    return request.getfixturevalue(f"{request.param}_store")  # type: ignore[no-any-return]


def _comparable(run: RunRecord) -> tuple[Any, ...]:
    """A run as a tuple; NaN (never equal to itself) as the string 'nan'."""
    metrics = {k: "nan" if math.isnan(v) else v for k, v in run.metrics.items()}
    return (run.run_id, sorted(run.info.items()), sorted(metrics.items()), run.params, run.tags)


# --- best run: SQL equals REST -----------------------------------------------------------


BEST_CASES = [
    ("rmse", True, "a", 0.5),  # tie with b: earliest start_time; NaN (c), deleted (f) skipped
    ("_m_rmse", False, "g", 0.9),  # tie with e: earliest start_time
    ("r2", False, "c", 0.95),  # f (0.99) is deleted
    ("r2", True, "e", -1.0),
]
EXTREME_CASES = [
    ("big", False, "x1", MAX_DOUBLE),  # +inf comes back as the largest double
    ("neg", True, "x1", -MAX_DOUBLE),
    ("late", True, "x2", 0.2),  # x1's 0.1 is history: its latest value is NaN
    ("hist", False, "x2", 7.0),  # x1's 9.0 is history: its latest value is 5.0
]


@pytest.mark.parametrize(("metric", "ascending", "winner", "value"), BEST_CASES)
def test_sql_best_equals_rest(
    store: Store, metric: str, ascending: bool, winner: str, value: float
) -> None:
    eid = store.seeded.best
    expected = (store.seeded.best_runs[winner], value)
    assert get_best_run(store.db_url, eid, metric, ascending) == expected
    assert get_best_run_fast(store.server_url, None, eid, metric, ascending) == expected


@pytest.mark.parametrize(("metric", "ascending", "winner", "value"), EXTREME_CASES)
def test_sql_best_latest_values_and_infinities(
    store: Store, metric: str, ascending: bool, winner: str, value: float
) -> None:
    expected = (store.extreme_runs[winner], value)
    assert get_best_run(store.db_url, store.extremes, metric, ascending) == expected
    assert get_best_run_fast(store.server_url, None, store.extremes, metric, ascending) == expected


def test_sql_best_errors(store: Store) -> None:
    eid = store.seeded.best
    with pytest.raises(ExperimentNotFoundError, match="experiment id '424242' does not exist"):
        get_best_run(store.db_url, "424242", "rmse")
    with pytest.raises(ExperimentNotFoundError, match="'1 OR 1=1' does not exist"):
        get_best_run(store.db_url, "1 OR 1=1", "rmse")
    with pytest.raises(
        MetricNotFoundError, match=f"no run of experiment {eid} has a value of metric 'mae'"
    ):
        get_best_run(store.db_url, eid, "mae")
    with pytest.raises(MetricNotFoundError, match="not a valid MLflow metric key"):
        get_best_run(store.db_url, eid, "rmse; drop table x")
    # Valid characters that look like SQL are a key like any other: bound, never run.
    with pytest.raises(MetricNotFoundError, match="metric 'rmse -- or true'"):
        get_best_run(store.db_url, eid, "rmse -- or true")
    assert get_best_run(store.db_url, eid, "rmse")[1] == 0.5  # the tables are still there


# --- DatabaseSource equals RestSource ------------------------------------------------------


@pytest.mark.parametrize("view_type", ["ACTIVE_ONLY", "ALL"])
def test_database_source_equals_rest_run_for_run(store: Store, view_type: str) -> None:
    rest = open_source(store.server_url)
    assert isinstance(rest, RestSource)
    with DatabaseSource(store.db_url, page_size=2, run_rows_per_query=3) as database:
        for eid in store.experiment_ids():
            by_rest = [_comparable(r) for r in rest.iter_runs(eid, run_view_type=view_type)]
            by_db = [_comparable(r) for r in database.iter_runs(eid, run_view_type=view_type)]
            assert by_db == by_rest, f"experiment {eid}"
        assert len(by_db) == 3  # the extremes: x1, x2 and the running run
        both = [store.seeded.best, store.seeded.paged]
        assert [r.run_id for r in database.iter_runs(both, max_results=10)] == [
            r.run_id for r in rest.iter_runs(both, max_results=10)
        ]


def test_database_source_records_hold_what_mlflow_logged(store: Store) -> None:
    with DatabaseSource(store.db_url) as database:
        runs = {r.run_id: r for r in database.iter_runs(store.extremes)}
        deleted = list(database.iter_runs(store.seeded.best, run_view_type="DELETED_ONLY"))
    x1 = runs[store.extreme_runs["x1"]]
    assert x1.metrics["big"] == MAX_DOUBLE and x1.metrics["hist"] == 5.0
    assert math.isnan(x1.metrics["late"])
    assert x1.params == {"größe": "ß", "empty": ""} and x1.tags["blank"] == ""
    assert x1.info["run_name"] == "x1" and x1.info["end_time"] == 110
    running = runs[store.extreme_runs["running"]]
    assert (running.info["status"], running.info["end_time"], running.metrics) == (
        "RUNNING",
        None,
        {},
    )
    assert [r.run_id for r in deleted] == [store.seeded.deleted_run_id]
    assert deleted[0].info["lifecycle_stage"] == "deleted"


def test_database_source_experiments_equal_rest(store: Store) -> None:
    rest = open_source(store.server_url)
    with DatabaseSource(store.db_url) as database:
        for view_type in ("ACTIVE_ONLY", "DELETED_ONLY", "ALL"):
            assert list(database.iter_experiments(view_type)) == list(
                rest.iter_experiments(view_type)
            )
        extremes = database.get_experiment(store.extremes)
        assert extremes == rest.get_experiment(store.extremes)
        assert extremes.tags == {"team": "ü-blue"}
        odd = database.get_experiment_by_name("odd 'keys' ü")
        assert odd == rest.get_experiment_by_name("odd 'keys' ü")
        with pytest.raises(ExperimentNotFoundError, match="experiment id '987654' does not exist"):
            database.get_experiment("987654")
        with pytest.raises(ExperimentNotFoundError, match="no experiment named 'nope'"):
            database.get_experiment_by_name("nope")


def test_database_source_refuses_filters_and_orders(sqlite_store: Store) -> None:
    database = DatabaseSource(sqlite_store.db_url)
    assert database.tracking_uri == sqlite_store.db_url
    with pytest.raises(ConfigError, match="neither filter_string nor order_by"):
        next(database.iter_runs(sqlite_store.seeded.best, filter_string="metrics.rmse < 1"))
    with pytest.raises(ConfigError, match="neither filter_string nor order_by"):
        next(database.iter_runs(sqlite_store.seeded.best, order_by=["metrics.rmse"]))
    with pytest.raises(ConfigError, match="view type 'SOME'"):
        next(database.iter_runs(sqlite_store.seeded.best, run_view_type="SOME"))
    with pytest.raises(ExperimentNotFoundError, match="'x' does not exist"):
        next(database.iter_runs("x"))
    assert list(database.iter_runs([])) == []
    database.close()


def test_an_engine_is_used_and_left_open(sqlite_store: Store) -> None:
    engine = sa.create_engine(sqlite_store.db_url)
    eid = sqlite_store.seeded.best
    assert get_best_run(engine, eid, "r2", ascending=False) == (
        sqlite_store.seeded.best_runs["c"],
        0.95,
    )
    with DatabaseSource(engine) as database:
        assert len(list(database.iter_runs(eid))) == 7
    with engine.connect() as conn:  # not disposed by either
        assert conn.execute(sa.text("select count(*) from experiments")).scalar()
    engine.dispose()


# --- schema, connection and URL errors ---------------------------------------------------


def _copy_sqlite(store: Store, target: Path) -> str:
    """A consistent copy of the live sqlite store (the server may be writing)."""
    source = sqlite3.connect(store.db_url.removeprefix("sqlite:///"))
    copy = sqlite3.connect(target)
    source.backup(copy)
    source.close()
    copy.close()
    return f"sqlite:///{target}"


def _alter(db_url: str, statement: str) -> None:
    connection = sqlite3.connect(db_url.removeprefix("sqlite:///"))
    with connection:
        connection.execute(statement)
    connection.close()


def test_wrong_schemas_are_named(sqlite_store: Store, tmp_path: Path) -> None:
    eid = sqlite_store.seeded.best
    empty = tmp_path / "empty.db"
    empty.touch()
    with pytest.raises(SchemaMismatchError, match="missing runs, latest_metrics, experiments"):
        get_best_run(f"sqlite:///{empty}", eid, "rmse")
    with pytest.raises(SchemaMismatchError, match="missing runs, latest_metrics, params"):
        DatabaseSource(f"sqlite:///{empty}").get_experiment(eid)

    copy = _copy_sqlite(sqlite_store, tmp_path / "copy.db")
    _alter(copy, "alter table latest_metrics rename column is_nan to nan_flag")
    with pytest.raises(SchemaMismatchError, match="missing latest_metrics.is_nan"):
        get_best_run(copy, eid, "rmse")


@pytest.mark.parametrize(
    "revision_change",
    [
        "update alembic_version set version_num = '97727af70f4d'",  # MLflow 2.0's time
        "update alembic_version set version_num = 'ffffffffffff'",  # a newer MLflow's
        "drop table alembic_version",
    ],
)
def test_any_revision_with_the_columns_read_is_read(
    sqlite_store: Store, tmp_path: Path, revision_change: str
) -> None:
    eid = sqlite_store.seeded.best
    copy = _copy_sqlite(sqlite_store, tmp_path / "copy.db")
    _alter(copy, revision_change)
    assert get_best_run(copy, eid, "rmse") == (sqlite_store.seeded.best_runs["a"], 0.5)
    assert len(list(DatabaseSource(copy).iter_runs(eid))) == len(
        list(DatabaseSource(sqlite_store.db_url).iter_runs(eid))
    )


def test_unreachable_databases_are_named_without_password(
    postgresql_store: Store, mariadb_store: Store, tmp_path: Path
) -> None:
    port = free_port()
    url = f"postgresql+psycopg2://mlflow:s3cret-pw@127.0.0.1:{port}/mlflow"
    with pytest.raises(DatabaseError) as refused:
        get_best_run(url, "1", "rmse")
    message = str(refused.value)
    assert message.startswith(
        f"cannot connect to database postgresql+psycopg2://mlflow@127.0.0.1:{port}/mlflow: "
    )
    assert "s3cret" not in message
    for live in (postgresql_store, mariadb_store):
        wrong = sa.make_url(live.db_url).set(password="wrong-pw")
        with pytest.raises(DatabaseError, match="cannot connect to database") as denied:
            get_best_run(wrong.render_as_string(hide_password=False), "1", "rmse")
        assert "wrong-pw" not in str(denied.value)
        assert safe_url(live.db_url) in str(denied.value)
    with pytest.raises(DatabaseError, match="the sqlite file .*missing.db does not exist"):
        get_best_run(f"sqlite:///{tmp_path / 'missing.db'}", "1", "rmse")
    assert not (tmp_path / "missing.db").exists()
    with pytest.raises(ConfigError, match="not an SQLAlchemy database URL"):
        get_best_run("not a url", "1", "rmse")


# --- main_sql ----------------------------------------------------------------------------


def _main_sql(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlflow_fun.metrics.sql.main_sql", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_main_sql_prints_the_best_run(sqlite_store: Store) -> None:
    eid = sqlite_store.seeded.best
    args = ["--connection", sqlite_store.db_url, "--experiment_id", eid]
    result = _main_sql(*args, "--metric", "rmse")
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        f"('{sqlite_store.seeded.best_runs['a']}', 0.5)\n",
        "",
    )
    result = _main_sql(*args, "--metric", "r2", "--order", "desc")
    assert result.stdout == f"('{sqlite_store.seeded.best_runs['c']}', 0.95)\n"
    result = _main_sql(*args, "--metric", "r2", "--descending")  # the seed's flag
    assert result.stdout == f"('{sqlite_store.seeded.best_runs['c']}', 0.95)\n"
    assert result.stderr == "main_sql: --descending is deprecated; use --order desc\n"
    result = _main_sql(*args, "--metric", "mae")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.splitlines() == [
        f"main_sql: error: no run of experiment {eid} has a value of metric 'mae' that is not NaN"
    ]


def test_main_sql_in_process_on_postgresql(
    postgresql_store: Store, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    eid = postgresql_store.seeded.best
    monkeypatch.setenv("MLFLOW_FUN_DB_URL", postgresql_store.db_url)  # no password in argv
    assert main(["--experiment_id", eid, "--metric", "r2", "--ascending"]) == 0
    assert capsys.readouterr().out == f"('{postgresql_store.seeded.best_runs['e']}', -1.0)\n"
    assert main(["--experiment_id", "424242", "--metric", "r2"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        "main_sql: error: experiment id '424242' does not exist at "
        f"{safe_url(postgresql_store.db_url)}"
    ]
    password = sa.make_url(postgresql_store.db_url).password
    assert password and password not in captured.err


def test_best_source_db_reads_the_url_from_mlflow_fun_db_url(
    sqlite_store: Store, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow_fun.cli.main import main as cli_main

    argv = ["best", "--source", "db", "--experiment-id", sqlite_store.seeded.best]
    monkeypatch.delenv("MLFLOW_FUN_DB_URL", raising=False)
    assert cli_main([*argv, "--metric", "rmse"]) == 2
    assert capsys.readouterr().err == (
        "mlflow-fun: error: --source db needs --connection (an SQLAlchemy URL) or "
        "MLFLOW_FUN_DB_URL\n"
    )
    monkeypatch.setenv("MLFLOW_FUN_DB_URL", sqlite_store.db_url)
    assert cli_main([*argv, "--metric", "rmse"]) == 0
    assert capsys.readouterr().out == f"('{sqlite_store.seeded.best_runs['a']}', 0.5)\n"
