"""Rows of several experiments batched into one DataFrame (`refresh.arrow_frame`)."""

from __future__ import annotations

import math
from typing import Any

from mlflow_fun.client.records import MetricPoint
from mlflow_fun.metrics.spark import refresh


def _points(experiment_id: str, count: int) -> Any:
    return refresh.history_table(
        experiment_id,
        [MetricPoint(f"r{experiment_id}_{i}", "rmse", math.nan if i == 1 else i, i, 1000 + i)
         for i in range(count)],
    )  # fmt: skip


def test_an_experiment_without_rows_loses_none_of_the_others(spark: Any) -> None:
    # PySpark stops at the first empty Arrow batch unless the chunks are combined.
    tables = [_points("4", 2), _points("3", 0), _points("5", 3), _points("1", 0)]
    df = refresh.arrow_frame(spark, tables, refresh.history_schema())
    rows = sorted((r.experiment_id, r.run_id, r.step) for r in df.collect())
    assert rows == [
        ("4", "r4_0", 0), ("4", "r4_1", 1),
        ("5", "r5_0", 0), ("5", "r5_1", 1), ("5", "r5_2", 2),
    ]  # fmt: skip
    assert refresh.arrow_frame(spark, [_points("3", 0)], refresh.history_schema()).count() == 0
