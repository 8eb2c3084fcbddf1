"""MLflow 3's logged models from every source: the REST API, MLflow's client (over the
server and on the database) and MLflow's database read directly give the same records,
and the job with ``--source db --with-models`` writes the REST job's rows.

The stores: the session's sqlite server and a throwaway PostgreSQL under a server of its
own. Each holds the same models: three ElasticNets logged with ``mlflow.sklearn.log_model``
in runs and measured on two named datasets, a FAILED one of a type, a PENDING one outside
any run and a deleted one. An MLflow 2.22 server and its database have no logged models.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import mlflow
import mlflow.sklearn
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.tracking._tracking_service.utils import _use_tracking_uri
from sklearn.linear_model import ElasticNet

from mlflow_fun.config import JobConfig
from mlflow_fun.extract.client_models import read_logged_models_with_client
from mlflow_fun.extract.database.logged_models import read_logged_models_from_db
from mlflow_fun.extract.database.schema import safe_url
from mlflow_fun.extract.http import MlflowHttpClient
from mlflow_fun.extract.local_server import LocalMlflowServer
from mlflow_fun.extract.logged_models import LoggedModelRecord, read_logged_models
from mlflow_fun.load.job import run_job
from tests.db_servers import postgres_server
from tests.mlflow_versions import mlflow_python
from tests.seed import Seeded

# alpha -> (rmse on wine-train, rmse on wine-test, r2 on wine-test)
SCORES = {0.1: (0.50, 0.80, 0.30), 0.5: (0.60, 0.70, 0.40), 1.0: (0.70, 0.75, 0.35)}
# Explicit times: the order of a model's metrics (time, step, key, ...) is known.
TRAIN_MS, TEST_MS, LOSS_MS = 1_700_000_001_000, 1_700_000_002_000, 1_700_000_003_000
# MLflow's database keeps +inf as the largest double, and every source says so.
LARGEST = 1.7976931348623157e308

MODEL_COLUMNS = (
    "model_id, name, experiment_id, source_run_id, model_type, status, "
    "unix_millis(creation_time), unix_millis(last_updated_time), artifact_location, "
    "map_entries(params), map_entries(tags)"
)
METRIC_COLUMNS = (
    "model_id, experiment_id, key, value, step, unix_millis(timestamp), dataset_name, "
    "dataset_digest, run_id"
)


@dataclass(frozen=True)
class ModelStore:
    """A database, the tracking server over it, and the models logged there."""

    name: str
    db_url: str
    server_url: str
    experiment_ids: tuple[str, ...]
    run_ids: dict[float, str]
    deleted: str


def _frame(seed: int) -> pd.DataFrame:
    frame = pd.DataFrame(
        {"acidity": [0.1 * seed, 0.5, 0.9, 0.3], "alcohol": [0.4, 0.2 * seed, 0.8, 0.6]}
    )
    frame["quality"] = 3 * frame["alcohol"] - frame["acidity"]
    return frame


def _log_models(url: str) -> tuple[tuple[str, ...], dict[float, str], str]:
    """Log the models (see the module's docstring) at ``url``; return the experiment ids,
    the runs by alpha and the deleted model's id."""
    client = MlflowClient(url)
    wine = client.create_experiment("model-sources-wine")
    other = client.create_experiment("model-sources-other")
    train, test = _frame(1), _frame(2)
    train_set = mlflow.data.from_pandas(train, name="wine-train", targets="quality")
    test_set = mlflow.data.from_pandas(test, name="wine-test", targets="quality")
    run_ids: dict[float, str] = {}
    previous_env = os.environ.get("MLFLOW_TRACKING_URI")
    # The fluent API only inside this block and inside runs: nothing goes to ./mlflow.db.
    with _use_tracking_uri(url):
        for alpha, (train_rmse, test_rmse, test_r2) in SCORES.items():
            with mlflow.start_run(experiment_id=wine) as run:
                model = ElasticNet(alpha=alpha, l1_ratio=0.5, random_state=0)
                model.fit(train.drop(columns="quality"), train["quality"])
                info = mlflow.sklearn.log_model(
                    model,
                    name="enet-" + str(alpha).replace(".", "_"),
                    params={"alpha": str(alpha), "l1_ratio": "0.5"},
                    tags={"family": "elasticnet"},
                    pip_requirements=["scikit-learn"],  # no inference of the environment
                )
                mlflow.log_metrics(
                    {"rmse": train_rmse},
                    model_id=info.model_id,
                    dataset=train_set,
                    timestamp=TRAIN_MS,
                )
                mlflow.log_metrics(
                    {"rmse": test_rmse, "r2": test_r2},
                    model_id=info.model_id,
                    dataset=test_set,
                    timestamp=TEST_MS,
                )
                mlflow.log_metric("loss", alpha, step=3, model_id=info.model_id, timestamp=LOSS_MS)
                if alpha == 1.0:
                    mlflow.log_metric("upper", math.inf, model_id=info.model_id, timestamp=LOSS_MS)
                run_ids[alpha] = run.info.run_id
    if previous_env is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = previous_env
    failed = client.create_logged_model(
        other, name="agent", model_type="agent", params={"temperature": "0.2"}, tags={"team": ""}
    )
    client.finalize_logged_model(failed.model_id, "FAILED")
    client.create_logged_model(other, name="draft")
    deleted = client.create_logged_model(wine, name="gone", params={"alpha": "9"})
    client.delete_logged_model(deleted.model_id)
    return (wine, other), run_ids, deleted.model_id


@pytest.fixture(scope="module")
def sqlite_model_store(mlflow_server: LocalMlflowServer, seeded: Seeded) -> ModelStore:
    db_url = f"sqlite:///{mlflow_server.root / 'mlflow.db'}"
    ids, run_ids, deleted = _log_models(seeded.url)
    return ModelStore("sqlite", db_url, seeded.url, ids, run_ids, deleted)


@pytest.fixture(scope="module")
def postgresql_model_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelStore]:
    root = tmp_path_factory.mktemp("mlflow_pg_models")
    with postgres_server() as db_url, LocalMlflowServer(root, backend_store_uri=db_url) as server:
        ids, run_ids, deleted = _log_models(server.url)
        yield ModelStore("postgresql", db_url, server.url, ids, run_ids, deleted)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def model_store(request: pytest.FixtureRequest) -> ModelStore:
    return request.getfixturevalue(f"{request.param}_model_store")  # type: ignore[no-any-return]


