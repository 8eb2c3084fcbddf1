"""The readers of MLflow 3's logged models besides REST: MLflow's entities and the rows of
its database into the records the REST reader makes, the one order of models and metrics,
the status words, the client reader's pages, retries and errors, and the database reader
on small sqlite files."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from mlflow.entities import LoggedModel, LoggedModelStatus, Metric
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    ENDPOINT_NOT_FOUND,
    INVALID_PARAMETER_VALUE,
    RESOURCE_DOES_NOT_EXIST,
)
from mlflow.store.entities import PagedList
from mlflow.utils.proto_json_utils import message_to_json

from mlflow_fun.errors import (
    DatabaseError,
    ExperimentNotFoundError,
    SchemaMismatchError,
    TrackingServerError,
)
from mlflow_fun.extract.client_models import (
    is_missing_search,
    logged_model_from_entity,
    read_logged_models_with_client,
)
from mlflow_fun.extract.database import logged_models as db_models
from mlflow_fun.extract.database.logged_models import (
    experiment_numbers,
    metric_from_row,
    model_from_row,
    read_logged_models_from_db,
)
from mlflow_fun.extract.http import RetrySettings
from mlflow_fun.extract.logged_models import (
    EXPERIMENTS_PER_SEARCH,
    LoggedModelRecord,
    ModelMetric,
    in_model_order,
    logged_model_from_json,
    metric_order,
    status_word,
)

RUN_ID = "246ec5386d1b46d18d41421e629bf894"
NO_RETRY = RetrySettings(max_retries=0)


def _entity(model_id: str = "m-1", **fields: Any) -> LoggedModel:
    values: dict[str, Any] = {
        "experiment_id": "3",
        "model_id": model_id,
        "name": "model",
        "artifact_location": f"/srv/artifacts/3/models/{model_id}/artifacts",
        "creation_timestamp": 1_700_000_000_000,
        "last_updated_timestamp": 1_700_000_000_500,
        **fields,
    }
    return LoggedModel(**values)


def _record(experiment_id: str, model_id: str, *metrics: ModelMetric) -> LoggedModelRecord:
    return LoggedModelRecord(
        model_id, "model", experiment_id, None, None, "READY", 1, 2, "/a", {}, {}, metrics
    )


# Logged at 20 (step 1 then 0), at 10, and with no time: in time, step, key order after.
LATE_STEP_1 = ModelMetric("rmse", 0.5, 1, 20, "wine-test", "d2", RUN_ID)
LATE_STEP_0 = ModelMetric("rmse", 0.6, 0, 20, "wine-test", "d2", RUN_ID)
LATE_R2 = ModelMetric("r2", 0.3, 0, 20, "wine-test", "d2", RUN_ID)
EARLY = ModelMetric("rmse", 0.9, 0, 10, "wine-train", "d1", RUN_ID)
TIMELESS = ModelMetric("loss", 1.0, 0, None, None, None, None)


def test_status_words_from_every_spelling() -> None:
    assert [status_word(s) for s in ("LOGGED_MODEL_READY", "LOGGED_MODEL_UPLOAD_FAILED")] == [
        "READY",
        "FAILED",
    ]
    assert [status_word(s) for s in (0, 1, 2, 3)] == ["UNSPECIFIED", "PENDING", "READY", "FAILED"]
    assert [status_word(s) for s in LoggedModelStatus] == [
        "UNSPECIFIED",
        "PENDING",
        "READY",
        "FAILED",
    ]
    assert [status_word(s) for s in ("READY", "SOMETHING_NEW", 7, "", None)] == [
        "READY",
        "SOMETHING_NEW",
        "7",
        None,
        None,
    ]
    assert status_word(True) == "True"  # not the integer 1


def test_models_by_experiment_and_id_metrics_by_time_step_and_key() -> None:
    models = [
        _record("2", "m-b", LATE_STEP_1, EARLY, LATE_R2, TIMELESS, LATE_STEP_0),
        _record("10", "m-z"),
        _record("2", "m-a"),
    ]
    ordered = in_model_order(models)
    assert [(m.experiment_id, m.model_id) for m in ordered] == [
        ("10", "m-z"),  # experiment ids are strings, compared as MLflow's REST sends them
        ("2", "m-a"),
        ("2", "m-b"),
    ]
    assert ordered[2].metrics == (TIMELESS, EARLY, LATE_R2, LATE_STEP_0, LATE_STEP_1)
    assert models[0].metrics[0] is LATE_STEP_1  # the input is left as it was
    assert in_model_order([]) == []
    assert metric_order(TIMELESS) == (-1, 0, "loss", "", "", "")


def test_an_entity_is_the_record_of_its_rest_json() -> None:
    entity = _entity(
        source_run_id=RUN_ID,
        model_type="",
        status=LoggedModelStatus.READY,
        tags={"mlflow.user": "root", "team": ""},
        params={"alpha": "0.5"},
        metrics=[
            Metric("rmse", 0.7, 1_700_000_000_100, 0, dataset_name="wine-test",
                   dataset_digest="3999e9f8", run_id=RUN_ID, model_id="m-1"),
            Metric("loss", 1e308, 1_700_000_000_200, 4, run_id=RUN_ID, model_id="m-1"),
        ],
    )  # fmt: skip
    # What MLflow's server sends for it, read by the REST reader.
    rest_json = json.loads(message_to_json(entity.to_proto()))
    record = logged_model_from_entity(entity)
    assert record == logged_model_from_json(rest_json)
    assert (record.model_type, record.status, record.source_run_id) == (None, "READY", RUN_ID)
    assert record.tags == {"mlflow.user": "root", "team": ""}
    assert [(m.key, m.step, m.dataset_name, m.dataset_digest) for m in record.metrics] == [
        ("rmse", 0, "wine-test", "3999e9f8"),
        ("loss", 4, None, None),
    ]


def test_an_entity_without_run_type_or_data() -> None:
    entity = _entity("m-2", status=LoggedModelStatus.PENDING)
    record = logged_model_from_entity(entity)
    assert record == logged_model_from_json(json.loads(message_to_json(entity.to_proto())))
    assert record == LoggedModelRecord(
        model_id="m-2",
        name="model",
        experiment_id="3",
        source_run_id=None,
        model_type=None,
        status="PENDING",
        creation_time=1_700_000_000_000,
        last_updated_time=1_700_000_000_500,
        artifact_location="/srv/artifacts/3/models/m-2/artifacts",
        params={},
        tags={},
        metrics=(),
    )
    assert logged_model_from_entity(_entity("m-3", status=3)).status == "FAILED"


class _Client:
    """MLflow's client as far as the reader uses it: pages of models, or failures."""

    def __init__(self, pages: int = 2, failures: list[Exception] | None = None) -> None:
        self.tracking_uri = "http://bob:s3cret@mlflow.example:5000?token=x"
        self.pages = pages
        self.failures = list(failures or [])
        self.calls: list[tuple[tuple[str, ...], int, str | None]] = []

    def search_logged_models(
        self, experiment_ids: list[str], max_results: int, page_token: str | None
    ) -> PagedList[LoggedModel]:
        self.calls.append((tuple(experiment_ids), max_results, page_token))
        if self.failures:
            raise self.failures.pop(0)
        page = int(page_token or 0)
        token = str(page + 1) if page + 1 < self.pages else None
        first = experiment_ids[0]
        return PagedList([_entity(f"m-{first}-p{page}", experiment_id=first)], token)


