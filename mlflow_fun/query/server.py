"""Best run straight from MLflow: the server sorts (``order_by``) and sends one run.

Two roads: MLflow's Python client (`get_best_run`) and one REST ``runs/search`` call
(`get_best_run_fast`). Both answer like the builders: runs without the metric or with
NaN are skipped (MLflow sorts them last), ties go to the earliest ``start_time``, then
the smallest ``run_id``.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from mlflow_fun.extract.http import MlflowHttpClient
from mlflow_fun.extract.mlflow_client import MlflowClientSource
from mlflow_fun.extract.open import resolve_tracking_uri
from mlflow_fun.extract.rest import RestSource
from mlflow_fun.extract.source import RunSource
from mlflow_fun.query.model import metric_keys, no_value_error

logger = logging.getLogger(__name__)


def get_best_run(
    experiment_id: str,
    metric: str,
    ascending: bool = True,
    tracking_uri: str | None = None,
) -> tuple[str, float]:
    """Best run through ``mlflow.MlflowClient().search_runs(order_by=..., max_results=1)``.

    Example:
        >>> get_best_run("1", "rmse")
        ('5f0c…', 0.7223)

    Args:
        experiment_id: The experiment.
        metric: ``rmse`` or ``_m_rmse``.
        ascending: True for the lowest value, False for the highest.
        tracking_uri: None means ``MLFLOW_TRACKING_URI`` or MLflow's default.

    Raises:
        ExperimentNotFoundError: No experiment has this id.
        MetricNotFoundError: The name is not a metric key, or no run has a value.
    """
    source = MlflowClientSource(resolve_tracking_uri(tracking_uri))
    return best_run_by_server(source, experiment_id, metric, ascending)


def get_best_run_fast(
    host: str,
    token: str | None,
    experiment_id: str,
    metric: str,
    ascending: bool = True,
) -> tuple[str, float]:
    """Best run through one REST ``runs/search`` call with ``order_by`` and one result.

    Example:
        >>> get_best_run_fast("http://127.0.0.1:5000", os.environ.get("TOKEN"), "1", "rmse")
        ('5f0c…', 0.7223)

    Args:
        host: Tracking server URL.
        token: Bearer token, or None.
        experiment_id: The experiment.
        metric: ``rmse`` or ``_m_rmse``.
        ascending: True for the lowest value, False for the highest.

    Raises:
        ExperimentNotFoundError: No experiment has this id.
        MetricNotFoundError: The name is not a metric key, or no run has a value.
    """
    source = RestSource(MlflowHttpClient(host, token=token), page_size=1)
    return best_run_by_server(source, experiment_id, metric, ascending)


def best_run_by_server(
    source: RunSource, experiment_id: str, metric: str, ascending: bool = True
) -> tuple[str, float]:
    """Ask ``source`` for the single best run of ``metric``, sorted by the server."""
    experiment = source.get_experiment(str(experiment_id))
    direction = "ASC" if ascending else "DESC"
    for key in metric_keys(metric):
        runs = list(
            source.iter_runs(
                experiment.experiment_id,
                order_by=[f"metrics.`{key}` {direction}", "attributes.start_time ASC"],
                max_results=1,
            )
        )
        if runs and key in runs[0].metrics and not math.isnan(runs[0].metrics[key]):
            return runs[0].run_id, runs[0].metrics[key]
    raise no_value_error(experiment.experiment_id, metric)


# MLflow's filter can say: a metric compared with a number, an attribute equal to a string.
_PUSHABLE_ATTRIBUTES = {"status": "status", "run_name": "run_name", "user_id": "user_id"}


def server_filter(where: str | None) -> str:
    """The part of ``where`` that MLflow's search filter can express, or ``""``.

    Only ``AND``-ed comparisons ``_m_<key> <op> <number>`` and ``<attribute> = '<text>'``
    are sent; the whole condition still runs after typing, so this only shrinks the pull.

    Example:
        >>> server_filter("_m_r2 > 0.1 and status = 'FINISHED' and (_p_a < 1 or _m_x = 2)")
        "metrics.`r2` > 0.1 and attributes.status = 'FINISHED'"
    """
    if not where:
        return ""
    import sqlglot
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(where, dialect="spark")
    except sqlglot.errors.ParseError:
        return ""
    conjuncts = list(tree.flatten()) if isinstance(tree, exp.And) else [tree]
    symbols: dict[type, str] = {
        exp.GT: ">",
        exp.GTE: ">=",
        exp.LT: "<",
        exp.LTE: "<=",
        exp.EQ: "=",
        exp.NEQ: "!=",
    }
    parts = []
    for conjunct in conjuncts:
        symbol = symbols.get(type(conjunct))
        left, right = conjunct.this, conjunct.expression
        if symbol is None or not isinstance(left, exp.Column) or left.table:
            continue
        if not isinstance(right, (exp.Literal, exp.Neg)):
            continue
        name = left.name
        if name.startswith("_m_") and not _is_string(right) and _plain_key(name[3:]):
            parts.append(f"metrics.`{name[3:]}` {symbol} {right.sql()}")
        elif (
            name.lower() in _PUSHABLE_ATTRIBUTES
            and symbol in ("=", "!=")
            and _is_string(right)
            and "'" not in right.this
        ):
            parts.append(f"attributes.{_PUSHABLE_ATTRIBUTES[name.lower()]} {symbol} '{right.this}'")
    return " and ".join(parts)


def _is_string(node: Any) -> bool:
    from sqlglot import exp

    return isinstance(node, exp.Literal) and bool(node.is_string)


def _plain_key(key: str) -> bool:
    return bool(key) and all(ch.isascii() and (ch.isalnum() or ch == "_") for ch in key)
