"""Log runs with another MLflow version's own client and print its ``search_runs`` as JSON.

Runs under the Python of that version's venv (`tests/mlflow_versions.py`), so it imports
only MLflow, scikit-learn, pandas and numpy, never mlflow_fun::

    <venv>/bin/python tests/version_seed.py http://127.0.0.1:PORT data/wine-quality.csv OUT.json

Two experiments: ``autolog`` (sklearn autologging of a ``GridSearchCV`` over ElasticNet: a
parent run and its child runs, estimator params such as ``None``, ``True``, ``nan``; and
a k-neighbors fit: ``auto``)
and ``manual`` (metric steps, a NaN, odd keys, a failed run). The JSON holds each run as
that version's ``MlflowClient.search_runs`` returns it. (MLflow prints "View run" lines
on stdout, hence the file.)
"""

from __future__ import annotations

import json
import math
import sys
import warnings

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from sklearn.linear_model import ElasticNet
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KNeighborsRegressor


def log_autolog(data_csv: str) -> str:
    """Fit a small grid search with autologging on; return its experiment id."""
    experiment_id = mlflow.create_experiment("autolog")
    mlflow.set_experiment(experiment_id=experiment_id)
    mlflow.sklearn.autolog(log_models=False, silent=True)
    wine = pd.read_csv(data_csv).head(400)
    x, y = wine.drop(columns=["quality"]), wine["quality"]
    grid = GridSearchCV(
        ElasticNet(random_state=None), {"alpha": [0.1, 0.5], "l1_ratio": [0.2, 0.8]}, cv=2
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        grid.fit(x, y)
        KNeighborsRegressor(n_neighbors=3).fit(x, y)  # algorithm='auto', metric_params=None
    mlflow.sklearn.autolog(disable=True)
    return experiment_id


def log_manual(client: MlflowClient) -> str:
    """Runs with metric steps, a NaN, odd keys and a failed run; return the experiment id."""
    experiment_id = client.create_experiment("manual")
    for i in range(4):
        run_id = client.create_run(experiment_id, start_time=1000 + i).info.run_id
        metrics = [Metric("loss", 1.0 / (step + 1 + i), 1000 + step, step) for step in range(3)]
        metrics.append(Metric("rmse", [0.7, 0.5, math.nan, 0.9][i], 2000, 0))
        metrics.append(Metric("my key/x", float(i), 2000, 0))
        params = [Param("alpha", str(0.1 * (i + 1))), Param("layers", str(i + 1))]
        params.append(Param("flag", ["True", "False", "true", "None"][i]))
        tags = [RunTag("team", "a" if i % 2 else "b")]
        client.log_batch(run_id, metrics=metrics, params=params, tags=tags)
        client.set_terminated(run_id, "FAILED" if i == 3 else "FINISHED", end_time=5000 + i)
    return experiment_id


def search_runs(client: MlflowClient, experiment_ids: list[str]) -> list[dict[str, object]]:
    """Every active run of the experiments, as this version's client returns it."""
    runs = client.search_runs(experiment_ids, max_results=1000)
    return [
        {
            "run_id": run.info.run_id,
            "experiment_id": run.info.experiment_id,
            "status": run.info.status,
            "start_time": run.info.start_time,
            "end_time": run.info.end_time,
            "metrics": dict(run.data.metrics),
            "params": dict(run.data.params),
            "tags": dict(run.data.tags),
        }
        for run in runs
    ]


def main(url: str, data_csv: str, out: str) -> None:
    mlflow.set_tracking_uri(url)
    client = MlflowClient(url)
    ids = {"autolog": log_autolog(data_csv), "manual": log_manual(client)}
    document = {
        "mlflow_version": mlflow.__version__,
        "experiments": ids,
        "runs": search_runs(client, list(ids.values())),
    }
    with open(out, "w", encoding="utf-8") as handle:
        json.dump(document, handle)  # NaN as NaN: Python's json reads it back


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
