"""MLflow 3's own sklearn autologging against the real server: ``logged_models``,
``model_metrics`` and ``model_versions`` equal MLflow's searches, and an incremental
refresh after a new model, a new version, an alias move and new metric steps equals a
full refresh of the same data.

What autologging records (MLflow 3.17): each ``fit`` logs a model named ``model`` (a
``GridSearchCV`` also logs ``best_estimator``, whose metrics are the cv results of the
best candidate's child run) and registers it when ``registered_model_name`` is set. Its
training metrics are measured on a dataset named ``dataset`` (autologging names none); a
post-training ``model.score(X_test, y_test)`` lands on the model without a dataset (the
variable's name is only in the key). Named datasets come from ``mlflow.models.evaluate``,
which logs each of its metrics to the model twice.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import mlflow
import mlflow.sklearn
import pytest
from chispa import assert_df_equality
from mlflow import MlflowClient
from mlflow.entities import Metric
from mlflow.tracking._tracking_service.utils import _use_tracking_uri
from sklearn.linear_model import ElasticNet
from sklearn.model_selection import GridSearchCV

from mlflow_fun.config import JobConfig
from mlflow_fun.load.job import run_job
from tests.integration.test_logged_models import METRIC_COLUMNS, MODEL_COLUMNS, _frame, _mlflow
from tests.integration.test_registry import COLUMNS as VERSION_COLUMNS
from tests.integration.test_registry import _registry
from tests.seed import Seeded

DATABASE = "autolog_models"  # every refresh: full the first time, then incremental
FULL = "autolog_models_full"  # one full refresh at the end, to compare with
REGISTERED = "autolog-wine"
# mlflow.models.evaluate's regressor metrics; "score" fails on a GridSearchCV (its score
# takes no sample_weight: one WARNING line from MLflow, no value).
EVALUATED = 10
# training_{mean_absolute_error, mean_squared_error, r2_score, root_mean_squared_error,
# score}, on autologging's unnamed "dataset"; a GridSearchCV adds best_cv_score.
TRAINING = 5
# val_rmse of the run still training: three steps before the first refresh, two after.
FIRST_STEPS = (0.9, 0.7, 0.8)
LATER_STEPS = (0.6, 0.65)
# Each table, the columns that order it for the comparison of the two databases.
ORDER = {
    "runs": "run_id",
    "metric_history": "run_id, key, step, timestamp, value",
    "metric_summary": "run_id, key",
    "logged_models": "model_id",
    "model_metrics": "model_id, key, dataset_name, timestamp, step, value, run_id",
    "model_versions": "name, version",
}
BEST_ON_TEST_SQL = f"""
select m.name, m.source_run_id, mm.value
from {DATABASE}.model_metrics mm join {DATABASE}.logged_models m on m.model_id = mm.model_id
where mm.key = 'root_mean_squared_error' and mm.dataset_name = 'wine-test'
order by mm.value, m.model_id
limit 1
"""


class Autologger:
    """Fits estimators under ``mlflow.sklearn.autolog`` in one experiment, each in a run
    of its own, and evaluates each autologged model on ``wine-train`` and ``wine-test``."""

    def __init__(self, experiment_id: str) -> None:
        self.experiment_id = experiment_id
        self.train, self.test = _frame(1), _frame(2)
        self.datasets = [
            mlflow.data.from_pandas(self.train, name="wine-train", targets="quality"),
            mlflow.data.from_pandas(self.test, name="wine-test", targets="quality"),
        ]

    def fit(self, estimator: Any) -> str:
        """One autologged run: fit, score on the test split, evaluate; its run id."""
        X_train, y_train = self.train.drop(columns="quality"), self.train["quality"]
        X_test, y_test = self.test.drop(columns="quality"), self.test["quality"]
        with mlflow.start_run(experiment_id=self.experiment_id) as run:
            estimator.fit(X_train, y_train)
            # Autologging names this metric after the variable: <Estimator>_score_X_test
            # (an attribute, self.X_test, would be "unknown_dataset").
            estimator.score(X_test, y_test)
            (model,) = mlflow.search_logged_models(
                experiment_ids=[self.experiment_id],
                filter_string=f"source_run_id = '{run.info.run_id}' AND name = 'model'",
                output_format="list",
            )
            for dataset in self.datasets:
                mlflow.models.evaluate(
                    f"models:/{model.model_id}",
                    dataset,
                    model_type="regressor",
                    model_id=model.model_id,
                    evaluators=["default"],
                )
        return str(run.info.run_id)


def _autolog(url: str, autologger: Autologger, estimators: dict[str, Any]) -> dict[str, str]:
    """Fit each estimator under autologging; run ids by name. Autologging is off after,
    and the tracking URI (which MLflow also keeps in the environment) is restored."""
    previous_env = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        with _use_tracking_uri(url):  # the fluent API only inside this block
            mlflow.sklearn.autolog(
                log_input_examples=False,
                log_model_signatures=False,  # no prediction on an input example
                registered_model_name=REGISTERED,
                silent=True,
            )
            try:
                return {name: autologger.fit(model) for name, model in estimators.items()}
            finally:
                mlflow.sklearn.autolog(disable=True)
    finally:
        if previous_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous_env


@pytest.fixture(scope="module")
def autologged(seeded: Seeded, spark: Any) -> Iterator[dict[str, Any]]:
    """Three autologged fits (two ElasticNets, a GridSearchCV of two candidates), each
    ``model`` registered as a version of ``autolog-wine``, @champion on version 1; a run
    still training, with three steps of ``val_rmse``; the job run once."""
    client = MlflowClient(seeded.url)
    experiment_id = client.create_experiment("autolog-models")
    autologger = Autologger(experiment_id)
    try:
        runs = _autolog(
            seeded.url,
            autologger,
            {
                "enet-0.1": ElasticNet(alpha=0.1, random_state=0),
                "enet-1.0": ElasticNet(alpha=1.0, random_state=0),
                "grid": GridSearchCV(ElasticNet(random_state=0), {"alpha": [0.05, 0.5]}, cv=2),
            },
        )
        client.set_registered_model_alias(REGISTERED, "champion", "1")
        training = client.create_run(experiment_id, run_name="still-training").info.run_id
        client.log_batch(
            training,
            metrics=[Metric("val_rmse", v, 1000 + s, s) for s, v in enumerate(FIRST_STEPS)],
        )
        runs["still-training"] = training
        config = JobConfig(
            database=DATABASE,
            experiment_ids=(experiment_id,),
            tracking_uri=seeded.url,
            with_history=True,
            with_models=True,
            with_registry=True,
            incremental_margin_minutes=0,
        )
        (first,) = run_job(config, spark=spark, progress=False).results
        yield {
            "client": client,
            "url": seeded.url,
            "autologger": autologger,
            "experiment_id": experiment_id,
            "runs": runs,
            "config": config,
            "first": first,
        }
    finally:
        # The registry is the session server's, and test_registry asserts all of it: gone
        # even when the set-up failed half-way.
        if client.search_registered_models(filter_string=f"name = '{REGISTERED}'"):
            client.delete_registered_model(REGISTERED)


def _models(spark: Any, database: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    model_rows = spark.sql(f"select {MODEL_COLUMNS} from {database}.logged_models").collect()
    metric_rows = spark.sql(f"select {METRIC_COLUMNS} from {database}.model_metrics").collect()
    return sorted(tuple(r) for r in model_rows), sorted(tuple(r) for r in metric_rows)


def _versions(spark: Any, database: str) -> list[tuple[Any, ...]]:
    rows = spark.sql(f"select {VERSION_COLUMNS} from {database}.model_versions").collect()
    return sorted(tuple(r) for r in rows)


def _ours(versions: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Version, run id, source and aliases of each version of ``autolog-wine``."""
    return [(r[1], r[2], r[4], r[7]) for r in versions if r[0] == REGISTERED]


