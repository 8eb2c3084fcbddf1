"""`summarize`: a metric's last, lowest and highest values over its steps, and their steps."""

from __future__ import annotations

import math

import pytest

from mlflow_fun.model import MetricPoint
from mlflow_fun.transform.steps import summarize


def _points(run_id: str, key: str, values: list[float]) -> list[MetricPoint]:
    return [MetricPoint(run_id, key, v, step, 1_000 + step) for step, v in enumerate(values)]


def test_min_max_and_last_with_their_steps() -> None:
    summary = summarize(_points("r", "loss", [3.0, 1.0, 2.0, 5.0, 4.0]))[("r", "loss")]
    assert summary.pick("last") == (4.0, 4)
    assert summary.pick("min") == (1.0, 1)
    assert summary.pick("max") == (5.0, 3)
    assert (summary.steps, summary.first_time, summary.last_time) == (5, 1_000, 1_004)


def test_a_value_reached_twice_counts_at_its_earliest_step_whatever_the_order() -> None:
    points = _points("r", "loss", [2.0, 0.5, 3.0, 0.5, 3.0])
    summary = summarize(reversed(points))[("r", "loss")]
    assert (summary.min_step, summary.max_step) == (1, 2)


def test_nan_is_never_the_lowest_or_highest_but_can_be_the_last() -> None:
    summary = summarize(_points("r", "loss", [2.0, math.nan, 1.0, math.nan]))[("r", "loss")]
    assert summary.pick("min") == (1.0, 2) and summary.pick("max") == (2.0, 0)
    assert math.isnan(summary.last) and summary.last_step == 3
    only_nan = summarize(_points("r", "loss", [math.nan, math.nan]))[("r", "loss")]
    assert math.isnan(only_nan.min) and only_nan.min_step is None and only_nan.max_step is None


def test_mlflow_latest_rule_step_then_timestamp_then_value() -> None:
    points = [
        MetricPoint("r", "loss", 9.0, 7, 100),  # the highest step wins over later times
        MetricPoint("r", "loss", 1.0, 3, 999),
        MetricPoint("r", "loss", 8.0, 7, 100),  # same step and time: the higher value
        MetricPoint("r", "loss", 2.0, 7, 50),
    ]
    assert summarize(points)[("r", "loss")].pick("last") == (9.0, 7)


def test_runs_and_keys_are_kept_apart() -> None:
    points = [
        *_points("a", "loss", [1.0, 2.0]),
        *_points("b", "loss", [0.5]),
        *_points("a", "acc", [0.9]),
    ]
    summaries = summarize(points)
    assert sorted(summaries) == [("a", "acc"), ("a", "loss"), ("b", "loss")]
    assert summaries[("b", "loss")].pick("min") == (0.5, 0)
    with pytest.raises(ValueError, match="'median' is not one of last, min, max"):
        summaries[("b", "loss")].pick("median")
