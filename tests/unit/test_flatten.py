"""Flattening a recorded ``runs/search`` page (recorded from a real MLflow 3 server)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow as pa
import pytest

from mlflow_fun.errors import MalformedResponseError, MetricNotFoundError
from mlflow_fun.model import experiment_from_json, run_from_json
from mlflow_fun.query.engine import best_run_of
from mlflow_fun.transform.flatten import flatten_runs, resolve_metric, to_arrow
from mlflow_fun.transform.frames import to_pandas

DATA = Path(__file__).parent.parent / "data"
R1, R2, R3 = (
    "883da37d83244aac9641d6c47930e5b3",
    "c729b831cc4442dd85ef0daf2268bf09",
    "24073d86f2f0454884ee087fa37c53c0",
)


@pytest.fixture
def page() -> dict:
    return json.loads((DATA / "runs_search_page.json").read_text())


def test_columns_names_and_types(page: dict) -> None:
    flat = flatten_runs(run_from_json(r) for r in page["runs"])
    assert [(c.name, c.kind, c.key, c.type) for c in flat.columns] == [
        ("run_id", "info", "run_id", "string"),
        ("run_uuid", "info", "run_uuid", "string"),
        ("run_name", "info", "run_name", "string"),
        ("experiment_id", "info", "experiment_id", "string"),
        ("user_id", "info", "user_id", "string"),
        ("status", "info", "status", "string"),
        ("lifecycle_stage", "info", "lifecycle_stage", "string"),
        ("start_time", "info", "start_time", "timestamp"),
        ("end_time", "info", "end_time", "timestamp"),
        ("artifact_uri", "info", "artifact_uri", "string"),
        ("_m_gr__e", "metric", "größe", "double"),
        ("_m_inf", "metric", "inf", "double"),
        ("_m_ninf", "metric", "ninf", "double"),
        ("_m_rmse", "metric", "rmse", "double"),
        ("_m_train_loss", "metric", "train/loss", "double"),
        ("_p_alpha", "param", "alpha", "double"),
        ("_p_flag", "param", "flag", "boolean"),
        ("_p_LR", "param", "LR", "int"),
        ("_p_lr_2", "param", "lr", "string"),
        ("_t_mlflow_runName", "tag", "mlflow.runName", "string"),
        ("_t_t", "tag", "t", "string"),
    ]


def test_rows_sorted_by_start_time_with_nulls(page: dict) -> None:
    flat = flatten_runs(run_from_json(r) for r in page["runs"])
    assert flat.num_rows == 3
    assert list(flat.data["run_id"]) == [R1, R2, R3]
    assert list(flat.data["run_uuid"]) == [R1, R2, R3]
    assert list(flat.data["run_name"]) == ["r1", "caring-gnat-777", "r3"]
    assert list(flat.data["status"]) == ["FINISHED", "RUNNING", "FINISHED"]
    assert list(flat.data["end_time"]) == [2000, None, 4000]
    assert list(flat.data["_p_alpha"]) == [0.5, None, 0.001]
    assert list(flat.data["_p_flag"]) == [None, None, True]
    assert list(flat.data["_p_LR"]) == [1, None, None]
    assert list(flat.data["_p_lr_2"]) == ["2", None, "abc"]
    assert list(flat.data["_m_train_loss"]) == [0.5, None, None]
    assert list(flat.data["_t_t"]) == ["x", None, None]


def test_metric_values_latest_and_non_finite(page: dict) -> None:
    flat = flatten_runs(run_from_json(r) for r in page["runs"])
    rmse = list(flat.data["_m_rmse"])
    assert math.isnan(rmse[0]) and rmse[1] is None and rmse[2] == 0.75
    assert list(flat.data["_m_inf"]) == [1.7976931348623157e308, None, None]


def test_arrow_types_and_key_metadata(page: dict) -> None:
    table = to_arrow(flatten_runs(run_from_json(r) for r in page["runs"]))
    assert table.schema.field("start_time").type == pa.timestamp("ms", tz="UTC")
    assert table.schema.field("_p_LR").type == pa.int32()
    assert table.schema.field("_p_flag").type == pa.bool_()
    assert table.schema.field("_m_train_loss").metadata == {
        b"comment": b"train/loss",
        b"mlflow_key": b"train/loss",
        b"mlflow_kind": b"metric",
    }
    assert table.column("start_time").to_pylist()[0].isoformat() == "1970-01-01T00:00:01+00:00"


def test_pandas_dtypes_and_best_run(page: dict) -> None:
    df = to_pandas(flatten_runs(run_from_json(r) for r in page["runs"]))
    assert str(df["_p_LR"].dtype) == "Int64"
    assert str(df["_p_flag"].dtype) == "boolean"
    assert str(df["_p_lr_2"].dtype) == "string"
    assert str(df["_m_rmse"].dtype) == "float64"
    assert str(df["start_time"].dtype) == "datetime64[ns, UTC]"
    assert df.attrs["mlflow_keys"]["_m_train_loss"] == ("metric", "train/loss")
    assert best_run_of(df, "_m_rmse") == (R3, 0.75)
    assert best_run_of(df, "_m_train_loss", ascending=False) == (R1, 0.5)
    assert best_run_of(df.iloc[0:0], "_m_rmse") is None


def test_empty_experiment_has_info_columns_only() -> None:
    flat = flatten_runs([])
    assert flat.num_rows == 0
    assert [c.name for c in flat.columns][:3] == ["run_id", "run_uuid", "run_name"]
    assert len(flat.columns) == 10
    assert to_arrow(flat).num_rows == 0


def test_resolve_metric_by_key_or_column(page: dict) -> None:
    flat = flatten_runs(run_from_json(r) for r in page["runs"])
    assert resolve_metric(flat.columns, "train/loss", "1").name == "_m_train_loss"
    assert resolve_metric(flat.columns, "_m_rmse", "1").key == "rmse"
    with pytest.raises(MetricNotFoundError) as caught:
        resolve_metric(flat.columns, "mae", "1")
    assert str(caught.value) == (
        "metric 'mae' not found in experiment 1; its metrics: größe, inf, ninf, rmse, train/loss"
    )


def test_previous_names_keep_columns_stable(page: dict) -> None:
    previous = {("param", "lr"): "_p_lr"}
    flat = flatten_runs((run_from_json(r) for r in page["runs"]), previous)
    assert flat.names_by_key()[("param", "lr")] == "_p_lr"
    assert flat.names_by_key()[("param", "LR")] == "_p_LR_2"


def test_malformed_run_json_is_named() -> None:
    with pytest.raises(MalformedResponseError, match="unexpected run JSON"):
        run_from_json({"data": {}})
    with pytest.raises(MalformedResponseError, match="unexpected run JSON"):
        run_from_json({"info": {"run_id": "x", "experiment_id": "1"}, "data": {"metrics": [1]}})


def test_experiment_json() -> None:
    page = json.loads((DATA / "experiments_search_page.json").read_text())
    experiments = [experiment_from_json(e) for e in page["experiments"]]
    assert [(e.experiment_id, e.name) for e in experiments] == [("1", "probe"), ("0", "Default")]


def test_dataset_inputs_from_runs_search_json_sorted_with_their_context() -> None:
    import hashlib
    import json

    from mlflow_fun.extract.incremental import fingerprint
    from mlflow_fun.model import DatasetInput, run_from_json

    def dataset(name: str, context: str | None) -> dict:
        tags = [{"key": "mlflow.data.context", "value": context}] if context else []
        return {"tags": tags, "dataset": {"name": name, "digest": "d1", "source_type": "local"}}

    item = {
        "info": {"run_id": "r1", "experiment_id": "1"},
        "data": {},
        "inputs": {"dataset_inputs": [dataset("wine-test", "test"), dataset("wine", None)]},
    }
    run = run_from_json(item)
    assert run.inputs == (
        DatasetInput("wine", "d1", "local", None),
        DatasetInput("wine-test", "d1", "local", "test"),
    )
    bare = run_from_json({**item, "inputs": {}})
    assert bare.inputs == () and fingerprint(bare) != fingerprint(run)
    # a run without inputs keeps the digest it had before inputs were read (no full rewrite)
    held = [bare.run_id, dict(bare.info), {}, {}, {}]
    digest = hashlib.blake2b(json.dumps(held, sort_keys=True, default=str).encode(), digest_size=16)
    assert fingerprint(bare) == digest.hexdigest()
