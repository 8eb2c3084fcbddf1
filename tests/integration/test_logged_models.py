"""``--with-models``: ``logged_models`` and ``model_metrics`` follow the real server's
MLflow 3 logged models, logged with ``mlflow.sklearn.log_model`` and measured on two
named datasets."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.tracking._tracking_service.utils import _use_tracking_uri
from sklearn.linear_model import ElasticNet

from mlflow_fun.config import JobConfig
from mlflow_fun.extract.local_server import LocalMlflowServer
from mlflow_fun.load.job import run_job
from tests.mlflow_versions import mlflow_python
from tests.seed import Seeded

DATABASE = "logged_models_db"
# alpha -> (rmse on wine-train, rmse on wine-test, r2 on wine-test): the best model on
# wine-train (alpha 0.1) is not the best on wine-test (alpha 0.5).
SCORES = {0.1: (0.50, 0.80, 0.30), 0.5: (0.60, 0.70, 0.40), 1.0: (0.70, 0.75, 0.35)}

BEST_ON_TEST_SQL = f"""
select m.name, m.params['alpha'] as alpha, m.source_run_id, mm.value as rmse, mm.dataset_name
from {DATABASE}.model_metrics mm
join {DATABASE}.logged_models m on m.model_id = mm.model_id
where mm.key = 'rmse' and mm.dataset_name = 'wine-test'
order by mm.value, m.model_id
limit 1
"""

REGISTERED = "logged-models-wine"

# Which logged model is behind each registered version, and its rmse on wine-test?
VERSION_SQL = f"""
select mv.name, mv.version, m.name as model, m.params['alpha'] as alpha, mm.value as rmse
from {DATABASE}.model_versions mv
join {DATABASE}.logged_models m
  on m.model_id = coalesce(mv.model_id, regexp_extract(mv.source, '^models:/(m-[0-9a-f]+)$', 1))
join {DATABASE}.model_metrics mm
  on mm.model_id = m.model_id and mm.key = 'rmse' and mm.dataset_name = 'wine-test'