def _summary(models: list[LoggedModelRecord]) -> list[tuple[Any, ...]]:
    return [
        (m.name, m.experiment_id, m.status, m.model_type, m.source_run_id, dict(m.params))
        for m in models
    ]


def test_every_reader_gives_the_same_records(model_store: ModelStore) -> None:
    ids, run_ids = model_store.experiment_ids, model_store.run_ids
    by_rest = read_logged_models(MlflowHttpClient(model_store.server_url), ids, page_size=2)
    by_client = read_logged_models_with_client(
        MlflowClient(model_store.server_url), ids, page_size=2
    )
    by_store = read_logged_models_with_client(MlflowClient(model_store.db_url), ids)
    by_database = read_logged_models_from_db(model_store.db_url, ids)
    assert by_rest is not None
    assert by_client == by_rest
    assert by_store == by_rest
    assert by_database == by_rest
    wine, other = ids
    assert sorted(_summary(by_rest)) == [
        ("agent", other, "FAILED", "agent", None, {"temperature": "0.2"}),
        ("draft", other, "PENDING", None, None, {}),
        ("enet-0_1", wine, "READY", None, run_ids[0.1], {"alpha": "0.1", "l1_ratio": "0.5"}),
        ("enet-0_5", wine, "READY", None, run_ids[0.5], {"alpha": "0.5", "l1_ratio": "0.5"}),
        ("enet-1_0", wine, "READY", None, run_ids[1.0], {"alpha": "1.0", "l1_ratio": "0.5"}),
    ]
    assert model_store.deleted not in {m.model_id for m in by_rest}
    assert [(m.experiment_id, m.model_id) for m in by_rest] == sorted(
        (m.experiment_id, m.model_id) for m in by_rest
    )
    by_name = {m.name: m for m in by_rest}
    assert by_name["agent"].tags["team"] == ""
    assert by_name["enet-0_1"].tags["family"] == "elasticnet"
    assert all(m.artifact_location and m.model_id in m.artifact_location for m in by_rest)
    assert all(m.creation_time and m.last_updated_time for m in by_rest)
    assert [
        (x.key, x.value, x.step, x.timestamp, x.dataset_name, x.run_id)
        for x in by_name["enet-1_0"].metrics
    ] == [
        ("rmse", 0.70, 0, TRAIN_MS, "wine-train", run_ids[1.0]),
        ("r2", 0.35, 0, TEST_MS, "wine-test", run_ids[1.0]),
        ("rmse", 0.75, 0, TEST_MS, "wine-test", run_ids[1.0]),
        ("upper", LARGEST, 0, LOSS_MS, None, run_ids[1.0]),  # same time: step 0 first
        ("loss", 1.0, 3, LOSS_MS, None, run_ids[1.0]),
    ]
    assert sum(len(m.metrics) for m in by_rest) == 13
    assert (by_name["agent"].metrics, by_name["draft"].metrics) == ((), ())
    digests = {(x.dataset_name, x.dataset_digest) for m in by_rest for x in m.metrics}
    assert len(digests) == 3 and (None, None) in digests
    assert all(d is None or len(d) == 8 for _, d in digests)


