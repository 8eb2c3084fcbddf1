"""The classic MLflow Wine Quality example: ElasticNet runs over a grid of alpha and l1_ratio.

As in MLflow's ``examples/sklearn_elasticnet_wine``: pandas reads the CSV,
``numpy.random.seed(40)``, ``train_test_split`` with its defaults, target ``quality``,
``ElasticNet(alpha, l1_ratio, random_state=42)``; params ``alpha`` and ``l1_ratio``,
metrics ``rmse``, ``mae`` and ``r2`` on the test split. The model is not logged (the demo
is about run data, and artifacts would only slow it down).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

ALPHAS = (0.0001, 0.001, 0.01, 0.1, 0.5, 1.0)
L1_RATIOS = (0.0001, 0.001, 0.01, 0.1, 0.5)
DATA_FILE = Path(__file__).resolve().parent.parent / "data" / "wine-quality.csv"


def train_grid(
    tracking_uri: str,
    experiment_name: str = "wine-quality",
    data_file: Path = DATA_FILE,
    alphas: Sequence[float] = ALPHAS,
    l1_ratios: Sequence[float] = L1_RATIOS,
) -> str:
    """Train one ElasticNet run per (alpha, l1_ratio) and log it; return the experiment id.

    Example:
        >>> train_grid("http://127.0.0.1:5000")
        '1'
    """
    import mlflow
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import ElasticNet
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
    from sklearn.model_selection import train_test_split

    mlflow.set_tracking_uri(tracking_uri)
    experiment_id = mlflow.set_experiment(experiment_name).experiment_id
    data = pd.read_csv(data_file)
    np.random.seed(40)
    train, test = train_test_split(data)
    train_x, test_x = train.drop(["quality"], axis=1), test.drop(["quality"], axis=1)
    train_y, test_y = train[["quality"]], test[["quality"]]
    for alpha in alphas:
        for l1_ratio in l1_ratios:
            with mlflow.start_run(run_name=f"alpha={alpha} l1_ratio={l1_ratio}"):
                model = ElasticNet(alpha=alpha, l1_ratio=l1_ratio, random_state=42)
                model.fit(train_x, train_y)
                predicted = model.predict(test_x)
                rmse = math.sqrt(mean_squared_error(test_y, predicted))
                mae = mean_absolute_error(test_y, predicted)
                r2 = r2_score(test_y, predicted)
                mlflow.log_params({"alpha": alpha, "l1_ratio": l1_ratio})
                mlflow.log_metrics({"rmse": rmse, "mae": mae, "r2": r2})
            logger.info("trained alpha=%s l1_ratio=%s rmse=%.4f", alpha, l1_ratio, rmse)
    return str(experiment_id)
