"""The SQL endpoint (`mlflow-fun serve`) queried by Beeline, and the analyst views.

a) Embedded Derby metastore: the job builds the tables and views, exits, then the endpoint
   serves them; Beeline's answers equal Spark SQL's on the same Delta files and the known
   seeded values.
b) Metastore in PostgreSQL: the job refreshes a table while the endpoint answers queries;
   afterwards the endpoint sees the new run.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from sqlalchemy.engine import make_url

from mlflow_fun.extract.local_server import free_port
from mlflow_fun.load.directions import DEFAULT_DIRECTIONS, load_metric_directions
from mlflow_fun.load.views import create_analyst_views, resolve_directions
from tests.db_servers import postgres_server
from tests.seed import Seeded, _run
from tests.sql_endpoint import REPO, beeline, beeline_all, beeline_session, build_command, serving

CLASSIC = "select run_uuid, round(_m_rmse,4) as _m_rmse, _p_alpha from {} order by _m_rmse"
ODD_METRICS_QUERY = (
    "select run_id, metric, value from {database}metrics_long where experiment_id = '{id}' "
    "order by run_id, metric"
)


def _text(value: Any) -> str:
    """A Python value as Beeline prints it (Java's text form)."""
    if value is None:
        return "NULL"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        assert value == 0 or 1e-3 <= abs(value) < 1e7, value  # where Java's form is repr's
        return repr(value)
    return str(value)


def _timestamp_text(value: str) -> str:
    """Spark's ``cast(ts as string)`` as java.sql.Timestamp prints it (``.0`` when whole)."""
    return value if "." in value else value + ".0"


def _rows(df: Any) -> list[list[str]]:
    return [[_text(v) for v in row] for row in df.collect()]


def _build(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        build_command(*args), capture_output=True, text=True, timeout=600, cwd=REPO, env=env
    )


def _cli(*args: str, env: dict[str, str]) -> str:
    command = [str(Path(sys.executable).parent / "mlflow-fun"), *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _directions_of(spark: Any, database: str, keys: list[str], **kwargs: Any) -> dict[str, str]:
    """metric key -> direction, as ``best_runs`` ranks a one-run ``runs`` table of ``keys``."""
    import datetime as dt

    from mlflow_fun.load.side_tables import runs_schema

    spark.sql(f"drop database if exists {database} cascade")
    spark.sql(f"create database {database}")
    start = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    run = ("r1", "1", "one", "u", "FINISHED", "active", start, start, "file:/a",
           {key: 1.0 for key in keys}, {}, {}, [])  # fmt: skip
    spark.createDataFrame([run], runs_schema()).write.format("delta").saveAsTable(
        f"{database}.runs"
    )
    create_analyst_views(spark, database, **kwargs)
    rows = spark.sql(f"select metric, direction, run_id from {database}.best_runs").collect()
    assert {row["run_id"] for row in rows} <= {"r1"}
    return {row["metric"]: row["direction"] for row in rows}


def test_metric_directions(spark: Any) -> None:
    assert load_metric_directions(REPO / "conf" / "metric_directions.yaml") == DEFAULT_DIRECTIONS
    cases = {
        "rmse": "min",
        "val/RMSE": "min",
        "training_mean_squared_error": "min",
        "training_log_loss": "min",
        "training_r2_score": "max",
        "test roc-auc": "max",
        "loss_ratio": None,
        "val.acc": None,
        "": None,
        "größe": None,
    }
    ranked = _directions_of(spark, "views_rules", list(cases), directions_file=os.devnull)
    assert ranked == {k: v for k, v in cases.items() if v is not None}
    overridden = _directions_of(
        spark, "views_rules", ["val.acc", "train/loss", "rmse"],
        directions={"Val.Acc": "higher", "loss": "max"}, directions_file=os.devnull,
    )  # fmt: skip
    assert overridden == {"val.acc": "max", "train/loss": "max", "rmse": "min"}
    stored = spark.table("views_rules.metric_directions").collect()
    assert {row["name"]: row["direction"] for row in stored} == resolve_directions(
        {"Val.Acc": "higher", "loss": "max"}, os.devnull
    )


def test_views_of_a_database_without_tables(spark: Any) -> None:
    spark.sql("create database if not exists views_empty")
    create_analyst_views(spark, "views_empty")
    create_analyst_views(spark, "views_empty")  # replaced, not an error
    assert spark.table("views_empty.best_runs").count() == 0
    assert spark.table("views_empty.metrics_long").columns == [
        "experiment_id",
        "run_id",
        "run_name",
        "metric",
        "value",
    ]
    assert spark.table("views_empty.best_runs").columns == [
        "experiment_id",
        "metric",
        "direction",
        "run_id",
        "run_name",
        "value",
        "start_time",
    ]


def test_endpoint_serves_the_job_tables_to_beeline(
    spark: Any, seeded: Seeded, tmp_path: Path
) -> None:
    experiment_ids = (seeded.best, seeded.paged, seeded.odd_keys)
    data_dir = tmp_path / "data"
    started = time.monotonic()
    built = _build(
        "--data_dir", str(data_dir), "--tracking_uri", seeded.url,
        "--experiment_ids", ",".join(experiment_ids),
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    assert "analyst views created in mlflow_metrics" in built.stdout
    build_seconds = time.monotonic() - started

    port = free_port()
    with serving(["--data_dir", str(data_dir)], port, tmp_path) as served:
        # While the endpoint starts: Spark SQL's answers on the same Delta files.
        warehouse = data_dir / "warehouse" / "mlflow_metrics.db"
        spark.sql("create database if not exists serve_check")
        for table in [*(f"exp_{i}" for i in experiment_ids), "runs"]:
            spark.catalog.createTable(
                f"serve_check.{table}", path=str(warehouse / table), source="delta"
            )
        create_analyst_views(spark, "serve_check")
        classic = spark.sql(CLASSIC.format("serve_check.exp_" + seeded.paged))
        best_columns = "experiment_id, metric, direction, run_id, run_name, value"
        best = spark.sql(
            f"select {best_columns}, cast(start_time as string) from serve_check.best_runs"
        )
        expected_classic = [classic.columns, *_rows(classic)]
        expected_best = [
            [*best_columns.split(", "), "start_time"],
            *sorted([*row[:-1], _timestamp_text(row[-1])] for row in _rows(best)),
        ]
        odd_metrics = ODD_METRICS_QUERY.format(database="serve_check.", id=seeded.odd_keys)
        expected_odd = [["run_id", "metric", "value"], *_rows(spark.sql(odd_metrics))]

        assert served.wait_ready() == f"jdbc:hive2://127.0.0.1:{port}/mlflow_metrics"
        ready_seconds = time.monotonic() - started - build_seconds

        tables, served_classic, served_best, counts, served_odd = beeline_all(
            port,
            [
                "show tables",
                CLASSIC.format("exp_" + seeded.paged),
                "select * from best_runs",
                "select metric, count(*) as n, count(distinct run_id) as runs, "
                "sum(case when isnan(value) then 1 else 0 end) as nans from metrics_long "
                f"where experiment_id in ('{seeded.best}', '{seeded.paged}') "
                "group by metric order by metric",
                ODD_METRICS_QUERY.format(database="", id=seeded.odd_keys),
            ],
        )
        assert served.terminate() == 0
    assert "SQL endpoint stopped." in served.stdout.read_text()

    assert tables == [
        ["namespace", "tableName", "isTemporary"],
        *[
            ["mlflow_metrics", name, "false"]
            for name in sorted(
                [
                    "best_runs",
                    "experiments",
                    "metric_directions",
                    "metrics_long",
                    "mlflow_state",
                    "mlflow_status",
                    "run_inputs",
                    "runs",
                ]
                + [f"exp_{i}" for i in experiment_ids]
            )
        ],
    ]
    assert served_classic == expected_classic
    # rmse = (i * 7 % 25) / 100 for run i: the lowest are i = 0, 18, 11.
    ids = seeded.paged_run_ids
    assert expected_classic[1:4] == [
        [ids[0], "0.0", "0.0"],
        [ids[18], "0.01", "1.8"],
        [ids[11], "0.02", "1.1"],
    ]
    assert len(expected_classic) == 26

    assert [served_best[0], *sorted(served_best[1:])] == expected_best
    runs, odd0, odd1 = seeded.best_runs, *seeded.odd_run_ids
    # val.acc, "my metric", größe and a-b:c have no known direction: not ranked.
    assert expected_best[1:] == sorted(
        [
            [seeded.best, "r2", "max", runs["c"], "c", "0.95", "1970-01-01 00:00:00.5"],
            [seeded.best, "rmse", "min", runs["a"], "a", "0.5", "1970-01-01 00:00:01.0"],
            [seeded.paged, "rmse", "min", ids[0], "paged-00", "0.0", "1970-01-01 00:16:40.0"],
            [seeded.odd_keys, "train/loss", "min", odd0, "odd-0", "0.0", "1970-01-01 00:00:20.0"],
        ]
    )
    assert counts == [
        ["metric", "n", "runs", "nans"],
        ["r2", "6", "6", "0"],
        ["rmse", "30", "30", "1"],
    ]
    assert served_odd == expected_odd
    assert sorted(expected_odd[1:]) == sorted(
        [
            [odd0, "a-b:c", "4.0"],
            [odd0, "größe", "3.0"],
            [odd0, "my metric", "2.0"],
            [odd0, "train/loss", "0.0"],
            [odd0, "val.acc", "1.0"],
            [odd1, "train/loss", "9.0"],
        ]
    )
    print(f"build {build_seconds:.1f} s, endpoint ready {ready_seconds:.1f} s after it")


def test_shared_postgres_metastore_job_refreshes_while_endpoint_serves(
    seeded: Seeded, tmp_path: Path
) -> None:
    client = MlflowClient(seeded.url)
    experiment_id = client.create_experiment("serve-refresh")
    first_ids = [
        _run(client, experiment_id, 1000 + i, metrics={"rmse": 0.5 + i / 10}, name=f"r{i}")
        for i in range(3)
    ]
    conf = str(REPO / "conf" / "metastore-postgres.yaml")
    data_dir = tmp_path / "data"
    with postgres_server() as url:
        parsed = make_url(url)
        password = parsed.password
        assert password
        env = dict(
            os.environ,
            MLFLOW_FUN_METASTORE_URL=f"jdbc:postgresql://127.0.0.1:{parsed.port}/{parsed.database}",
            MLFLOW_FUN_METASTORE_USER=str(parsed.username),
            MLFLOW_FUN_METASTORE_PASSWORD=password,
        )
        build_args = [
            "--conf", conf, "--data_dir", str(data_dir), "--tracking_uri", seeded.url,
            "--experiment_ids", experiment_id,
        ]  # fmt: skip
        first = _build(*build_args, env=env)
        assert first.returncode == 0, first.stderr
        table = f"exp_{experiment_id}"
        count = f"select count(*) as n from {table}"

        port = free_port()
        with serving(["--conf", conf, "--data_dir", str(data_dir)], port, tmp_path, env) as served:
            served.wait_ready()
            assert beeline(port, count) == [["n"], ["3"]]

            new_id = _run(client, experiment_id, 5000, metrics={"rmse": 0.01}, name="new")
            with open(tmp_path / "job.out", "w") as out, open(tmp_path / "job.err", "w") as err:
                job = subprocess.Popen(
                    build_command(*build_args), stdout=out, stderr=err, cwd=REPO, env=env
                )
                answers = []
                deadline = time.monotonic() + 600
                with beeline_session(port) as ask:  # one client connection all along
                    while job.poll() is None and time.monotonic() < deadline:
                        answers.append(ask(count)[1][0])
                        time.sleep(1.0)  # leave the job most of the two cores
                job.wait(timeout=60)
            job_output = (tmp_path / "job.out").read_text() + (tmp_path / "job.err").read_text()
            assert job.returncode == 0, job_output
            assert answers and set(answers) <= {"3", "4"}, answers

            rows, best = beeline_all(
                port,
                [
                    f"select run_id from {table} order by start_time",
                    f"select run_id, value from best_runs where experiment_id = '{experiment_id}'",
                ],
            )
            assert rows == [["run_id"], *[[i] for i in [*first_ids, new_id]]]
            assert best == [["run_id", "value"], [new_id, "0.01"]]
            assert served.terminate() == 0
        readers = ["--conf", conf, "--data_dir", str(data_dir)]  # the job's own settings
        counted = _cli("sql", *readers, "--output", "json", count, env=env)
        assert json.loads(counted) == [{"n": 4}]
        best = _cli("best", "--source", "table", *readers, "--experiment-id", experiment_id,
                    "--metric", "rmse", env=env)  # fmt: skip
        assert best == f"('{new_id}', 0.01)\n"
        logs = first.stdout + first.stderr + job_output + served.output()
        assert password not in logs
    print(f"queries answered while the job ran: {len(answers)} ({sorted(set(answers))})")
