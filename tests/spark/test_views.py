"""The analyst views over a tiny ``runs`` table: directions by rule, ties, NaN skipped."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from chispa import assert_df_equality
from pyspark.sql import types as T

from mlflow_fun.extract.incremental import FULL, RefreshState
from mlflow_fun.load.views import create_analyst_views
from mlflow_fun.load.writer import SideBatch, TableWriter
from tests.spark.conftest import make_run


def test_best_runs_picks_by_the_longest_rule_skips_nan_and_breaks_ties(
    spark: Any, data_dir: Path, database: str, tmp_path: Path
) -> None:
    writer = TableWriter(spark, database, str(data_dir), "delta")
    writer.create_database()
    batch = SideBatch()
    runs = [
        make_run("a", "1", 1_000, {"val_loss": 0.5, "val_accuracy": 0.7}),
        make_run("b", "1", 2_000, {"val_loss": 0.5, "val_accuracy": math.nan}),
        make_run("c", "1", 500, {"val_loss": math.nan, "val_accuracy": 0.6}),
        make_run("d", "2", None, {"val_loss": 0.1}),
    ]
    batch.add("1", FULL, runs[:3], None, RefreshState("1", 2_010))
    batch.add("2", FULL, runs[3:], None, RefreshState("2", 0))
    writer.write_side_rows(batch)
    empty = tmp_path / "directions.yaml"
    empty.write_text("{}\n")

    create_analyst_views(spark, database, {"loss": "min", "accuracy": "max"}, directions_file=empty)

    best = spark.sql(
        f"select experiment_id, metric, direction, run_id, value from {database}.best_runs"
    ).orderBy("experiment_id", "metric")
    expected = spark.createDataFrame(
        [
            ("1", "val_accuracy", "max", "a", 0.7),
            ("1", "val_loss", "min", "a", 0.5),  # a tie: the earlier start wins
            ("2", "val_loss", "min", "d", 0.1),
        ],
        "experiment_id string, metric string, direction string, run_id string, value double",
    )
    assert_df_equality(best, expected, ignore_nullable=True, ignore_metadata=True)
    long = spark.table(f"{database}.metrics_long")
    assert long.count() == 7
    assert long.schema["value"].dataType == T.DoubleType()
