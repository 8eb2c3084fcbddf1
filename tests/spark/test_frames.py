"""Runs to Spark DataFrames (`mlflow_fun.transform.frames`): explicit schemas, batches."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from chispa import assert_df_equality
from pyspark.sql import types as T

from mlflow_fun.load.side_tables import history_schema, history_table
from mlflow_fun.model import MetricPoint, RunRecord
from mlflow_fun.transform.flatten import flatten_runs
from mlflow_fun.transform.frames import arrow_frame, column_keys, to_spark

UTC = dt.timezone.utc


def _run(run_id: str, start: int, metrics: dict[str, float], params: dict[str, str]) -> RunRecord:
    info = {
        "run_name": f"name-{run_id}",
        "experiment_id": "7",
        "user_id": "ann",
        "status": "FINISHED",
        "lifecycle_stage": "active",
        "start_time": start,
        "end_time": start + 10,
        "artifact_uri": f"file:/a/{run_id}",
    }
    return RunRecord(run_id, info, metrics, params, {"team": "x"})


def _points(experiment_id: str, count: int) -> Any:
    return history_table(
        experiment_id,
        [MetricPoint(f"r{experiment_id}_{i}", "rmse", math.nan if i == 1 else i, i, 1000 + i)
         for i in range(count)],
    )  # fmt: skip


def test_runs_become_typed_columns_with_their_mlflow_keys(spark: Any) -> None:
    flat = flatten_runs(
        [
            _run("r1", 1_000, {"rmse": 0.5, "val loss": 2.0}, {"alpha": "0.1", "n": "3"}),
            _run("r2", 2_000, {"rmse": math.nan}, {"alpha": "1", "n": "4", "fit": "true"}),
        ]
    )
    df = to_spark(spark, flat)
    expected = spark.createDataFrame(
        [
            ("r1", 0.5, 2.0, 0.1, None, 3),
            ("r2", math.nan, None, 1.0, True, 4),
        ],
        T.StructType(
            [
                T.StructField("run_id", T.StringType()),
                T.StructField("_m_rmse", T.DoubleType()),
                T.StructField("_m_val_loss", T.DoubleType()),
                T.StructField("_p_alpha", T.DoubleType()),
                T.StructField("_p_fit", T.BooleanType()),
                T.StructField("_p_n", T.IntegerType()),
            ]
        ),
    )
    picked = df.select(*expected.columns).orderBy("run_id")
    assert_df_equality(picked, expected, allow_nan_equality=True, ignore_metadata=True)
    keys = column_keys(df.schema)
    assert keys["_m_val_loss"] == ("metric", "val loss")
    assert keys["_p_fit"] == ("param", "fit")
    assert keys["_t_team"] == ("tag", "team")
    start = df.where("run_id = 'r1'").select("start_time").first()[0]
    assert start.astimezone(UTC) == dt.datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)


def test_an_experiment_without_rows_loses_none_of_the_others(spark: Any) -> None:
    # PySpark stops at the first empty Arrow batch unless the chunks are combined.
    tables = [_points("4", 2), _points("3", 0), _points("5", 3), _points("1", 0)]
    df = arrow_frame(spark, tables, history_schema())
    rows = sorted((r.experiment_id, r.run_id, r.step) for r in df.collect())
    assert rows == [
        ("4", "r4_0", 0), ("4", "r4_1", 1),
        ("5", "r5_0", 0), ("5", "r5_1", 1), ("5", "r5_2", 2),
    ]  # fmt: skip
    assert arrow_frame(spark, [_points("3", 0)], history_schema()).count() == 0