where mv.name = '{REGISTERED}'
"""

MODEL_COLUMNS = (
    "model_id, name, experiment_id, source_run_id, model_type, status, "
    "unix_millis(creation_time), unix_millis(last_updated_time), artifact_location, "
    "params, tags"
)
METRIC_COLUMNS = (
    "model_id, experiment_id, key, value, step, unix_millis(timestamp), dataset_name, "
    "dataset_digest, run_id"
)


def _frame(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.uniform(0, 1, (20, 3)), columns=["acidity", "sugar", "alcohol"])
    frame["quality"] = 3 * frame["alcohol"] - frame["acidity"]
    return frame


@pytest.fixture(scope="module")
def models(seeded: Seeded) -> Iterator[dict[str, Any]]:
    """Experiment ``wine`` (three runs, an ElasticNet model each, metrics on two
    datasets), ``outside`` (a model without a run, PENDING) and ``kept`` (one model, loaded
    by a job of its own)."""
    client = MlflowClient(seeded.url)
    ids = {
        name: client.create_experiment(f"logged-models-{name}")
        for name in ("wine", "outside", "kept")
    }
    train, test = _frame(1), _frame(2)
    train_set = mlflow.data.from_pandas(train, name="wine-train", targets="quality")
    test_set = mlflow.data.from_pandas(test, name="wine-test", targets="quality")
    by_alpha: dict[float, str] = {}
    run_ids: dict[float, str] = {}
    previous_env = os.environ.get("MLFLOW_TRACKING_URI")
    # The fluent API (log_model, log_metrics) only inside this block: restored after.
    with _use_tracking_uri(seeded.url):
        for alpha, (train_rmse, test_rmse, test_r2) in SCORES.items():
            with mlflow.start_run(experiment_id=ids["wine"]) as run:
                model = ElasticNet(alpha=alpha, l1_ratio=0.5, random_state=0)
                model.fit(train.drop(columns="quality"), train["quality"])
                info = mlflow.sklearn.log_model(
                    model,
                    name="enet-" + str(alpha).replace(".", "_"),  # no "." in a name
                    params={"alpha": str(alpha), "l1_ratio": "0.5"},
                    tags={"family": "elasticnet"},
                    pip_requirements=["scikit-learn"],  # no inference of the environment
                )
                mlflow.log_metrics({"rmse": train_rmse}, model_id=info.model_id, dataset=train_set)
                mlflow.log_metrics(
                    {"rmse": test_rmse, "r2": test_r2}, model_id=info.model_id, dataset=test_set
                )
                by_alpha[alpha] = info.model_id
                run_ids[alpha] = run.info.run_id
        # MLflow 3's way to register: the logged model, by its models:/ URI.
        version = mlflow.register_model(f"models:/{by_alpha[0.1]}", REGISTERED)
        outside = mlflow.initialize_logged_model(name="draft", experiment_id=ids["outside"])
        kept = mlflow.initialize_logged_model(
            name="kept", experiment_id=ids["kept"], tags={"who": "other job"}
        )
        # In a run of its own: outside one, log_metric starts a run and leaves it active
        # (MLflow ends it at exit, through the default tracking URI: ./mlflow.db).
        with mlflow.start_run(experiment_id=ids["kept"]):
            mlflow.log_metric("rmse", 0.01, model_id=kept.model_id, dataset=test_set)
    if previous_env is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = previous_env
    config = JobConfig(
        database=DATABASE,
        experiment_ids=(ids["wine"], ids["outside"]),
        tracking_uri=seeded.url,
        with_models=True,
        with_registry=True,
    )
    yield {
        "client": client,
        "ids": ids,
        "by_alpha": by_alpha,
        "run_ids": run_ids,
        "outside": outside.model_id,
        "kept": kept.model_id,
        "version": version,
        "config": config,
    }
    # The registry is the session server's, and test_registry asserts all of it.
    client.delete_registered_model(REGISTERED)


def _tables(spark: Any) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    model_rows = spark.sql(f"select {MODEL_COLUMNS} from {DATABASE}.logged_models").collect()
    metric_rows = spark.sql(f"select {METRIC_COLUMNS} from {DATABASE}.model_metrics").collect()
    return sorted(tuple(r) for r in model_rows), sorted(tuple(r) for r in metric_rows)


def _mlflow(
    client: MlflowClient, experiment_ids: list[str]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every logged model and metric as MLflow's client sees them, in the tables' columns
    ("" for no run or no type is NULL in the tables)."""
    found = client.search_logged_models(experiment_ids=experiment_ids)
    assert found.token is None
    model_rows = sorted(
        (
            m.model_id,
            m.name,
            m.experiment_id,
            m.source_run_id or None,
            m.model_type or None,
            str(m.status),
            m.creation_timestamp,
            m.last_updated_timestamp,
            m.artifact_location,
            m.params,
            m.tags,
        )
        for m in found
    )
    metric_rows = sorted(
        (
            m.model_id,
            m.experiment_id,
            x.key,
            x.value,
            x.step,
            x.timestamp,
            x.dataset_name,
            x.dataset_digest,
            x.run_id,
        )
        for m in found
        for x in m.metrics
    )
    return model_rows, metric_rows


@pytest.fixture(scope="module")
def loaded(spark: Any, models: dict[str, Any]) -> dict[str, Any]:
    """The job run twice: for ``kept`` (another job's experiment), then for ``wine`` and
    ``outside``."""
    kept_config = JobConfig(
        database=DATABASE,
        experiment_ids=(models["ids"]["kept"],),
        tracking_uri=models["config"].tracking_uri,
        with_models=True,
    )
    run_job(kept_config, spark=spark, progress=False)
    run_job(models["config"], spark=spark, progress=False)
    return models