def test_the_client_reader_pages_each_batch_of_experiments() -> None:
    client = _Client(pages=2)
    ids = [str(i) for i in range(EXPERIMENTS_PER_SEARCH + 1)]
    models = read_logged_models_with_client(client, ids, page_size=7, retry=NO_RETRY)  # type: ignore[arg-type]
    first, last = tuple(ids[:EXPERIMENTS_PER_SEARCH]), (ids[-1],)
    assert client.calls == [(first, 7, None), (first, 7, "1"), (last, 7, None), (last, 7, "1")]
    assert [m.model_id for m in models or ()] == ["m-0-p0", "m-0-p1", "m-100-p0", "m-100-p1"]
    assert read_logged_models_with_client(client, [], retry=NO_RETRY) == []  # type: ignore[arg-type]


def test_no_logged_models_is_none() -> None:
    html_404 = MlflowException(
        "API request to endpoint /api/2.0/mlflow/logged-models/search failed with error code "
        "404 != 200. Response body: '<!doctype html>'",
        error_code=ENDPOINT_NOT_FOUND,
    )  # what MLflow 3.17's client raises for an MLflow 2.22 server
    assert is_missing_search(html_404)
    client = _Client(failures=[html_404])
    assert read_logged_models_with_client(client, ["1"], retry=NO_RETRY) is None  # type: ignore[arg-type]
    assert len(client.calls) == 1
    assert read_logged_models_with_client(object(), ["1"]) is None  # type: ignore[arg-type]


