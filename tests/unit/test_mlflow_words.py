"""MLflow's search words in --where and --order-by name the same columns (pandas engine)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from mlflow_fun.cli.main import main
from mlflow_fun.errors import QueryError
from mlflow_fun.model import RunRecord
from mlflow_fun.query import spark_tables
from mlflow_fun.query.engine import best_runs
from mlflow_fun.query.mlflow_words import mlflow_reference
from mlflow_fun.transform.flatten import flatten_runs
from mlflow_fun.transform.frames import to_pandas


def _run(i: int) -> RunRecord:
    info = {
        "run_name": f"n{i}",
        "experiment_id": "1",
        "user_id": "ann",
        "status": "FINISHED" if i % 2 else "FAILED",
        "lifecycle_stage": "active",
        "start_time": 1_000 + i,
        "end_time": 2_000,
        "artifact_uri": "file:/a",
    }
    metrics = {"rmse": i / 10, "val loss": i / 5}
    params = {"alpha": str(i / 10), "fit": "true" if i < 4 else "false"}
    return RunRecord(f"r{i}", info, metrics, params, {"team": "a" if i < 3 else "b"})


@pytest.fixture(scope="module")
def runs() -> pd.DataFrame:
    return to_pandas(flatten_runs([_run(i) for i in range(6)]))


@pytest.mark.parametrize(
    ("words", "columns", "expected"),
    [
        ("metrics.rmse < 0.45 and params.alpha = '0.2'", "_m_rmse < 0.45 and _p_alpha = 0.2",
         ["r2"]),
        ("tags.team = 'b' or attributes.status = 'FAILED'", "_t_team = 'b' or status = 'FAILED'",
         ["r5", "r4", "r3", "r2", "r0"]),
        ("metrics.`val loss` > 0.5", "_m_val_loss > 0.5", ["r5", "r4", "r3"]),
        ('metrics."val loss" > 0.5', "_m_val_loss > 0.5", ["r5", "r4", "r3"]),
        ("params.alpha in ('0.1', '0.3') and params.fit = 'true'",
         "_p_alpha in (0.1, 0.3) and _p_fit = true", ["r3", "r1"]),
        ("metric.rmse between 0.1 and 0.3 and run.created > '1970-01-01'",
         "_m_rmse between 0.1 and 0.3 and start_time > '1970-01-01'", ["r3", "r2", "r1"]),
    ],
)  # fmt: skip
def test_mlflow_words_equal_column_names(
    runs: pd.DataFrame, words: str, columns: str, expected: list[str]
) -> None:
    by_words = [r.run_id for r in best_runs(runs, "metrics.rmse desc", where=words, top=10)]
    by_columns = [r.run_id for r in best_runs(runs, "_m_rmse desc", where=columns, top=10)]
    assert by_words == by_columns == expected


def test_order_by_in_mlflow_words(runs: pd.DataFrame) -> None:
    ranked = best_runs(runs, 'metrics."val loss" desc, params.alpha asc', top=2)
    assert [(r.run_id, r.values) for r in ranked] == [
        ("r5", {"_m_val_loss": 1.0, "_p_alpha": 0.5}),
        ("r4", {"_m_val_loss": 0.8, "_p_alpha": 0.4}),
    ]


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("params.alpha = 'abc'", "_p_alpha holds numbers; 'abc' is not one"),
        ("foo.x = 1", "unknown prefix in foo.x; MLflow's are metrics., params., tags. and"),
        ("attributes.nope = 'x'", "unknown attribute 'nope'; MLflow's attributes: artifact_uri"),
        ("metrics.mae < 1", "no run has the metric 'mae'; the metrics: rmse, val loss"),
        ("params.fit = 'maybe'", "_p_fit holds booleans; 'maybe' is not one"),
    ],
)
def test_wrong_words_are_one_clear_error(runs: pd.DataFrame, where: str, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        best_runs(runs, "rmse", where=where)


def test_references() -> None:
    assert mlflow_reference("metrics.`val loss`") == ("metric", "val loss")
    assert mlflow_reference("params.alpha") == ("param", "alpha")
    assert mlflow_reference("tags.a.b") == ("tag", "a.b")
    assert mlflow_reference("_m_rmse") is None
    assert mlflow_reference("unknown.x") is None


def test_a_bad_condition_fails_before_spark_starts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_spark(*args: Any) -> Any:
        raise AssertionError("Spark was started for a condition that does not parse")

    monkeypatch.setattr(spark_tables, "table_session", no_spark)
    monkeypatch.setattr(spark_tables, "spark_session", no_spark)
    for where, message in (
        ("metrics.rmse <", "does not parse"),
        ("foo.rmse < 1", "unknown prefix in foo.rmse"),
    ):
        argv = ["best", "--experiment-id", "1", "--metric", "rmse", "--engine", "spark"]
        assert main([*argv, "--where", where]) == 2  # a usage error: nothing ran
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"mlflow-fun: error: --where {where!r}") and message in err
        assert len(err.splitlines()) == 1
