"""`best_run_from_table`: a local Delta table read by delta-rs, any other through Spark,
the same answer and the same errors either way."""

from __future__ import annotations

import math
import uuid
from pathlib import Path
from typing import Any

import pytest

from mlflow_fun.errors import ConfigError, ExperimentNotFoundError, MetricNotFoundError
from mlflow_fun.load.logged_models import logged_models_schema, model_metrics_schema
from mlflow_fun.load.side_tables import history_schema, history_table
from mlflow_fun.load.writer import TableWriter
from mlflow_fun.model import MetricPoint
from mlflow_fun.query.answer import answer_query
from mlflow_fun.query.local_sql import select_locally
from mlflow_fun.query.model import BestQuery, parse_order_by
from mlflow_fun.query.models import read_models
from mlflow_fun.query.spark_tables import best_run_from_table
from mlflow_fun.query.tables import UnreadableTableError, read_experiment_frame
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
    # A name of its own per call: an id() is reused once its object is freed, which
    # counted a previous call's jobs in this call's group (a flaky failure).
    group = f"best-{uuid.uuid4().hex}"
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


def test_a_temporary_view_or_the_case_of_a_name_changes_nothing(
    spark: Any, databases: dict[str, str]
) -> None:
    """The catalog's table is read, not a session's temporary view of the same name (which
    `SHOW TABLE EXTENDED` lists too), and a database named in capitals is the same one."""
    spark.createDataFrame([("z", 0.0)], "run_id string, _m_rmse double").createOrReplaceTempView(
        "exp_1"
    )
    try:
        best, jobs = _spark_jobs(
            spark, lambda: best_run_from_table(spark, databases["delta"].upper(), "1", "rmse")
        )
    finally:
        spark.catalog.dropTempView("exp_1")
    assert (best, jobs) == (("a", 0.5), 0)


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


# Tables delta-rs does not read as Spark does: a reader feature it lacks (deletion vectors),
# and column mapping (reader version 2: delta-rs would open it and read every column NULL).
UNREADABLE = {
    "2": ({"delta.enableDeletionVectors": "true"}, "deletionVectors"),
    "3": (
        {
            "delta.columnMapping.mode": "name",
            "delta.minReaderVersion": "2",
            "delta.minWriterVersion": "5",
        },
        "column mapping mode name",
    ),
}


@pytest.mark.parametrize("experiment_id", sorted(UNREADABLE))
def test_a_table_delta_rs_does_not_read_is_asked_of_spark(
    spark: Any, databases: dict[str, str], experiment_id: str
) -> None:
    """Spark answers, and the readers without a JVM say `UnreadableTableError` (a
    `TableNotLocalError`, on which the CLI asks Spark)."""
    database = databases["delta"]
    options, reason = UNREADABLE[experiment_id]
    runs = [make_run(r.run_id, experiment_id, r.info["start_time"], r.metrics) for r in RUNS]
    to_spark(spark, flatten_runs(runs)).write.format("delta").options(**options).saveAsTable(
        f"{database}.exp_{experiment_id}"
    )
    spark.sql(f"DELETE FROM {database}.exp_{experiment_id} WHERE run_id = 'a'")

    best, jobs = _spark_jobs(
        spark, lambda: best_run_from_table(spark, database, experiment_id, "rmse")
    )
    assert (best, jobs > 0) == (("b", 0.5), True)  # a deleted: b wins the tie at 0.5
    data_dir = str(Path(location_of(spark, f"{database}.exp_{experiment_id}")).parents[2])
    match = f"delta-rs does not read .*{reason}"
    with pytest.raises(UnreadableTableError, match=match):
        read_experiment_frame(data_dir, database, experiment_id)
    with pytest.raises(UnreadableTableError, match=match):
        select_locally(data_dir, database, f"select run_id from exp_{experiment_id}", 10)


def test_side_tables_delta_rs_does_not_read_are_asked_of_spark(
    spark: Any, databases: dict[str, str]
) -> None:
    """`--agg` and `--models` from the tables: a missing table is one line saying how to
    build it; one delta-rs does not read is `UnreadableTableError` (Spark's to read)."""
    database = databases["delta"]
    data_dir = str(Path(location_of(spark, f"{database}.exp_1")).parents[2])
    deletion_vectors = {"delta.enableDeletionVectors": "true"}
    query = BestQuery(order_by=parse_order_by("rmse"))
    with pytest.raises(ConfigError, match="metric_history"):
        answer_query("table", ["1"], query, data_dir=data_dir, database=database, agg="min")
    with pytest.raises(ConfigError, match="--with-models"):
        read_models("table", ["1"], data_dir=data_dir, database=database)

    points = [MetricPoint("b", "rmse", 0.5, 0, 2_000), MetricPoint("d", "rmse", 0.7, 0, 3_000)]
    spark.createDataFrame(history_table("1", points).to_pandas(), history_schema()).write.format(
        "delta"
    ).options(**deletion_vectors).saveAsTable(f"{database}.metric_history")
    for name, schema in (
        ("logged_models", logged_models_schema()),
        ("model_metrics", model_metrics_schema()),
    ):
        spark.createDataFrame([], schema).write.format("delta").options(
            **deletion_vectors
        ).saveAsTable(f"{database}.{name}")
    with pytest.raises(UnreadableTableError, match="metric_history"):
        answer_query("table", ["1"], query, data_dir=data_dir, database=database, agg="min")
    with pytest.raises(UnreadableTableError, match="logged_models"):
        read_models("table", ["1"], data_dir=data_dir, database=database)