def test_a_transient_failure_is_retried() -> None:
    cut = MlflowException("API request to http://h failed with exception ('Connection reset')")
    client = _Client(pages=1, failures=[cut])
    retry = RetrySettings(max_retries=1, backoff_factor=0, backoff_jitter=0)
    models = read_logged_models_with_client(client, ["4"], retry=retry)  # type: ignore[arg-type]
    assert [m.model_id for m in models or ()] == ["m-4-p0"]
    assert len(client.calls) == 2


@pytest.mark.parametrize("code", [RESOURCE_DOES_NOT_EXIST, INVALID_PARAMETER_VALUE])
def test_other_failures_are_one_line(code: int) -> None:
    failure = MlflowException("bad experiment id 'x'\nsecond line", error_code=code)
    assert not is_missing_search(failure)
    client = _Client(failures=[failure])
    with pytest.raises(TrackingServerError) as caught:
        read_logged_models_with_client(client, ["x"], retry=NO_RETRY)  # type: ignore[arg-type]
    assert str(caught.value) == (
        "MLflow's client failed at http://mlflow.example:5000 (search_logged_models): "
        "bad experiment id 'x'"
    )
    assert caught.value.endpoint == "search_logged_models"


def test_rows_of_the_database_are_the_rest_records() -> None:
    row = ("m-1", 3, "model", "", "", 2, 1_700_000_000_000, 1_700_000_000_500, "/a/m-1")
    metric = metric_from_row(("m-1", "rmse", 0.7, 0, 1_700_000_000_100, "wine", "d1", RUN_ID))
    record = model_from_row(row, {"alpha": "0.5"}, {"team": ""}, [metric])
    assert record == LoggedModelRecord(
        model_id="m-1",
        name="model",
        experiment_id="3",
        source_run_id=None,
        model_type=None,
        status="READY",
        creation_time=1_700_000_000_000,
        last_updated_time=1_700_000_000_500,
        artifact_location="/a/m-1",
        params={"alpha": "0.5"},
        tags={"team": ""},
        metrics=(ModelMetric("rmse", 0.7, 0, 1_700_000_000_100, "wine", "d1", RUN_ID),),
    )
    assert [model_from_row((*row[:5], s, *row[6:]), {}, {}, ()).status for s in (0, 1, 3)] == [
        "UNSPECIFIED",
        "PENDING",
        "FAILED",
    ]
    blank = metric_from_row(("m-1", "loss", None, None, None, "", "", ""))
    assert math.isnan(blank.value)
    assert (blank.step, blank.timestamp, blank.dataset_name, blank.run_id) == (0, None, None, None)


def test_experiment_ids_are_whole_numbers() -> None:
    assert experiment_numbers(["3", " 1", "3"], "db") == [1, 3]
    assert experiment_numbers([], "db") == []
    with pytest.raises(ExperimentNotFoundError, match="experiment id 'wine' does not exist at db"):
        experiment_numbers(["1", "wine"], "db")


MLFLOW_TABLES = """
create table logged_models (model_id varchar(36) primary key, experiment_id integer,
  name varchar(500), artifact_location varchar(1000), creation_timestamp_ms bigint,
  last_updated_timestamp_ms bigint, status integer, lifecycle_stage varchar(32),
  model_type varchar(500), source_run_id varchar(32), status_message varchar(1000));
create table logged_model_params (model_id varchar(36), experiment_id integer,
  param_key varchar(255), param_value text);
create table logged_model_tags (model_id varchar(36), experiment_id integer,
  tag_key varchar(255), tag_value text);
create table logged_model_metrics (model_id varchar(36), metric_name varchar(500),
  metric_timestamp_ms bigint, metric_step bigint, metric_value float, experiment_id integer,
  run_id varchar(32), dataset_uuid varchar(36), dataset_name varchar(500),
  dataset_digest varchar(36));
"""


