"""The classic MLflow Wine Quality example: ElasticNet runs over a grid of alpha and l1_ratio.

As in MLflow's ``examples/sklearn_elasticnet_wine``: pandas reads the CSV,
``numpy.random.seed(40)``, ``train_test_split`` with its defaults, target ``quality``,
``ElasticNet(alpha, l1_ratio, random_state=42)``; params ``alpha`` and ``l1_ratio``.

MLflow 3's logged models: each run logs its ElasticNet with ``mlflow.sklearn.log_model``
(a logged model with the params) and measures it with ``rmse``, ``mae`` and ``r2`` on two
named datasets, ``wine-train`` and ``wine-test`` (``mlflow.log_metrics(..., model_id=...,
dataset=...)``); the run's own ``rmse``, ``mae`` and ``r2`` are the ``wine-test`` ones.
`register_best` registers the best model on a dataset and points an alias at it.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

ALPHAS = (0.0001, 0.001, 0.01, 0.1, 0.5, 1.0)
L1_RATIOS = (0.0001, 0.001, 0.01, 0.1, 0.5)
DATA_FILE = Path(__file__).resolve().parent.parent / "data" / "wine-quality.csv"
# Written into each model's environment as they are: no inference of the requirements
# (MLflow would load every model in a subprocess to find its imports, about 2 s a model).
PIP_REQUIREMENTS = ("scikit-learn", "pandas", "numpy")


def train_grid(
    tracking_uri: str,
    experiment_name: str = "wine-quality",
    data_file: Path = DATA_FILE,
    alphas: Sequence[float] = ALPHAS,
    l1_ratios: Sequence[float] = L1_RATIOS,
) -> str:
    """Train one ElasticNet run per (alpha, l1_ratio), log it and its model; return the
    experiment id.

    Example:
        >>> train_grid("http://127.0.0.1:5000")
        '1'
    """
    import mlflow
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import ElasticNet
    from sklearn.model_selection import train_test_split

    mlflow.set_tracking_uri(tracking_uri)
    experiment_id = mlflow.set_experiment(experiment_name).experiment_id
    data = pd.read_csv(data_file)
    np.random.seed(40)
    train, test = train_test_split(data)
    splits = [
        (mlflow.data.from_pandas(frame, name=name, targets="quality"), frame)
        for name, frame in (("wine-train", train), ("wine-test", test))
    ]
    with warnings.catch_warnings():
        # MLflow's hint, each time a dataset is logged, that an integer column (quality)
        # cannot hold a missing value: these datasets only name what a model is measured on.
        warnings.filterwarnings("ignore", "Hint: Inferred schema contains integer", UserWarning)
        for alpha in alphas:
            for l1_ratio in l1_ratios:
                rmse = _train_one(
                    ElasticNet(alpha=alpha, l1_ratio=l1_ratio, random_state=42), train, splits
                )
                logger.info("trained alpha=%s l1_ratio=%s rmse=%.4f", alpha, l1_ratio, rmse)
    return str(experiment_id)


def _train_one(model: Any, train: Any, splits: list[tuple[Any, Any]]) -> float:
    """One run: fit ``model``, log its params, the model, and its scores on each
    (dataset, frame) of ``splits``; return the last split's rmse."""
    import mlflow
    import mlflow.sklearn

    alpha, l1_ratio = model.alpha, model.l1_ratio
    with mlflow.start_run(run_name=f"alpha={alpha} l1_ratio={l1_ratio}"):
        model.fit(train.drop(["quality"], axis=1), train[["quality"]])
        mlflow.log_params({"alpha": alpha, "l1_ratio": l1_ratio})
        info = mlflow.sklearn.log_model(
            model,
            name="elasticnet",
            params={"alpha": str(alpha), "l1_ratio": str(l1_ratio)},
            pip_requirements=list(PIP_REQUIREMENTS),
        )
        logged_at = int(time.time() * 1000)
        for offset, (dataset, frame) in enumerate(splits):
            scores = _scores(model, frame)
            # wine-test 1 ms after wine-train: a run's value of a metric is its latest,
            # so the run's rmse, mae and r2 are the wine-test ones.
            mlflow.log_metrics(
                scores, timestamp=logged_at + offset, model_id=info.model_id, dataset=dataset
            )
    return scores["rmse"]


def _scores(model: Any, frame: Any) -> dict[str, float]:
    """rmse, mae and r2 of ``model`` on ``frame`` (target ``quality``)."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    actual, predicted = frame[["quality"]], model.predict(frame.drop(["quality"], axis=1))
    return {
        "rmse": math.sqrt(mean_squared_error(actual, predicted)),
        "mae": mean_absolute_error(actual, predicted),
        "r2": r2_score(actual, predicted),
    }


def register_best(
    tracking_uri: str,
    experiment_id: str,
    model_name: str = "wine-quality",
    metric: str = "rmse",
    dataset_name: str = "wine-test",
    alias: str = "champion",
) -> tuple[str, str]:
    """Register the logged model with the lowest ``metric`` on ``dataset_name`` as a new
    version of ``model_name`` and point ``alias`` at it; return (model id, version).

    Example:
        >>> register_best("http://127.0.0.1:5000", "1")
        ('m-0f3c...', '1')
    """
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    (best,) = client.search_logged_models(
        experiment_ids=[experiment_id],
        order_by=[
            {"field_name": f"metrics.{metric}", "ascending": True, "dataset_name": dataset_name}
        ],
        max_results=1,
    )
    mlflow.set_tracking_uri(tracking_uri)
    version = mlflow.register_model(f"models:/{best.model_id}", model_name).version
    client.set_registered_model_alias(model_name, alias, version)
    return best.model_id, str(version)
