"""The query model on pandas tables built from in-test runs (pure, no server)."""

from __future__ import annotations

import itertools
import math
import random
import re

import pytest

from mlflow_fun.errors import ConfigError, MetricNotFoundError, QueryError
from mlflow_fun.model import RunRecord
from mlflow_fun.query.engine import best_runs, pareto_front
from mlflow_fun.query.model import OrderKey, parse_order_by
from mlflow_fun.transform.flatten import flatten_runs
from mlflow_fun.transform.frames import to_pandas


def _run(
    run_id: str, start: int, metrics: dict, params: dict | None = None, status: str = "FINISHED"
) -> RunRecord:
    info = {
        "experiment_id": "1",
        "status": status,
        "start_time": start,
        "lifecycle_stage": "active",
    }
    return RunRecord(run_id, info, metrics, params or {}, {})


RUNS = [
    _run("a", 10, {"rmse": 0.5, "mae": 0.3, "r2": 0.1}, {"alpha": "0.1", "kind": "x"}),
    _run("b", 20, {"rmse": 0.5, "mae": 0.2, "r2": 0.9}, {"alpha": "0.9", "kind": "y"}),
    _run("c", 5, {"rmse": math.nan, "mae": 0.1, "r2": 0.95}, {"alpha": "0.3"}),
    _run("d", 4, {"mae": 0.4, "r2": 0.2}, {"alpha": "0.2", "kind": "x"}, status="FAILED"),
    _run("e", 30, {"rmse": 0.9, "mae": 0.9, "r2": -1.0}, {"alpha": "1", "kind": "z"}),
    _run("g", 25, {"rmse": 0.9, "mae": 0.05, "r2": 0.3}, {"alpha": "0.5", "kind": "x"}),
]


@pytest.fixture(scope="module")
def df():
    return to_pandas(flatten_runs(RUNS))


def ids(result: list) -> list[str]:
    return [r.run_id for r in result]


def test_single_metric_ties_and_nan(df) -> None:
    assert ids(best_runs(df, "rmse")) == ["a"]
    assert ids(best_runs(df, "_m_rmse desc", top=2)) == ["g", "e"]
    assert best_runs(df, "rmse", top=10)[0].values == {"_m_rmse": 0.5}
    assert len(best_runs(df, "rmse", top=10)) == 4  # c (NaN) and d (missing) skipped


def test_multi_key_order(df) -> None:
    assert ids(best_runs(df, "rmse asc, mae asc", top=4)) == ["b", "a", "g", "e"]
    assert best_runs(df, [OrderKey("rmse"), OrderKey("mae", False)])[0].run_id == "a"


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("_p_alpha < 0.5", ["c", "d", "a"]),
        ("_p_alpha < 0.25 or _m_r2 > 0.9", ["d", "c", "a"]),
        ("_p_kind in ('x', 'z') and _m_mae < 0.5", ["g", "d", "a"]),
        ("_m_rmse * 2 >= 1.8", ["g", "e"]),
        ("status = 'FAILED'", ["d"]),
        ("not (_p_kind = 'x')", ["e", "b"]),  # NULL kind (c) is unknown: not kept
        ("_p_kind is null", ["c"]),
        ("_m_rmse is null", ["d", "c"]),  # NaN counts as NULL
        ("_p_kind like 'x%' and _p_alpha between 0.15 and 0.5", ["g", "d"]),
        ("start_time > '1970-01-01T00:00:00.015'", ["b", "g", "e"]),
        ("_m_mae / (_m_r2 - 0.1) > 0", ["g", "b", "c", "d"]),  # a divides by zero: NULL
    ],
)
def test_where(df, where: str, expected: list[str]) -> None:
    result = best_runs(df, "mae asc", where=where, top=10)
    assert sorted(ids(result)) == sorted(expected)
    assert ids(best_runs(df, "mae desc", where=where, top=10)) == sorted(
        expected, key=lambda r: -next(x for x in RUNS if x.run_id == r).metrics["mae"]
    )


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("_p_alpha <", "does not parse"),
        ("_p_alpa < 1", "unknown column '_p_alpa'; did you mean _p_alpha?"),
        ("_p_kind < 1", "cannot compare _p_kind (string) with 1 (number)"),
        ("_m_rmse + 'a' > 1", "+ needs a number"),
        ("_m_rmse", "is not a condition"),
        ("_m_rmse > (select 1)", "is not supported here"),
        ("_m_rmse > 1; drop table x", "is not supported here"),
    ],
)
def test_bad_where(df, where: str, message: str) -> None:
    with pytest.raises(QueryError, match=re.escape(message)):
        best_runs(df, "rmse", where=where)


def test_unknown_order_column(df) -> None:
    with pytest.raises(
        MetricNotFoundError, match="'loss' is neither a metric nor a column; metrics: mae, r2, rmse"
    ):
        best_runs(df, "loss")
    with pytest.raises(ConfigError, match="empty item"):
        parse_order_by("rmse, ")
    assert parse_order_by("`my metric` desc, mae") == (
        OrderKey("my metric", False),
        OrderKey("mae", True),
    )


def test_pareto_front(df) -> None:
    front = pareto_front(df, {"rmse": "min", "r2": "max"})
    assert ids(front) == ["b"]  # (0.5, 0.9) beats a, e and g
    assert ids(pareto_front(df, "mae min, r2 max")) == ["g", "c"]


def _brute_force(points: dict[str, tuple[float, ...]]) -> set[str]:
    def beats(p: tuple, q: tuple) -> bool:
        return all(a <= b for a, b in zip(p, q, strict=True)) and p != q

    return {k for k, v in points.items() if not any(beats(w, v) for w in points.values())}


@pytest.mark.parametrize("seed", range(5))
def test_pareto_matches_brute_force_on_random_data(seed: int) -> None:
    rng = random.Random(seed)
    runs = [
        _run(
            f"r{i:03d}",
            i,
            {"x": rng.choice([0.1, 0.2, 0.3, 0.4]), "y": rng.random(), "z": rng.randint(0, 3)},
        )
        for i in range(150)
    ]
    frame = to_pandas(flatten_runs(runs))
    front = pareto_front(frame, {"x": "min", "y": "max", "z": "min"})
    points = {r.run_id: (r.metrics["x"], -r.metrics["y"], r.metrics["z"]) for r in runs}
    assert set(ids(front)) == _brute_force(points)
    assert len(ids(front)) == len(set(ids(front)))
    firsts = [r.values["_m_x"] for r in front]
    assert firsts == sorted(firsts)


def test_pareto_keeps_equal_points() -> None:
    runs = [
        _run(f"r{i}", i, {"x": v, "y": w})
        for i, (v, w) in enumerate(itertools.product([1, 2], [1, 2]))
    ]
    runs.append(_run("dup", 99, {"x": 1, "y": 1}))
    front = pareto_front(to_pandas(flatten_runs(runs)), "x min, y min")
    assert ids(front) == ["r0", "dup"]
