"""The DataFrame engine answers alike on Spark and pandas (`mlflow_fun.query.engine`)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from mlflow_fun.errors import MetricNotFoundError
from mlflow_fun.query.engine import best_run_of, best_runs, pareto_front
from mlflow_fun.transform.flatten import flatten_runs
from mlflow_fun.transform.frames import to_pandas, to_spark
from tests.spark.conftest import make_run

RUNS = [
    make_run("a", "1", 1_000, {"rmse": 0.5, "r2": 0.1}, {"alpha": "0.1"}),
    make_run("b", "1", 2_000, {"rmse": 0.5, "r2": 0.3}, {"alpha": "0.5"}),
    make_run("c", "1", 500, {"rmse": math.nan, "r2": 0.9}, {"alpha": "0.9"}),
    make_run("d", "1", 3_000, {"rmse": 0.7, "r2": 0.2}, {"alpha": "1.0"}),
]


@pytest.fixture(scope="module")
def frames(spark: Any) -> dict[str, Any]:
    flat = flatten_runs(RUNS)
    return {"spark": to_spark(spark, flat), "pandas": to_pandas(flat)}


@pytest.mark.parametrize("engine", ["spark", "pandas"])
def test_best_run_skips_nan_and_breaks_ties_by_start_time(
    frames: dict[str, Any], engine: str
) -> None:
    df = frames[engine]
    assert best_run_of(df, "_m_rmse") == ("a", 0.5)
    assert best_run_of(df, "_m_r2", ascending=False) == ("c", 0.9)
    ranked = best_runs(df, "rmse asc, r2 desc", where="_p_alpha < 0.8", top=3)
    assert [(r.run_id, r.values) for r in ranked] == [
        ("b", {"_m_rmse": 0.5, "_m_r2": 0.3}),
        ("a", {"_m_rmse": 0.5, "_m_r2": 0.1}),
    ]  # d: alpha 1.0 fails the condition; c: NaN rmse
    front = pareto_front(df, "rmse min, r2 max")
    assert [r.run_id for r in front] == ["b"]
    with pytest.raises(MetricNotFoundError, match="'mae' is neither a metric nor a column"):
        best_runs(df, "mae")


@pytest.mark.parametrize("engine", ["spark", "pandas"])
def test_mlflow_words_name_the_same_columns(frames: dict[str, Any], engine: str) -> None:
    df = frames[engine]
    words = best_runs(df, "metrics.rmse asc", where="params.alpha in ('0.1', '1.0')", top=4)
    columns = best_runs(df, "_m_rmse asc", where="_p_alpha in (0.1, 1.0)", top=4)
    assert [r.run_id for r in words] == [r.run_id for r in columns] == ["a", "d"]
