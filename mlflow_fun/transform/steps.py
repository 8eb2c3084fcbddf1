"""A metric's whole history in one row: its last, lowest and highest values, and their steps.

MLflow keeps a run's *latest* value of each metric (the one at the highest step, then the
latest timestamp, then the highest value: MLflow's own rule). In training, the number that
matters is often the best value reached at any step (early stopping). `summarize` turns
the logged points of a metric into a `MetricSummary`; `MetricSummary.pick` answers
``--agg last|min|max`` with the value and the step it was logged at.

Rules: NaN never is the lowest or highest value (a run whose values are all NaN has NaN
for both, and no step); a value reached at several steps counts at the earliest step
(then the earliest timestamp).

Example:
    >>> points = [MetricPoint("r1", "loss", v, s, 1000 + s) for s, v in enumerate([3, 1, 2])]
    >>> summary = summarize(points)[("r1", "loss")]
    >>> summary.pick("min"), summary.pick("last")
    ((1.0, 1), (2.0, 2))
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from mlflow_fun.model import MetricPoint

# What `best --agg` ranks by: MLflow's latest value, or the lowest or highest at any step.
AGGREGATES = ("last", "min", "max")


@dataclass(frozen=True)
class MetricSummary:
    """One metric of one run over all its steps (a row of ``<database>.metric_summary``)."""

    run_id: str
    key: str
    last: float
    last_step: int
    min: float
    min_step: int | None
    max: float
    max_step: int | None
    steps: int
    first_time: int
    last_time: int

    def pick(self, agg: str) -> tuple[float, int | None]:
        """``(value, step)`` of ``agg`` (one of `AGGREGATES`)."""
        if agg == "last":
            return self.last, self.last_step
        if agg == "min":
            return self.min, self.min_step
        if agg == "max":
            return self.max, self.max_step
        raise ValueError(f"agg {agg!r} is not one of {', '.join(AGGREGATES)}")


def summarize(points: Iterable[MetricPoint]) -> dict[tuple[str, str], MetricSummary]:
    """Summarize logged points by ``(run_id, key)``, in any order of arrival."""
    grouped: dict[tuple[str, str], list[MetricPoint]] = {}
    for point in points:
        grouped.setdefault((point.run_id, point.key), []).append(point)
    return {pair: _summary(group) for pair, group in grouped.items()}


def _summary(points: list[MetricPoint]) -> MetricSummary:
    last = max(points, key=lambda p: (p.step, p.timestamp, _sortable(p.value)))
    ordered = sorted((p for p in points if not math.isnan(p.value)), key=_when)
    low = min(ordered, key=lambda p: p.value, default=None)  # min/max keep the first seen
    high = max(ordered, key=lambda p: p.value, default=None)
    times = [p.timestamp for p in points]
    return MetricSummary(
        run_id=last.run_id,
        key=last.key,
        last=last.value,
        last_step=last.step,
        min=math.nan if low is None else low.value,
        min_step=None if low is None else low.step,
        max=math.nan if high is None else high.value,
        max_step=None if high is None else high.step,
        steps=len(points),
        first_time=min(times),
        last_time=max(times),
    )


def _when(point: MetricPoint) -> tuple[int, int]:
    return point.step, point.timestamp


def _sortable(value: float) -> float:
    """NaN sorts lowest among values logged at the same step and time."""
    return -math.inf if math.isnan(value) else value