def test_the_tables_are_mlflows_logged_models(spark: Any, loaded: dict[str, Any]) -> None:
    models, ids = loaded, loaded["ids"]
    model_rows, metric_rows = _tables(spark)
    assert (model_rows, metric_rows) == _mlflow(
        models["client"], [ids["wine"], ids["outside"], ids["kept"]]
    )
    by_alpha, run_ids = models["by_alpha"], models["run_ids"]
    assert sorted((r[1], r[3], r[5], r[9]) for r in model_rows) == [
        ("draft", None, "PENDING", {}),
        ("enet-0_1", run_ids[0.1], "READY", {"alpha": "0.1", "l1_ratio": "0.5"}),
        ("enet-0_5", run_ids[0.5], "READY", {"alpha": "0.5", "l1_ratio": "0.5"}),
        ("enet-1_0", run_ids[1.0], "READY", {"alpha": "1.0", "l1_ratio": "0.5"}),
        ("kept", None, "PENDING", {}),
    ]
    assert {r[10]["family"] for r in model_rows if r[1].startswith("enet")} == {"elasticnet"}
    assert sorted((r[0], r[2], r[3], r[6]) for r in metric_rows) == sorted(
        [(by_alpha[a], "rmse", s[0], "wine-train") for a, s in SCORES.items()]
        + [(by_alpha[a], "rmse", s[1], "wine-test") for a, s in SCORES.items()]
        + [(by_alpha[a], "r2", s[2], "wine-test") for a, s in SCORES.items()]
        + [(models["kept"], "rmse", 0.01, "wine-test")]
    )
    digests = {r[6]: r[7] for r in metric_rows}
    assert digests["wine-train"] != digests["wine-test"]
    assert all(d and len(d) == 8 for d in digests.values())
    types = {
        name: {f.name: f.dataType.simpleString() for f in spark.table(f"{DATABASE}.{name}").schema}
        for name in ("logged_models", "model_metrics")
    }
    assert types == {
        "logged_models": {
            "model_id": "string",
            "name": "string",
            "experiment_id": "string",
            "source_run_id": "string",
            "model_type": "string",
            "status": "string",
            "creation_time": "timestamp",
            "last_updated_time": "timestamp",
            "artifact_location": "string",
            "params": "map<string,string>",
            "tags": "map<string,string>",
        },
        "model_metrics": {
            "model_id": "string",
            "experiment_id": "string",
            "key": "string",
            "value": "double",
            "step": "bigint",
            "timestamp": "timestamp",
            "dataset_name": "string",
            "dataset_digest": "string",
            "run_id": "string",
        },
    }


def test_the_best_model_on_wine_test(spark: Any, loaded: dict[str, Any]) -> None:
    models = loaded
    # "kept" (0.01) is in an experiment this job does not load, but another job did.
    both = spark.sql(BEST_ON_TEST_SQL).collect()
    assert [tuple(r) for r in both] == [("kept", None, None, 0.01, "wine-test")]
    best = spark.sql(
        BEST_ON_TEST_SQL.replace(
            "where ", f"where m.experiment_id = '{models['ids']['wine']}' and "
        )
    ).collect()
    assert [tuple(r) for r in best] == [
        ("enet-0_5", "0.5", models["run_ids"][0.5], 0.70, "wine-test")
    ]


def test_the_logged_model_behind_a_registered_version(spark: Any, loaded: dict[str, Any]) -> None:
    version = loaded["version"]
    assert (version.source, version.model_id) == (f"models:/{loaded['by_alpha'][0.1]}", None)
    assert [tuple(r) for r in spark.sql(VERSION_SQL).collect()] == [
        (REGISTERED, 1, "enet-0_1", "0.1", 0.80)
    ]


def test_a_deleted_model_leaves_and_other_experiments_stay(
    spark: Any, loaded: dict[str, Any]
) -> None:
    models = loaded
    client, ids = models["client"], models["ids"]
    history = {
        name: spark.sql(f"describe history {DATABASE}.{name}").count()
        for name in ("logged_models", "model_metrics")
    }
    client.delete_logged_model(models["by_alpha"][0.5])
    run_job(models["config"], spark=spark, progress=False)
    model_rows, metric_rows = _tables(spark)
    assert (model_rows, metric_rows) == _mlflow(client, [ids["wine"], ids["outside"], ids["kept"]])
    assert sorted(r[1] for r in model_rows) == ["draft", "enet-0_1", "enet-1_0", "kept"]
    assert models["by_alpha"][0.5] not in {r[0] for r in metric_rows}
    for name, commits in history.items():
        latest = spark.sql(f"describe history {DATABASE}.{name}").collect()
        assert len(latest) == commits + 1, name  # one commit per table per job run
        parameters = latest[0]["operationParameters"]
        assert (latest[0]["operation"], parameters["mode"]) == ("WRITE", "Overwrite")
        # Only the loaded experiments' rows replaced: "kept" is another job's.
        assert parameters["predicate"] == f"experiment_id IN ('{ids['wine']}', '{ids['outside']}')"


