"""Test experiments, logged through MLflow's own client with known values."""

from __future__ import annotations

import importlib.util
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

# Params of the "typed" experiment: one list per key, one value per run (None: not logged).
TYPED_PARAMS: dict[str, list[str | None]] = {
    "p_int": ["1", "2", "-3", ""],
    "p_big": ["1", "3000000000", None, None],
    "p_double": ["1", "0.5", "1e-3", "nan"],
    "p_inf": ["inf", "-Infinity", "2", None],
    "p_bool": ["true", "False", "TRUE", "null"],
    "p_mixed": ["1", "abc", "2.5", None],
    "p_int_bool": ["1", "true", None, None],
    "p_missing": ["None", "", None, None],
    "p_text_none": ["abc", "None", None, "x y"],
}
TYPED_TYPES = {
    "p_int": "int",
    "p_big": "bigint",
    "p_double": "double",
    "p_inf": "double",
    "p_bool": "boolean",
    "p_mixed": "string",
    "p_int_bool": "string",
    "p_missing": "string",
    "p_text_none": "string",
}

# Keys of the "odd-keys" experiment and the column each must get.
ODD_METRICS = {
    "train/loss": "_m_train_loss",
    "val.acc": "_m_val_acc",
    "my metric": "_m_my_metric",
    "größe": "_m_gr__e",
    "a-b:c": "_m_a_b_c",
}
ODD_PARAMS = {"LR": "_p_LR", "lr": "_p_lr_3", "lr_2": "_p_lr_2", "batch size": "_p_batch_size"}
ODD_TAGS = {"team/name": "_t_team_name"}


@dataclass
class Seeded:
    """Ids of the seeded experiments and runs, and the answers the tests expect."""

    url: str
    empty: str = ""
    paged: str = ""
    paged_run_ids: list[str] = field(default_factory=list)
    typed: str = ""
    typed_run_ids: list[str] = field(default_factory=list)
    odd_keys: str = ""
    odd_run_ids: list[str] = field(default_factory=list)
    best: str = ""
    best_runs: dict[str, str] = field(default_factory=dict)
    deleted_run_id: str = ""
    no_metrics_run_id: str = ""


def _run(
    client: MlflowClient,
    experiment_id: str,
    start_time: int,
    *,
    metrics: dict[str, float] | None = None,
    params: dict[str, str] | None = None,
    tags: dict[str, str] | None = None,
    name: str | None = None,
    finish: bool = True,
) -> str:
    run = client.create_run(experiment_id, start_time=start_time, run_name=name)
    run_id = run.info.run_id
    client.log_batch(
        run_id,
        metrics=[Metric(k, v, start_time, 0) for k, v in (metrics or {}).items()],
        params=[Param(k, v) for k, v in (params or {}).items()],
        tags=[RunTag(k, v) for k, v in (tags or {}).items()],
    )
    if finish:
        client.set_terminated(run_id, end_time=start_time + 500)
    return run_id


def seed_all(url: str) -> Seeded:
    """Log every test experiment to the server at ``url``."""
    client = MlflowClient(url)
    seeded = Seeded(url=url)

    seeded.empty = client.create_experiment("empty")

    seeded.paged = client.create_experiment("paged")
    for i in range(25):
        seeded.paged_run_ids.append(
            _run(
                client,
                seeded.paged,
                1_000_000 + i * 1000,
                metrics={"rmse": (i * 7 % 25) / 100},
                params={"alpha": str(i / 10)},
                name=f"paged-{i:02d}",
            )
        )

    seeded.typed = client.create_experiment("typed")
    for i in range(4):
        params = {k: v[i] for k, v in TYPED_PARAMS.items() if v[i] is not None}
        seeded.typed_run_ids.append(
            _run(client, seeded.typed, 10_000 + i, params=params, name=f"typed-{i}")  # type: ignore[arg-type]
        )

    seeded.odd_keys = client.create_experiment("odd 'keys' ü")
    seeded.odd_run_ids.append(
        _run(
            client,
            seeded.odd_keys,
            20_000,
            metrics={k: float(n) for n, k in enumerate(ODD_METRICS)},
            params={k: str(n) for n, k in enumerate(ODD_PARAMS)},
            tags={k: "blue" for k in ODD_TAGS},
            name="odd-0",
        )
    )
    seeded.odd_run_ids.append(
        _run(client, seeded.odd_keys, 20_001, metrics={"train/loss": 9.0}, name="odd-1")
    )

    seeded.best = client.create_experiment("best")
    plan: list[tuple[str, int, dict[str, float]]] = [
        ("a", 1000, {"rmse": 0.5, "r2": 0.1}),
        ("b", 2000, {"rmse": 0.5, "r2": 0.9}),
        ("c", 500, {"rmse": math.nan, "r2": 0.95}),
        ("d", 400, {"r2": 0.2}),
        ("e", 3000, {"rmse": 0.9, "r2": -1.0}),
        ("g", 2500, {"rmse": 0.9, "r2": 0.3}),
        ("f", 100, {"rmse": 0.01, "r2": 0.99}),
        ("n", 50, {}),
    ]
    for name, start, metrics in plan:
        seeded.best_runs[name] = _run(
            client, seeded.best, start, metrics=metrics, params={"alpha": "0.1"}, name=name
        )
    seeded.deleted_run_id = seeded.best_runs["f"]
    client.delete_run(seeded.deleted_run_id)
    seeded.no_metrics_run_id = seeded.best_runs["n"]
    return seeded


def load_seed_store() -> ModuleType:
    """``scripts/seed_store.py`` as a module (scripts/ is not a package)."""
    script = Path(__file__).resolve().parent.parent / "scripts" / "seed_store.py"
    spec = importlib.util.spec_from_file_location("seed_store", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["seed_store"] = module  # dataclasses look their module up while defined
    spec.loader.exec_module(module)
    return module
