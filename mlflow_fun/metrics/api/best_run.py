"""Best run straight from MLflow: the server sorts (``order_by``) and sends one run.

Two roads: MLflow's Python client (`get_best_run`) and one REST ``runs/search`` call
(`get_best_run_fast`). Both answer like the builders: runs without the metric or with
NaN are skipped (MLflow sorts them last), ties go to the earliest ``start_time``, then
the smallest ``run_id``.
"""

from __future__ import annotations

import math
import re

from mlflow_fun.client.http_client import MlflowHttpClient
from mlflow_fun.client.sources import (
    MlflowClientSource,
    RestSource,
    RunSource,
    resolve_tracking_uri,
)
from mlflow_fun.errors import MetricNotFoundError

# The characters MLflow accepts in a metric key (mlflow/utils/validation.py).
_METRIC_KEY = re.compile(r"[/\w.\- :]+")


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
    candidates = [metric]
    if metric.startswith("_m_") and len(metric) > 3:
        candidates.append(metric[3:])
    for key in candidates:
        if not _METRIC_KEY.fullmatch(key):
            continue
        direction = "ASC" if ascending else "DESC"
        runs = list(
            source.iter_runs(
                experiment.experiment_id,
                order_by=[f"metrics.`{key}` {direction}", "attributes.start_time ASC"],
                max_results=1,
            )
        )
        if runs and key in runs[0].metrics and not math.isnan(runs[0].metrics[key]):
            return runs[0].run_id, runs[0].metrics[key]
    if not _METRIC_KEY.fullmatch(metric):
        raise MetricNotFoundError(
            f"{metric!r} is not a valid MLflow metric key (letters, digits, _ - . / : space)"
        )
    raise MetricNotFoundError(
        f"no run of experiment {experiment.experiment_id} has a value of metric {metric!r} "
        "that is not NaN"
    )