def test_the_tables_are_mlflows_autologged_models(spark: Any, autologged: dict[str, Any]) -> None:
    client, experiment_id, runs = (
        autologged["client"],
        autologged["experiment_id"],
        autologged["runs"],
    )
    first = autologged["first"]
    assert (first.status, first.mode, first.run_count) == ("ok", "full", 6)  # 2 grid children
    model_rows, metric_rows = _models(spark, DATABASE)
    assert (model_rows, metric_rows) == _mlflow(client, [experiment_id])
    versions = _versions(spark, DATABASE)
    assert versions == _registry(client)

    model_of = {(r[3], r[1]): r[0] for r in model_rows}  # (run, name) -> model id
    assert sorted(model_of) == sorted(
        [(runs["enet-0.1"], "model"), (runs["enet-1.0"], "model"), (runs["grid"], "model")]
        + [(runs["grid"], "best_estimator")]
    )
    # What lands on each model, by dataset (None: no dataset).
    by_dataset = Counter((r[0], r[6]) for r in metric_rows)
    for name in ("enet-0.1", "enet-1.0"):
        model_id = model_of[(runs[name], "model")]
        assert {d: by_dataset[(model_id, d)] for d in ("dataset", None)} == {
            "dataset": TRAINING,
            None: 1,
        }
        assert by_dataset[(model_id, "wine-train")] == by_dataset[(model_id, "wine-test")]
        assert by_dataset[(model_id, "wine-test")] == 2 * EVALUATED  # each value twice
    grid = model_of[(runs["grid"], "model")]
    assert [by_dataset[(grid, d)] for d in ("dataset", None, "wine-train", "wine-test")] == [
        TRAINING + 1,
        1,
        2 * (EVALUATED - 1),
        2 * (EVALUATED - 1),
    ]
    without = sorted((r[0], r[2], r[8]) for r in metric_rows if r[6] is None)
    assert without == sorted(
        [
            (model_of[(runs["enet-0.1"], "model")], "ElasticNet_score_X_test", runs["enet-0.1"]),
            (model_of[(runs["enet-1.0"], "model")], "ElasticNet_score_X_test", runs["enet-1.0"]),
            (grid, "GridSearchCV_score_X_test", runs["grid"]),
        ]
    )
    # best_estimator's metrics are the cv results, logged by the best candidate's child
    # run: its run_id is neither its source run nor any fit's run.
    best = model_of[(runs["grid"], "best_estimator")]
    best_metrics = [r for r in metric_rows if r[0] == best]
    assert sorted(r[2] for r in best_metrics) == [
        "mean_fit_time",
        "mean_score_time",
        "mean_test_score",
        "rank_test_score",
        "std_fit_time",
        "std_score_time",
        "std_test_score",
    ]
    assert {(r[3], r[6]) for r in best_metrics if r[2] == "rank_test_score"} == {(1.0, "dataset")}
    (child,) = {r[8] for r in best_metrics}
    assert child not in runs.values()
    digests = {(r[6], r[7]) for r in metric_rows if r[6] is not None}
    assert len(digests) == len({name for name, _ in digests}) == 3  # one digest per dataset

    assert _ours(versions) == [
        (1, runs["enet-0.1"], f"models:/{model_of[(runs['enet-0.1'], 'model')]}", ["champion"]),
        (2, runs["enet-1.0"], f"models:/{model_of[(runs['enet-1.0'], 'model')]}", []),
        (3, runs["grid"], f"models:/{grid}", []),
    ]
    # The best model on wine-test, from the tables: the grid's (alpha 0.05 fits best).
    rmse_on_test = {
        r[0]: r[3] for r in metric_rows if (r[2], r[6]) == ("root_mean_squared_error", "wine-test")
    }
    assert len(rmse_on_test) == 3 and min(rmse_on_test, key=rmse_on_test.__getitem__) == grid
    assert [tuple(r) for r in spark.sql(BEST_ON_TEST_SQL).collect()] == [
        ("model", runs["grid"], rmse_on_test[grid])
    ]