def test_a_store_uri_reads_the_models_with_mlflows_client(
    spark: Any,
    models: dict[str, Any],
    mlflow_server: LocalMlflowServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    database = "logged_models_from_store"
    store = mlflow_server.backend_store_uri  # sqlite:///...: MLflow's client, not REST
    config = JobConfig(
        database=database,
        experiment_ids=(models["ids"]["wine"],),
        tracking_uri=store,
        with_models=True,
    )
    with caplog.at_level(logging.INFO, logger="mlflow_fun.load.job"):
        run_job(config, spark=spark, progress=False)
    expected = _mlflow(models["client"], [models["ids"]["wine"]])
    counts = f"models={len(expected[0])} metrics={len(expected[1])}"
    written = [r.getMessage() for r in caplog.records if "model_metrics written" in r.getMessage()]
    assert len(written) == 1 and counts in written[0]
    model_rows = spark.sql(f"select {MODEL_COLUMNS} from {database}.logged_models").collect()
    metric_rows = spark.sql(f"select {METRIC_COLUMNS} from {database}.model_metrics").collect()
    tables = sorted(tuple(r) for r in model_rows), sorted(tuple(r) for r in metric_rows)
    assert tables == expected
    assert len(expected[0]) in (2, 3)  # three ElasticNets, one deleted by another test
    assert spark.table(f"{database}.exp_{models['ids']['wine']}").count() == len(SCORES)


def test_a_table_that_cannot_be_written_is_one_warning(
    spark: Any, models: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    database = "logged_models_blocked"
    spark.sql(f"create database if not exists {database}")
    # A constraint someone added that the models break: the write fails, nothing changes.
    spark.sql(f"create table {database}.logged_models (experiment_id string) using delta")
    spark.sql(f"alter table {database}.logged_models add constraint e check (experiment_id = 'x')")
    config = JobConfig(
        database=database,
        experiment_ids=(models["ids"]["wine"],),
        tracking_uri=models["config"].tracking_uri,
        with_models=True,
    )
    with caplog.at_level(logging.WARNING, logger="mlflow_fun.load.job"):
        result = run_job(config, spark=spark, progress=False)
    assert [r.status for r in result.results] == ["ok"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(
        f"logged_models and model_metrics not written database={database} error="
    )
    assert "[DELTA_REPLACE_WHERE_MISMATCH] Written data does not conform" in warnings[0]
    assert spark.table(f"{database}.logged_models").count() == 0
    assert not spark.catalog.tableExists(f"{database}.model_metrics")


def test_an_mlflow_2_server_has_no_logged_models(
    spark: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    database = "logged_models_v2"
    with LocalMlflowServer(tmp_path, python=mlflow_python("2.22.5")) as server:
        config = JobConfig(
            database=database, experiment_ids=("0",), tracking_uri=server.url, with_models=True
        )
        with caplog.at_level(logging.INFO, logger="mlflow_fun.load.job"):
            result = run_job(config, spark=spark, progress=False)
    assert [(r.experiment_id, r.status) for r in result.results] == [("0", "ok")]
    said = [
        (r.levelname, r.getMessage()) for r in caplog.records if "logged models" in r.getMessage()
    ]
    assert said == [
        (
            "INFO",
            f"{server.url} has no logged models (MLflow 2.x): logged_models and model_metrics "
            "not written",
        )
    ]
    assert not spark.catalog.tableExists(f"{database}.logged_models")
    assert not spark.catalog.tableExists(f"{database}.model_metrics")