def _sqlite(path: Path, script: str, rows: dict[str, list[tuple[Any, ...]]]) -> str:
    connection = sqlite3.connect(path)
    with connection:
        connection.executescript(script)
        for table, values in rows.items():
            marks = ", ".join("?" * len(values[0]))
            connection.executemany(f"insert into {table} values ({marks})", values)
    connection.close()
    return f"sqlite:///{path}"


def _model(model_id: str, experiment_id: int, stage: str | None, status: int) -> tuple[Any, ...]:
    return (
        model_id,
        experiment_id,
        model_id,
        f"/a/{model_id}",
        5,
        6,
        status,
        stage,
        None,
        "",
        None,
    )


@pytest.fixture
def store(tmp_path: Path) -> str:
    """Models of experiments 1 and 2: active ones, a deleted one (with children) and one
    without a lifecycle stage (MLflow's search leaves both out)."""
    return _sqlite(
        tmp_path / "mlflow.db",
        MLFLOW_TABLES,
        {
            "logged_models": [
                _model("m-a", 1, "active", 2),
                _model("m-b", 1, "deleted", 2),
                _model("m-c", 1, None, 2),
                _model("m-d", 2, "active", 1),
                _model("m-e", 3, "active", 2),
            ],
            "logged_model_params": [("m-a", 1, "alpha", "0.5"), ("m-b", 1, "alpha", "9")],
            "logged_model_tags": [("m-a", 1, "team", ""), ("m-d", 2, "who", "me")],
            "logged_model_metrics": [
                ("m-a", "rmse", 20, 0, 0.7, 1, "r1", None, "wine-test", "d2"),
                ("m-a", "rmse", 10, 0, 0.9, 1, "r1", None, "wine-train", "d1"),
                ("m-a", "loss", 30, 2, None, 1, "r1", None, None, None),
                ("m-b", "rmse", 10, 0, 0.1, 1, "r1", None, None, None),
            ],
        },
    )


def _summary(models: list[LoggedModelRecord] | None) -> list[tuple[Any, ...]]:
    return [
        (m.model_id, m.experiment_id, m.status, m.source_run_id, dict(m.params), dict(m.tags))
        for m in models or ()
    ]


def test_the_database_reader_leaves_deleted_models_out(store: str) -> None:
    models = read_logged_models_from_db(store, ["2", "1"])
    assert _summary(models) == [
        ("m-a", "1", "READY", None, {"alpha": "0.5"}, {"team": ""}),
        ("m-d", "2", "PENDING", None, {}, {"who": "me"}),
    ]
    metrics = [(x.key, x.value, x.timestamp, x.dataset_name) for x in (models or [])[0].metrics]
    assert metrics[:2] == [("rmse", 0.9, 10, "wine-train"), ("rmse", 0.7, 20, "wine-test")]
    assert metrics[2][0] == "loss" and math.isnan(metrics[2][1]) and len(metrics) == 3
    assert read_logged_models_from_db(store, ["4"]) == []


def test_the_database_reader_in_batches_of_one(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = read_logged_models_from_db(store, ["1", "2", "3"])
    monkeypatch.setattr(db_models, "ids_per_query", lambda engine: 1)
    assert read_logged_models_from_db(store, ["1", "2", "3"]) == whole
    assert [m.model_id for m in whole or ()] == ["m-a", "m-d", "m-e"]


def test_a_database_of_mlflow_2_has_none_and_a_half_one_is_an_error(tmp_path: Path) -> None:
    old = _sqlite(tmp_path / "v2.db", "create table runs (run_uuid varchar(32));", {})
    assert read_logged_models_from_db(old, ["1"]) is None
    half = _sqlite(
        tmp_path / "half.db", MLFLOW_TABLES.split("create table logged_model_params")[0], {}
    )
    with pytest.raises(SchemaMismatchError) as caught:
        read_logged_models_from_db(half, ["1"])
    assert "missing logged_model_params, logged_model_tags, logged_model_metrics" in str(
        caught.value
    )
    with pytest.raises(DatabaseError, match="the sqlite file .*missing.db does not exist"):
        read_logged_models_from_db(f"sqlite:///{tmp_path / 'missing.db'}", ["1"])
    with pytest.raises(ExperimentNotFoundError):
        read_logged_models_from_db(old, ["not-a-number"])
