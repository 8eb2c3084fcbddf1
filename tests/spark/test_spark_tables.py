"""`best_run_from_table`: a local Delta table read by delta-rs, any other through Spark,
the same answer and the same errors either way."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from mlflow_fun.errors import ConfigError, ExperimentNotFoundError, MetricNotFoundError
from mlflow_fun.load.side_tables import history_schema, history_table
from mlflow_fun.load.writer import TableWriter
from mlflow_fun.model import MetricPoint
from mlflow_fun.query.answer import answer_query
from mlflow_fun.query.local_sql import select_locally
from mlflow_fun.query.model import BestQuery, parse_order_by
from mlflow_fun.query.spark_tables import best_run_from_table
from mlflow_fun.query.tables import TableNotLocalError, UnreadableTableError, read_experiment_frame
from mlflow_fun.transform.flatten import flatten_runs
from mlflow_fun.transform.frames import to_spark
from tests.spark.conftest import location_of, make_run

RUNS = [
    make_run("a", "1", 1_000, {"rmse": 0.5, "r2": 0.1, "loss": math.nan}),
    make_run("b", "1", 2_000, {"rmse": 0.5, "r2": 0.3, "loss": math.nan}),
    make_run("c", "1", 500, {"rmse": math.nan, "r2": 0.9}),
    make_run("d", "1", 3_000, {"rmse": 0.7, "r2": 0.2, "train/acc": 0.8}),
]


@pytest.fixture(scope="module")
def databases(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The same experiment table in a Delta and in a Parquet database."""
    data_dir = tmp_path_factory.mktemp("spark_tables")
    names = {}
    for table_format in ("delta", "parquet"):
        database = f"best_from_{table_format}"
        writer = TableWriter(spark, database, str(data_dir), table_format)
        writer.create_database()
        writer.replace_runs("exp_1", flatten_runs(RUNS), exists=False)
        names[table_format] = database
    assert (Path(data_dir) / "warehouse" / "best_from_delta.db" / "exp_1" / "_delta_log").is_dir()
    return names


def _spark_jobs(spark: Any, call: Any) -> tuple[Any, int]:
    """``call()``'s result and the number of Spark jobs it ran."""
    context = spark.sparkContext
    group = f"best-{id(call)}"
    context.setJobGroup(group, "best_run_from_table")
    try:
        result = call()
    finally:
        context.setLocalProperty("spark.jobGroup.id", None)
    return result, len(context.statusTracker().getJobIdsForGroup(group))


@pytest.mark.parametrize(
    ("metric", "ascending", "expected"),
    [
        ("rmse", True, ("a", 0.5)),  # a tie at 0.5: the earlier start wins; c's NaN skipped
        ("_m_rmse", False, ("d", 0.7)),
        ("r2", False, ("c", 0.9)),
        ("train/acc", True, ("d", 0.8)),  # the MLflow key of column _m_train_acc
    ],
)
def test_delta_and_spark_give_the_same_best_run(
    spark: Any, databases: dict[str, str], metric: str, ascending: bool, expected: Any
) -> None:
    by_delta, delta_jobs = _spark_jobs(
        spark, lambda: best_run_from_table(spark, databases["delta"], "1", metric, ascending)
    )
    by_spark, spark_jobs = _spark_jobs(
        spark, lambda: best_run_from_table(spark, databases["parquet"], "1", metric, ascending)
    )
    assert by_delta == by_spark == expected
    assert (delta_jobs, spark_jobs > 0) == (0, True)  # delta-rs read the Delta table


@pytest.mark.parametrize("table_format", ["delta", "parquet"])
def test_the_same_errors_either_way(
    spark: Any, databases: dict[str, str], table_format: str
) -> None:
    database = databases[table_format]
    with pytest.raises(ExperimentNotFoundError, match=rf"table {database}.exp_9 does not exist"):
        best_run_from_table(spark, database, "9", "rmse")
    with pytest.raises(ExperimentNotFoundError, match="table no_such_db.exp_1 does not exist"):
        best_run_from_table(spark, "no_such_db", "1", "rmse")
    with pytest.raises(MetricNotFoundError, match="its metrics: loss, r2, rmse, train/acc"):
        best_run_from_table(spark, database, "1", "mae")
    with pytest.raises(MetricNotFoundError, match="no run .*loss"):
        best_run_from_table(spark, database, "1", "loss")  # NaN wherever logged


def test_a_table_delta_rs_does_not_read_is_asked_of_spark(
    spark: Any, databases: dict[str, str]
) -> None:
    """Deletion vectors (a reader feature delta-rs lacks): Spark answers, and the readers
    without a JVM say `TableNotLocalError`, on which the CLI asks Spark."""
    database = databases["delta"]
    runs = [make_run(r.run_id, "2", r.info["start_time"], r.metrics) for r in RUNS]
    to_spark(spark, flatten_runs(runs)).write.format("delta").option(
        "delta.enableDeletionVectors", "true"
    ).saveAsTable(f"{database}.exp_2")
    spark.sql(f"DELETE FROM {database}.exp_2 WHERE run_id = 'a'")  # a deletion vector

    best, jobs = _spark_jobs(spark, lambda: best_run_from_table(spark, database, "2", "rmse"))
    assert (best, jobs > 0) == (("b", 0.5), True)  # a deleted: b wins the tie at 0.5
    data_dir = str(Path(location_of(spark, f"{database}.exp_2")).parents[2])
    with pytest.raises(TableNotLocalError, match="delta-rs does not read .*deletionVectors"):
        read_experiment_frame(data_dir, database, "2")
    with pytest.raises(TableNotLocalError, match="delta-rs does not read .*deletionVectors"):
        select_locally(data_dir, database, "select run_id from exp_2", 10)

    # --agg: no history table is one line to build it; one delta-rs does not read, Spark's
    query = BestQuery(order_by=parse_order_by("rmse"))
    with pytest.raises(ConfigError, match="metric_history"):
        answer_query("table", ["1"], query, data_dir=data_dir, database=database, agg="min")
    points = [MetricPoint("b", "rmse", 0.5, 0, 2_000), MetricPoint("d", "rmse", 0.7, 0, 3_000)]
    spark.createDataFrame(history_table("1", points).to_pandas(), history_schema()).write.format(
        "delta"
    ).option("delta.enableDeletionVectors", "true").saveAsTable(f"{database}.metric_history")
    spark.sql(f"DELETE FROM {database}.metric_history WHERE run_id = 'd'")
    with pytest.raises(UnreadableTableError, match="metric_history"):
        answer_query("table", ["1"], query, data_dir=data_dir, database=database, agg="min")
