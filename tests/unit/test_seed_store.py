"""scripts/seed_store.py: rows written straight into MLflow's schema read back through MLflow."""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import pytest

from tests.seed import load_seed_store


@pytest.fixture(scope="module")
def seed_store() -> ModuleType:
    """The script as a module."""
    return load_seed_store()


@pytest.fixture(scope="module")
def seeded(seed_store: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """50 runs: 10 in bench-best, 20 in each of two more experiments; r2 NaN every 7th run."""
    root = tmp_path_factory.mktemp("seeded")
    return seed_store.seed_store(root, runs=50, experiments=3, best_runs=10, nan_every=7)


def test_split_runs(seed_store: ModuleType) -> None:
    assert seed_store.split_runs(10_000, 4, 1_000) == [1000, 3000, 3000, 3000]
    assert seed_store.split_runs(7, 3, 0) == [3, 2, 2]
    assert seed_store.split_runs(1_000, 1, 1_000) == [1000]
    with pytest.raises(seed_store.SeedError, match="cannot hold 1000 runs"):
        seed_store.split_runs(1_001, 3, 1_000)
    with pytest.raises(seed_store.SeedError, match="at least 1"):
        seed_store.split_runs(10, 0, 0)


def test_layout_and_row_counts(seeded: Any) -> None:
    assert [(e.name, e.run_count) for e in seeded.experiments] == [
        ("bench-best", 10),
        ("bench-001", 20),
        ("bench-002", 20),
    ]
    assert seeded.best_experiment.experiment_id == "1"
    assert seeded.run_count == 50
    # 5 metrics, loss with 3 steps: 7 metric rows and 5 latest rows per run.
    assert seeded.rows == {
        "runs": 50,
        "metrics": 350,
        "latest_metrics": 250,
        "params": 400,
        "tags": 150,
    }


def test_mlflow_reads_the_first_run_back_exactly(seeded: Any) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=seeded.db_url)
    run_id = "bdd640fb06674ad19c80317fa3b1799d"  # the first id of Random(42)
    run = client.get_run(run_id)
    artifact_location = client.get_experiment("1").artifact_location
    assert artifact_location == str(seeded.artifact_root / "1")
    assert run.info.experiment_id == "1"
    assert run.info.run_name == "run-0000000"
    assert run.info.status == "FINISHED"
    assert run.info.lifecycle_stage == "active"
    assert run.info.user_id == "bench"
    assert run.info.start_time == 1_700_000_000_000
    assert run.info.end_time == 1_700_000_000_640
    assert run.info.artifact_uri == f"{artifact_location}/{run_id}/artifacts"
    assert run.data.metrics == {
        "accuracy": 0.812692948,
        "loss": 1.507268715,
        "mae": 0.578891031,
        "r2": -0.165039053,
        "rmse": 0.744891854,
    }
    assert run.data.params == {
        "alpha": "0.0937859",
        "batch_size": "32",
        "l1_ratio": "0.505355",
        "learning_rate": "1.277e-05",
        "max_depth": "5",
        "model_type": "gbm",
        "n_estimators": "715",
        "optimizer": "adagrad",
    }
    assert run.data.tags == {
        "mlflow.runName": "run-0000000",
        "mlflow.user": "bench",
        "team": "vision",
    }
    history = client.get_metric_history(run_id, "loss")
    assert [(m.step, m.timestamp, m.value) for m in history] == [
        (0, 1_700_000_000_100, 0.365122064),
        (1, 1_700_000_000_200, 0.294740835),
        (2, 1_700_000_000_300, 1.507268715),
    ]


def test_every_experiment_searches_back_with_nan_where_logged(
    seed_store: ModuleType, seeded: Any
) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=seeded.db_url)
    nan_names = []
    for experiment in seeded.experiments:
        runs = client.search_runs([experiment.experiment_id], max_results=100)
        assert len(runs) == experiment.run_count
        assert {r.info.status for r in runs} == {"FINISHED"}
        assert all(len(r.data.params) == 8 and len(r.data.metrics) == 5 for r in runs)
        nan_names += [r.info.run_name for r in runs if math.isnan(r.data.metrics["r2"])]
        seed_store.verify_run(seeded.db_url, experiment.first_run)
    # Runs 6, 13, 20, ... (0-based) log r2 = NaN: 7 of the 50.
    assert sorted(nan_names) == [f"run-{i:07d}" for i in range(6, 50, 7)]


def test_an_existing_store_is_refused(seed_store: ModuleType, seeded: Any) -> None:
    with pytest.raises(seed_store.SeedError, match="exists"):
        seed_store.seed_store(seeded.db_path.parent, runs=5, experiments=1, best_runs=0)


def test_bad_side_options_are_refused(seed_store: ModuleType, tmp_path: Any) -> None:
    with pytest.raises(seed_store.SeedError, match="steps=0 must be at least 1"):
        seed_store.seed_store(tmp_path / "a", runs=5, experiments=1, best_runs=0, steps=0)
    with pytest.raises(seed_store.SeedError, match="registered_models=3 needs"):
        seed_store.seed_store(
            tmp_path / "b",
            runs=5,
            experiments=1,
            best_runs=0,
            models_every=5,
            registered_models=3,
        )
    assert not (tmp_path / "b").exists()  # refused before the store was made