def test_an_incremental_refresh_equals_a_full_one(spark: Any, autologged: dict[str, Any]) -> None:
    client, experiment_id, runs = (
        autologged["client"],
        autologged["experiment_id"],
        autologged["runs"],
    )
    runs |= _autolog(
        autologged["url"],
        autologged["autologger"],
        {"enet-0.01": ElasticNet(alpha=0.01, random_state=0)},
    )
    client.set_registered_model_alias(REGISTERED, "champion", "4")  # moved from 1
    training = runs["still-training"]
    client.log_batch(
        training,
        metrics=[
            Metric("val_rmse", v, 2000 + s, s)
            for s, v in enumerate(LATER_STEPS, start=len(FIRST_STEPS))
        ],
    )
    client.set_terminated(training)

    (incremental,) = run_job(autologged["config"], spark=spark, progress=False).results
    # Pulled: the new run, and the run that was still training (its new steps, its end).
    assert (incremental.status, incremental.mode) == ("ok", "incremental")
    assert (incremental.runs_pulled, incremental.run_count) == (2, 7)
    full_config = JobConfig(
        database=FULL,
        experiment_ids=(experiment_id,),
        tracking_uri=autologged["url"],
        with_history=True,
        with_models=True,
        with_registry=True,
        full_refresh=True,
    )
    (full,) = run_job(full_config, spark=spark, progress=False).results
    assert (full.mode, full.run_count) == ("full", 7)

    for table, order in {**ORDER, f"exp_{experiment_id}": "run_id"}.items():
        columns = order.split(", ")
        merged = spark.table(f"{DATABASE}.{table}").orderBy(*columns)
        rebuilt = spark.table(f"{FULL}.{table}").orderBy(*columns)
        assert_df_equality(merged, rebuilt, allow_nan_equality=True)

    # Both equal MLflow's own searches, and hold the changes.
    model_rows, metric_rows = _models(spark, DATABASE)
    assert (model_rows, metric_rows) == _mlflow(client, [experiment_id])
    versions = _versions(spark, DATABASE)
    assert versions == _registry(client)
    new_model = {r[0] for r in model_rows if r[3] == runs["enet-0.01"]}
    assert len(model_rows) == 5 and len(new_model) == 1
    assert [(r[0], r[3]) for r in _ours(versions)] == [
        (1, []),
        (2, []),
        (3, []),
        (4, ["champion"]),
    ]
    assert _ours(versions)[3][:3] == (4, runs["enet-0.01"], f"models:/{new_model.pop()}")
    where = f"experiment_id = '{experiment_id}'"
    assert spark.table(f"{DATABASE}.runs").where(where).count() == 7
    summary = spark.sql(
        "select last, last_step, min, min_step, max, max_step, steps "
        f"from {DATABASE}.metric_summary where run_id = '{training}' and key = 'val_rmse'"
    ).collect()
    assert [tuple(r) for r in summary] == [(0.65, 4, 0.6, 3, 0.9, 0, 5)]