def test_one_experiment_a_repeated_one_and_none(model_store: ModelStore) -> None:
    _, other = model_store.experiment_ids
    client = MlflowClient(model_store.server_url)
    only_other = read_logged_models(MlflowHttpClient(model_store.server_url), [other, other])
    assert sorted(m.name for m in only_other or ()) == ["agent", "draft"]
    assert read_logged_models_with_client(client, [other, other]) == only_other
    assert read_logged_models_from_db(model_store.db_url, [other, other]) == only_other
    assert read_logged_models_with_client(client, []) == []
    assert read_logged_models_from_db(model_store.db_url, []) == []


def _rows(spark: Any, database: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    models = spark.sql(f"select {MODEL_COLUMNS} from {database}.logged_models").collect()
    metrics = spark.sql(f"select {METRIC_COLUMNS} from {database}.model_metrics").collect()
    hashable = [tuple(map(_plain, r)) for r in models]
    return sorted(hashable), sorted(tuple(r) for r in metrics)


def _plain(value: Any) -> Any:
    """A map's entries (a list of Rows) as a tuple of pairs."""
    return tuple(tuple(entry) for entry in value) if isinstance(value, list) else value


def test_the_job_from_the_database_writes_the_rest_jobs_rows(
    spark: Any, model_store: ModelStore, caplog: pytest.LogCaptureFixture
) -> None:
    rest_db, db_db = f"models_rest_{model_store.name}", f"models_db_{model_store.name}"
    by_server = JobConfig(
        database=rest_db,
        experiment_ids=model_store.experiment_ids,
        tracking_uri=model_store.server_url,
        with_models=True,
    )
    by_database = replace(by_server, database=db_db, source="db", connection=model_store.db_url)
    run_job(by_server, spark=spark, progress=False)
    with caplog.at_level(logging.INFO, logger="mlflow_fun.load.job"):
        result = run_job(by_database, spark=spark, progress=False)
    assert [r.status for r in result.results] == ["ok", "ok"]
    said = [r.getMessage() for r in caplog.records if "logged_models and" in r.getMessage()]
    assert len(said) == 1
    assert said[0].startswith(
        f"logged_models and model_metrics written database={db_db} experiments=2 models=5 "
        "metrics=13 seconds="
    )
    model_rows, metric_rows = _rows(spark, db_db)
    assert (model_rows, metric_rows) == _rows(spark, rest_db)
    assert (len(model_rows), len(metric_rows)) == (5, 13)
    assert sorted(r[1] for r in model_rows) == [
        "agent",
        "draft",
        "enet-0_1",
        "enet-0_5",
        "enet-1_0",
    ]
    assert model_store.deleted not in {r[0] for r in model_rows + metric_rows}


def test_mlflow_2_has_no_logged_models(
    spark: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    database = "models_db_v2"
    with LocalMlflowServer(tmp_path, python=mlflow_python("2.22.5")) as server:
        # MLflow 3's client on the 2.x database itself would upgrade its schema: not here.
        assert read_logged_models(MlflowHttpClient(server.url), ["0"]) is None
        assert read_logged_models_with_client(MlflowClient(server.url), ["0"]) is None
        assert read_logged_models_from_db(server.backend_store_uri, ["0"]) is None
        config = JobConfig(
            database=database,
            experiment_ids=("0",),
            source="db",
            connection=server.backend_store_uri,
            with_models=True,
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
            f"{safe_url(server.backend_store_uri)} has no logged models (MLflow 2.x): "
            "logged_models and model_metrics not written",
        )
    ]
    assert not spark.catalog.tableExists(f"{database}.logged_models")
    assert not spark.catalog.tableExists(f"{database}.model_metrics")
