"""The query model: order keys, ranked runs, the question asked."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlflow_fun.errors import ConfigError, MetricNotFoundError

logger = logging.getLogger(__name__)


_ORDER_ITEM = re.compile(r"\s*(.+?)(?:\s+(asc|desc|min|max))?\s*", re.IGNORECASE)


# The characters MLflow accepts in a metric key (mlflow/utils/validation.py).
METRIC_KEY = re.compile(r"[/\w.\- :]+")
METRIC_PREFIX = "_m_"

# Where `mlflow-fun best` reads runs from, the same words as the job's `--source`:
# the tracking server's REST API, MLflow's Python client, MLflow's database, the job's tables.
SOURCES = ("rest", "api", "db", "table")
# How the answer is computed: `auto` lets the server (or the database) sort and filter what
# it can and pandas do the rest; `pandas` and `spark` compute on a typed DataFrame of every run.
ENGINES = ("auto", "pandas", "spark")
# Spark builds its DataFrame from the REST API or reads the tables.
SPARK_SOURCES = ("rest", "table")


@dataclass(frozen=True)
class OrderKey:
    """One ordering key: a metric key or column name, and its direction."""

    name: str
    ascending: bool = True


@dataclass(frozen=True)
class RankedRun:
    """One run of a query's answer, with the values it was ranked by."""

    run_id: str
    experiment_id: str
    values: Mapping[str, Any]


def parse_order_by(text: str, words: tuple[str, str] = ("asc", "desc")) -> tuple[OrderKey, ...]:
    """Parse ``"rmse asc, mae"`` (or ``"rmse min, r2 max"`` with ``words=("min", "max")``).

    Raises:
        ConfigError: An item is empty or its direction is not one of ``words``.
    """
    keys = []
    for item in text.split(","):
        match = _ORDER_ITEM.fullmatch(item)
        if not item.strip() or match is None:
            raise ConfigError(f"{text!r}: empty item; write e.g. 'rmse {words[0]}, mae {words[0]}'")
        direction = (match.group(2) or words[0]).lower()
        if direction not in words:
            raise ConfigError(f"{text!r}: {direction!r} is not {words[0]} or {words[1]}")
        name = match.group(1).strip()
        if len(name) > 1 and name.startswith("`") and name.endswith("`"):
            name = name[1:-1]
        keys.append(OrderKey(name, direction == words[0]))
    return tuple(keys)


@dataclass(frozen=True)
class BestQuery:
    """What "best" means: an order (or a Pareto front), a condition, how many runs."""

    order_by: tuple[OrderKey, ...] = ()
    pareto: tuple[OrderKey, ...] = ()
    where: str | None = None
    top: int = 1

    def __post_init__(self) -> None:
        if bool(self.order_by) == bool(self.pareto):
            raise ConfigError("give either an order (--metric or --order-by) or --pareto")
        if self.top < 1:
            raise ConfigError(f"--top {self.top} must be at least 1")

    @property
    def is_single_metric(self) -> bool:
        """One metric, no condition, one run: the server can answer it by itself."""
        return len(self.order_by) == 1 and self.where is None and self.top == 1


def metric_keys(metric: str) -> list[str]:
    """The MLflow metric keys ``metric`` may name: itself, then without its ``_m_`` prefix.

    Example:
        >>> metric_keys("_m_rmse")
        ['_m_rmse', 'rmse']

    Raises:
        MetricNotFoundError: Neither is a valid MLflow metric key.
    """
    candidates = [metric]
    if metric.startswith(METRIC_PREFIX) and len(metric) > len(METRIC_PREFIX):
        candidates.append(metric[len(METRIC_PREFIX) :])
    keys = [key for key in candidates if METRIC_KEY.fullmatch(key)]
    if not keys:
        raise MetricNotFoundError(
            f"{metric!r} is not a valid MLflow metric key (letters, digits, _ - . / : space)"
        )
    return keys


def no_value_error(experiment_id: object, metric: str) -> MetricNotFoundError:
    """The error of a best-run question that no run answers: every value missing or NaN."""
    return MetricNotFoundError(
        f"no run of experiment {experiment_id} has a value of metric {metric!r} that is not NaN"
    )
