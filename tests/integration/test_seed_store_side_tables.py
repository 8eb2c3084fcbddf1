"""The seeder's side-table options (metric steps, logged models, the registry), read back
through a real ``mlflow server`` on the seeded store (`make bench`'s side-tables step)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from mlflow_fun.extract.local_server import LocalMlflowServer
from tests.seed import load_seed_store


@pytest.fixture(scope="module")
def seed_store() -> ModuleType:
    """The script as a module."""
    return load_seed_store()


@pytest.fixture(scope="module")
def side_seeded(seed_store: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """30 runs of 10 steps per metric, a logged model every 5th run, 2 registered models."""
    root = tmp_path_factory.mktemp("side_seeded")
    return seed_store.seed_store(
        root,
        runs=30,
        experiments=2,
        best_runs=10,
        nan_every=7,
        steps=10,
        models_every=5,
        registered_models=2,
    )


@pytest.fixture(scope="module")
def side_server(side_seeded: Any) -> Iterator[str]:
    """A real ``mlflow server`` on the side-tables store; its URL."""
    server = LocalMlflowServer(side_seeded.db_path.parent)
    server.start()
    yield server.url
    server.stop()


def test_side_tables_row_counts(side_seeded: Any) -> None:
    # 5 metrics of 10 steps per run; runs 0, 5, ..., 25 log a model with 2 params, 2 tags
    # and 2 metrics; the first 6 models are versions 1-3 of 2 registered models.
    assert side_seeded.rows == {
        "runs": 30,
        "metrics": 1500,
        "latest_metrics": 150,
        "params": 240,
        "tags": 90,
        "logged_models": 6,
        "logged_model_params": 12,
        "logged_model_tags": 12,
        "logged_model_metrics": 12,
        "registered_models": 2,
        "model_versions": 6,
        "registered_model_aliases": 2,
    }


def test_every_step_reads_back_through_a_server(
    seed_store: ModuleType, side_seeded: Any, side_server: str
) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=side_server)
    first = side_seeded.experiments[0].first_run
    for key in ("accuracy", "loss", "mae", "r2", "rmse"):
        history = sorted(client.get_metric_history(first.run_id, key), key=lambda m: m.step)
        assert [m.step for m in history] == list(range(10))
        assert history[-1].value == client.get_run(first.run_id).data.metrics[key]
    rmse = sorted(client.get_metric_history(first.run_id, "rmse"), key=lambda m: m.step)
    assert [m.timestamp for m in rmse] == [first.end_time - 10 * (9 - s) for s in range(10)]
    assert rmse[0].value == round(first.metrics["rmse"] * 1.09, 9)
    # Run 6 logs r2 = NaN at every step; its latest value is NaN too.
    runs = client.search_runs(["1"], filter_string="attributes.run_name = 'run-0000006'")
    (nan_run,) = runs
    assert math.isnan(nan_run.data.metrics["r2"])
    nan_history = client.get_metric_history(nan_run.info.run_id, "r2")
    assert len(nan_history) == 10 and all(math.isnan(m.value) for m in nan_history)
    for experiment in side_seeded.experiments:
        seed_store.verify_run(side_server, experiment.first_run)


def test_logged_models_and_registry_read_back_through_a_server(
    seed_store: ModuleType, side_seeded: Any, side_server: str
) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=side_server)
    models = client.search_logged_models(experiment_ids=["1", "2"], max_results=100)
    assert len(models) == 6
    assert {m.experiment_id for m in models} == {"1", "2"}
    assert {m.status.to_int() for m in models} == {2}  # READY
    run_names = sorted(client.get_run(m.source_run_id).info.run_name for m in models)
    assert run_names == [f"run-{i:07d}" for i in range(0, 30, 5)]
    first = side_seeded.experiments[0].first_run
    (model,) = [m for m in models if m.source_run_id == first.run_id]
    assert model.name == "model"
    assert model.params == {k: first.params[k] for k in ("alpha", "model_type")}
    assert model.tags == {"mlflow.user": "bench", "team": first.tags["team"]}
    assert sorted((m.key, m.value, m.step, m.dataset_name) for m in model.metrics) == [
        ("accuracy", first.metrics["accuracy"], 9, "eval"),
        ("rmse", first.metrics["rmse"], 9, "eval"),
    ]
    versions = client.search_model_versions(max_results=100)
    assert sorted((v.name, int(v.version)) for v in versions) == [
        (f"bench-model-{n}", v) for n in range(2) for v in (1, 2, 3)
    ]
    by_model = {m.model_id for m in models}
    assert {v.source.removeprefix("models:/") for v in versions} <= by_model
    for name in ("bench-model-0", "bench-model-1"):
        assert client.get_registered_model(name).aliases == {"champion": "2"}
    assert client.get_model_version_by_alias("bench-model-0", "champion").run_id == (
        side_seeded.models[2].source_run_id
    )
    seed_store.verify_models(side_server, side_seeded)
