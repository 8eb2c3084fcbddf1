"""MLflow 3's logged models' JSON (recorded from MLflow 3.17.2's server) into
`LoggedModelRecord`; the Arrow rows of both tables; the ``--with-models`` flag and key."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from mlflow_fun.cli.build import config_from_args, parse_build_args
from mlflow_fun.config import JobConfig, load_config
from mlflow_fun.errors import (
    ConfigError,
    MalformedResponseError,
    ServerUnreachableError,
    TrackingServerError,
)
from mlflow_fun.extract.logged_models import (
    LoggedModelRecord,
    ModelMetric,
    is_missing_endpoint,
    logged_model_from_json,
)
from mlflow_fun.load.logged_models import logged_models_table, model_metrics_table

RUN_ID = "246ec5386d1b46d18d41421e629bf894"
MODEL_ID = "m-f3122b5ef5464d09935107ea2117e74b"
ARTIFACTS = "/tmp/lmrec/srv/artifacts/1/models"

# logged-models/search, MLflow 3.17.2: a model from mlflow.sklearn.log_model in a run
# (params, a tag, metrics on two datasets and one without), and one from
# mlflow.initialize_logged_model outside any run (no data, "" for no run and no type).
LOGGED = {
    "info": {
        "model_id": MODEL_ID,
        "experiment_id": "1",
        "name": "model",
        "creation_timestamp_ms": 1796295584039,
        "last_updated_timestamp_ms": 1796295589056,
        "artifact_uri": f"{ARTIFACTS}/{MODEL_ID}/artifacts",
        "status": "LOGGED_MODEL_READY",
        "model_type": "",
        "source_run_id": RUN_ID,
        "tags": [
            {"key": "mlflow.source.name", "value": "/tmp/lmrec/rec.py"},
            {"key": "mlflow.source.type", "value": "LOCAL"},
            {"key": "mlflow.user", "value": "root"},
            {"key": "team", "value": "x"},
        ],
    },
    "data": {
        "params": [{"key": "alpha", "value": "0.5"}, {"key": "l1_ratio", "value": "0.1"}],
        "metrics": [
            {
                "key": "rmse",
                "value": 0.7,
                "timestamp": 1796295589125,
                "step": 0,
                "dataset_name": "wine-train",
                "dataset_digest": "3999e9f8",
                "model_id": MODEL_ID,
                "run_id": RUN_ID,
            },
            {
                "key": "rmse",
                "value": 0.9,
                "timestamp": 1796295589219,
                "step": 1,
                "dataset_name": "wine-test",
                "dataset_digest": "3999e9f8",
                "model_id": MODEL_ID,
                "run_id": RUN_ID,
            },
            {
                "key": "plain",
                "value": 1.0,
                "timestamp": 1796295589250,
                "step": 0,
                "model_id": MODEL_ID,
                "run_id": RUN_ID,
            },
        ],
    },
}
PENDING = {
    "info": {
        "model_id": "m-780c7562cf83407b9e5a525194d48b00",
        "experiment_id": "1",
        "name": "ext",
        "creation_timestamp_ms": 1796295589312,
        "last_updated_timestamp_ms": 1796295589312,
        "artifact_uri": f"{ARTIFACTS}/m-780c7562cf83407b9e5a525194d48b00/artifacts",
        "status": "LOGGED_MODEL_PENDING",
        "model_type": "",
        "source_run_id": "",
        "tags": [{"key": "mlflow.user", "value": "root"}],
    },
    "data": {},
}


def test_a_model_with_params_tags_and_metrics_on_two_datasets() -> None:
    assert logged_model_from_json(LOGGED) == LoggedModelRecord(
        model_id=MODEL_ID,
        name="model",
        experiment_id="1",
        source_run_id=RUN_ID,
        model_type=None,
        status="READY",
        creation_time=1796295584039,
        last_updated_time=1796295589056,
        artifact_location=f"{ARTIFACTS}/{MODEL_ID}/artifacts",
        params={"alpha": "0.5", "l1_ratio": "0.1"},
        tags={
            "mlflow.source.name": "/tmp/lmrec/rec.py",
            "mlflow.source.type": "LOCAL",
            "mlflow.user": "root",
            "team": "x",
        },
        metrics=(
            ModelMetric("rmse", 0.7, 0, 1796295589125, "wine-train", "3999e9f8", RUN_ID),
            ModelMetric("rmse", 0.9, 1, 1796295589219, "wine-test", "3999e9f8", RUN_ID),
            ModelMetric("plain", 1.0, 0, 1796295589250, None, None, RUN_ID),
        ),
    )


def test_a_model_outside_a_run_without_data() -> None:
    record = logged_model_from_json(PENDING)
    assert (record.source_run_id, record.model_type, record.status) == (None, None, "PENDING")
    assert (record.params, record.metrics, record.tags) == ({}, (), {"mlflow.user": "root"})


def test_statuses_and_values_in_mlflow_spellings() -> None:
    def status(word: str) -> str | None:
        info: dict[str, Any] = {**PENDING["info"], "status": word}
        return logged_model_from_json({"info": info}).status

    assert status("LOGGED_MODEL_UPLOAD_FAILED") == "FAILED"
    assert status("LOGGED_MODEL_STATUS_UNSPECIFIED") == "UNSPECIFIED"
    assert status("SOMETHING_NEW") == "SOMETHING_NEW"
    assert status("") is None
    metric = {"key": "loss", "value": "NaN", "step": "3", "timestamp": "7"}
    item: dict[str, Any] = {"info": PENDING["info"], "data": {"metrics": [metric]}}
    (nan,) = logged_model_from_json(item).metrics
    assert math.isnan(nan.value)
    assert (nan.step, nan.timestamp, nan.dataset_name, nan.run_id) == (3, 7, None, None)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({}, "unexpected logged model JSON: missing or bad 'info'"),
        ({"info": {"model_id": "m-1", "experiment_id": "1"}}, "missing or bad 'name'"),
        (
            {"info": PENDING["info"], "data": {"metrics": [{"key": "x", "value": "high"}]}},
            "could not convert string to float",
        ),
        ({"info": PENDING["info"], "data": {"params": [{"value": "1"}]}}, "missing or bad 'key'"),
    ],
)
def test_malformed_models_are_one_error(item: dict[str, Any], message: str) -> None:
    with pytest.raises(MalformedResponseError, match=message) as caught:
        logged_model_from_json(item)
    assert caught.value.endpoint == "logged-models/search"


def test_a_missing_endpoint_is_told_from_other_errors() -> None:
    # MLflow 2.22's server: Flask's HTML 404; others say ENDPOINT_NOT_FOUND.
    assert is_missing_endpoint(TrackingServerError("x", status=404))
    assert is_missing_endpoint(
        TrackingServerError("x", status=400, error_code="ENDPOINT_NOT_FOUND")
    )
    assert not is_missing_endpoint(TrackingServerError("x", status=500))
    assert not is_missing_endpoint(TrackingServerError("x", status=400, error_code="BAD_REQUEST"))
    assert not is_missing_endpoint(ServerUnreachableError("x"))
    assert not is_missing_endpoint(MalformedResponseError("x", status=404))


def test_the_rows_of_both_tables() -> None:
    models = [logged_model_from_json(LOGGED), logged_model_from_json(PENDING)]
    table = logged_models_table(models).to_pylist()
    assert [(r["model_id"], r["source_run_id"], r["status"]) for r in table] == [
        (MODEL_ID, RUN_ID, "READY"),
        ("m-780c7562cf83407b9e5a525194d48b00", None, "PENDING"),
    ]
    assert [(r["params"], r["creation_time"].timestamp()) for r in table] == [
        ([("alpha", "0.5"), ("l1_ratio", "0.1")], 1796295584.039),
        ([], 1796295589.312),
    ]
    metrics = model_metrics_table(models).to_pylist()
    assert [
        (r["model_id"], r["experiment_id"], r["key"], r["value"], r["step"], r["dataset_name"])
        for r in metrics
    ] == [
        (MODEL_ID, "1", "rmse", 0.7, 0, "wine-train"),
        (MODEL_ID, "1", "rmse", 0.9, 1, "wine-test"),
        (MODEL_ID, "1", "plain", 1.0, 0, None),
    ]
    assert logged_models_table([]).num_rows == model_metrics_table([]).num_rows == 0


def test_the_flag_and_the_config_key(tmp_path: Path) -> None:
    assert JobConfig().with_models is False
    assert config_from_args(parse_build_args(["--with-models"])).with_models is True
    assert config_from_args(parse_build_args(["--with_models"])).with_models is True
    assert config_from_args(parse_build_args([])).with_models is False
    conf = tmp_path / "c.yaml"
    conf.write_text("with_models: true\n")
    assert load_config(conf).with_models is True
    conf.write_text("with_models: 1\n")
    with pytest.raises(ConfigError) as caught:
        load_config(conf)
    assert str(caught.value) == f"config file '{conf}': with_models must be true or false"
