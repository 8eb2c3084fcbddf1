"""Seed a real MLflow tracking store fast, through MLflow's own schema.

MLflow's `SqlAlchemyStore` creates the schema (its migrations) and the experiments; the
runs then go straight into ``runs``, ``metrics``, ``latest_metrics``, ``params`` and
``tags`` with one ``executemany`` per table in one transaction: rows exactly as the store
writes them for ``create_run`` + ``log_batch`` + ``set_terminated`` (hex run ids, status
``FINISHED``, ``lifecycle_stage`` ``active``, NaN stored as value 0 with ``is_nan``, the
``mlflow.runName`` tag). 100,000 runs (2.4 million rows) take about 25 s on a busy
2-core machine, a third of it MLflow's migrations, instead of hours of REST calls.

Optionally, the same way: ``--steps N`` values per metric (steps ``0..N-1``, the last one in
``latest_metrics``); MLflow 3's logged models (``--models-every K``: every K-th run logs
one, with two params, two tags and its ``rmse`` and ``accuracy`` on dataset ``eval``, rows
in ``logged_models``, ``logged_model_params``, ``logged_model_tags`` and
``logged_model_metrics`` as ``create_logged_model`` + ``finalize_logged_model`` +
``log_metric(..., model_id=, dataset=)`` write them); and ``--registered-models R``
registered models in MLflow's model registry, each with up to 3 versions of those logged
models (``source`` ``models:/<model_id>``) and the alias ``champion`` on its second
version (its only one when it has one).

Layout: ``--experiments E`` experiments. The first, ``bench-best``, holds ``--best-runs``
runs (default 1,000: the best-run comparison); the other runs are spread evenly over the
other experiments. Each run has 5 metrics (``loss`` with a 3-step history, or ``--steps``
values per metric when that is more), 8 params (ints, doubles, strings) and 3 tags. Values
and ids come from seeded generators, so a store is the same every time but for the
experiments' creation times.

Example::

    .venv/bin/python scripts/seed_store.py --root .bench/mlflow --runs 100000 --experiments 10
    .venv/bin/python scripts/seed_store.py --root .bench/side --runs 5000 --steps 10 \\
        --models-every 10 --registered-models 3
    .venv/bin/mlflow server --backend-store-uri sqlite:///.bench/mlflow/mlflow.db \\
        --default-artifact-root .bench/mlflow/artifacts
"""

from __future__ import annotations

import argparse
import logging
import math
import operator
import os
import random
import sqlite3
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

logger = logging.getLogger(__name__)

BEST_EXPERIMENT = "bench-best"
USER = "bench"
BASE_TIME_MS = 1_700_000_000_000
METRIC_KEYS = ("accuracy", "loss", "mae", "r2", "rmse")
HISTORY_METRIC = "loss"
HISTORY_STEPS = 3
NAN_EVERY = 500  # by default every 500th run logs r2 = NaN
PARAM_KEYS = (
    "alpha",
    "batch_size",
    "l1_ratio",
    "learning_rate",
    "max_depth",
    "model_type",
    "n_estimators",
    "optimizer",
)
OPTIMIZERS = ("adam", "sgd", "rmsprop", "adagrad")
MODEL_TYPES = ("elasticnet", "random_forest", "gbm")
TEAMS = ("vision", "ranking", "forecast")
MODEL_NAME = "model"  # log_model's default name
MODEL_PARAMS = ("alpha", "model_type")  # run params a logged model carries as its own
MODEL_METRICS = ("accuracy", "rmse")  # run metrics also logged to the model, on DATASET
DATASET = ("eval", "5f1b2c3d")  # (name, digest) of the dataset the model metrics name
READY = 2  # LoggedModelStatus.READY.to_int()
VERSIONS_PER_MODEL = 3
ALIAS = "champion"
REGISTERED_PREFIX = "bench-model-"


class SeedError(Exception):
    """The store cannot be seeded as asked (bad sizes, a store already there)."""


@dataclass(frozen=True)
class SeededRun:
    """What one seeded run holds, as MLflow must read it back.

    Attributes:
        run_id: The run's hex id.
        experiment_id: Its experiment.
        name: The run name (also the ``mlflow.runName`` tag).
        start_time: Epoch milliseconds.
        end_time: Epoch milliseconds.
        artifact_uri: ``<experiment artifact location>/<run_id>/artifacts``.
        metrics: Latest value of each metric (NaN kept).
        loss_history: ``(step, timestamp, value)`` of every ``loss`` row.
        params: Param values as MLflow stores them (strings).
        tags: Tag values.
        steps: Values per metric other than ``loss`` (steps ``0..steps-1``).
    """

    run_id: str
    experiment_id: str
    name: str
    start_time: int
    end_time: int
    artifact_uri: str
    metrics: dict[str, float]
    loss_history: tuple[tuple[int, int, float], ...]
    params: dict[str, str]
    tags: dict[str, str]
    steps: int = 1

    def history(self, key: str) -> tuple[tuple[int, int, float], ...]:
        """``(step, timestamp, value)`` of every value of metric ``key``, in step order.

        ``loss`` has its own random values; another metric's earlier steps lead to its
        latest value (1% off per step before the last), 10 ms apart up to ``end_time``.

        Example:
            >>> make_run(random.Random(0), 0, "1", "/a", steps=2).history("rmse")[0][0]
            0
        """
        if key == HISTORY_METRIC:
            return self.loss_history
        latest = self.metrics[key]
        last = self.steps - 1
        return tuple(
            (
                step,
                self.end_time - 10 * (last - step),
                latest if step == last else round(latest * (1 + 0.01 * (last - step)), 9),
            )
            for step in range(self.steps)
        )


@dataclass(frozen=True)
class SeededModel:
    """One MLflow 3 logged model, as MLflow must read it back.

    Attributes:
        model_id: ``m-<hex>``.
        experiment_id: Its experiment (its run's).
        source_run_id: The run that logged it.
        artifact_location: ``<experiment artifact location>/models/<model_id>/artifacts``.
        creation_time: Epoch milliseconds (while its run ran).
        last_updated_time: Epoch milliseconds (when it was finalized, READY).
        params: Its params (``MODEL_PARAMS`` of its run).
        tags: Its tags.
        metrics: ``(key, value, timestamp, step)`` of each value, all on ``DATASET``: its
            run's latest ``MODEL_METRICS`` values, logged again with the model.
    """

    model_id: str
    experiment_id: str
    source_run_id: str
    artifact_location: str
    creation_time: int
    last_updated_time: int
    params: dict[str, str]
    tags: dict[str, str]
    metrics: tuple[tuple[str, float, int, int], ...]


@dataclass(frozen=True)
class SeededVersion:
    """One model version of the registry: ``name`` version ``version`` of ``model_id``."""

    name: str
    version: int
    model_id: str
    run_id: str
    storage_location: str
    creation_time: int
    aliases: tuple[str, ...] = ()

    @property
    def source(self) -> str:
        """``models:/<model_id>``, as ``register_model`` of a logged model stores it."""
        return f"models:/{self.model_id}"


@dataclass(frozen=True)
class SeededExperiment:
    """One seeded experiment: id, name, run count and its first run (for checks)."""

    experiment_id: str
    name: str
    run_count: int
    first_run: SeededRun | None


@dataclass(frozen=True)
class SeedResult:
    """What `seed_store` wrote.

    Attributes:
        db_path: The sqlite file.
        artifact_root: The default artifact root the experiments were created under.
        experiments: The experiments in creation order; the first is the best-run one
            when ``best_runs`` > 0.
        run_count: Runs written.
        seconds: Wall time of the whole seeding.
        rows: Rows written per table.
        models: The logged models, in run order.
        versions: The model versions, by registered model then version.
    """

    db_path: Path
    artifact_root: Path
    experiments: tuple[SeededExperiment, ...]
    run_count: int
    seconds: float
    rows: dict[str, int] = field(default_factory=dict)
    models: tuple[SeededModel, ...] = ()
    versions: tuple[SeededVersion, ...] = ()

    @property
    def db_url(self) -> str:
        """``sqlite:///<absolute path>`` of the store."""
        return f"sqlite:///{self.db_path}"

    @property
    def best_experiment(self) -> SeededExperiment:
        """The experiment named ``bench-best``."""
        for experiment in self.experiments:
            if experiment.name == BEST_EXPERIMENT:
                return experiment
        raise SeedError(f"no experiment {BEST_EXPERIMENT!r} was seeded (best_runs=0)")


def split_runs(runs: int, experiments: int, best_runs: int) -> list[int]:
    """Run count per experiment: ``best_runs`` first, the rest spread evenly.

    Example:
        >>> split_runs(10_000, 4, 1_000)
        [1000, 3000, 3000, 3000]

    Raises:
        SeedError: The sizes do not fit (fewer runs than ``best_runs`` plus one per
            other experiment, or no experiment).
    """
    if experiments < 1:
        raise SeedError(f"experiments={experiments} must be at least 1")
    if runs < 0 or best_runs < 0:
        raise SeedError(f"runs={runs} and best_runs={best_runs} must not be negative")
    if best_runs == 0:
        base, extra = divmod(runs, experiments)
        return [base + (1 if i < extra else 0) for i in range(experiments)]
    others = experiments - 1
    rest = runs - best_runs
    if rest < 0 or (others == 0 and rest > 0) or (others > 0 and rest < others):
        raise SeedError(
            f"runs={runs} cannot hold {best_runs} runs in {BEST_EXPERIMENT!r} and at least "
            f"one run in each of the other {others} experiment(s); raise --runs or lower "
            "--best-runs"
        )
    if others == 0:
        return [best_runs]
    base, extra = divmod(rest, others)
    return [best_runs] + [base + (1 if i < extra else 0) for i in range(others)]


def create_schema(db_path: Path, artifact_root: Path) -> SqlAlchemyStore:
    """Create MLflow's schema in a new sqlite file; return the `SqlAlchemyStore`."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    return SqlAlchemyStore(f"sqlite:///{db_path}", str(artifact_root))


def make_run(
    rng: random.Random,
    index: int,
    experiment_id: str,
    artifact_location: str,
    nan_every: int = NAN_EVERY,
    steps: int = 1,
) -> SeededRun:
    """The values of run number ``index`` (0-based over the whole store).

    Every ``nan_every``-th run logs ``r2`` as NaN (0: never). Each metric has ``steps``
    values, ``loss`` at least ``HISTORY_STEPS``; with ``steps`` up to ``HISTORY_STEPS`` the
    generator gives the same values as with 1.

    Example:
        >>> make_run(random.Random(0), 0, "1", "/tmp/art/1").params["optimizer"]
        'rmsprop'
    """
    run_id = uuid.UUID(int=rng.getrandbits(128), version=4).hex
    start_time = BASE_TIME_MS + index * 1_000
    end_time = start_time + 500 + rng.randrange(500)
    rmse = round(rng.uniform(0.5, 1.5), 9)
    loss_steps = max(steps, HISTORY_STEPS)
    loss_values = [round(rng.uniform(0.1, 2.0), 9) for _ in range(loss_steps)]
    # 100, 200, 300 ms after the start for 3 steps; every step within those 300 ms for more.
    loss_history = tuple(
        (step, start_time + (step + 1) * 300 // loss_steps, value)
        for step, value in enumerate(loss_values)
    )
    metrics = {
        "accuracy": round(rng.uniform(0.6, 0.99), 9),
        "loss": loss_values[-1],
        "mae": round(rmse * rng.uniform(0.6, 0.9), 9),
        "r2": round(rng.uniform(-0.2, 0.9), 9),
        "rmse": rmse,
    }
    if nan_every and index % nan_every == nan_every - 1:
        metrics["r2"] = math.nan
    params = {
        "alpha": f"{rng.uniform(0.0001, 1.0):.6g}",
        "batch_size": str(rng.choice((16, 32, 64, 128, 256))),
        "l1_ratio": f"{rng.uniform(0.0, 1.0):.6g}",
        "learning_rate": f"{10 ** rng.uniform(-5, -1):.4g}",
        "max_depth": str(rng.randrange(2, 16)),
        "model_type": rng.choice(MODEL_TYPES),
        "n_estimators": str(rng.randrange(50, 1000)),
        "optimizer": rng.choice(OPTIMIZERS),
    }
    name = f"run-{index:07d}"
    tags = {"mlflow.runName": name, "mlflow.user": USER, "team": rng.choice(TEAMS)}
    return SeededRun(
        run_id=run_id,
        experiment_id=experiment_id,
        name=name,
        start_time=start_time,
        end_time=end_time,
        artifact_uri=f"{artifact_location.rstrip('/')}/{run_id}/artifacts",
        metrics=metrics,
        loss_history=loss_history,
        params=params,
        tags=tags,
        steps=steps,
    )


def make_model(rng: random.Random, run: SeededRun, artifact_location: str) -> SeededModel:
    """The logged model ``run`` logs: created mid-run, READY 50 ms later.

    Example:
        >>> run = make_run(random.Random(0), 0, "1", "/a")
        >>> make_model(random.Random(1), run, "/a").metrics[0][0]
        'accuracy'
    """
    model_id = "m-" + uuid.UUID(int=rng.getrandbits(128), version=4).hex
    created = run.start_time + 400
    metrics = tuple(
        (key, value, timestamp, step)
        for key in MODEL_METRICS
        for step, timestamp, value in run.history(key)[-1:]
    )
    return SeededModel(
        model_id=model_id,
        experiment_id=run.experiment_id,
        source_run_id=run.run_id,
        artifact_location=f"{artifact_location.rstrip('/')}/models/{model_id}/artifacts",
        creation_time=created,
        last_updated_time=created + 50,
        params={key: run.params[key] for key in MODEL_PARAMS},
        tags={"mlflow.user": USER, "team": run.tags["team"]},
        metrics=metrics,
    )


def make_versions(models: Sequence[SeededModel], registered: int) -> list[SeededVersion]:
    """Versions of ``registered`` registered models: model k is a version of model k % R.

    Each registered model gets up to ``VERSIONS_PER_MODEL`` versions (the first models in
    order), the alias ``champion`` on its second version (its first when it has one).

    Raises:
        SeedError: Fewer logged models than registered models.
    """
    if registered and len(models) < registered:
        raise SeedError(
            f"registered_models={registered} needs at least as many logged models, "
            f"{len(models)} were seeded; lower --registered-models or --models-every"
        )
    chosen = models[: registered * VERSIONS_PER_MODEL]
    counts = [len(chosen[i::registered]) for i in range(registered)]
    versions = []
    for k, model in enumerate(chosen):
        number, version = k % registered, k // registered + 1
        champion = min(2, counts[number])
        versions.append(
            SeededVersion(
                name=f"{REGISTERED_PREFIX}{number}",
                version=version,
                model_id=model.model_id,
                run_id=model.source_run_id,
                storage_location=model.artifact_location,
                creation_time=model.last_updated_time + 1_000,
                aliases=(ALIAS,) if version == champion else (),
            )
        )
    return sorted(versions, key=lambda v: (v.name, v.version))


def _stored(value: float) -> tuple[float, int]:
    """``(value, is_nan)`` as `SqlAlchemyStore.sanitize_metric_value` stores a metric."""
    if math.isnan(value):
        return 0.0, 1
    if math.isinf(value):
        return (1.7976931348623157e308 if value > 0 else -1.7976931348623157e308), 0
    return value, 0


class _Rows:
    """Rows of the run, logged-model and registry tables, in the column order of the
    INSERTs below.

    Each run table's rows come out in the order of its primary key (metric key, then time
    or run id), so that sqlite appends to its B-trees instead of inserting at random
    places. The ``metrics`` rows (``steps`` per metric and run) are made while inserted,
    not kept.
    """

    def __init__(self) -> None:
        self.runs: list[SeededRun] = []
        self._latest: dict[str, list[tuple[object, ...]]] = {k: [] for k in METRIC_KEYS}
        self._params: dict[str, list[tuple[object, ...]]] = {k: [] for k in PARAM_KEYS}
        self._tags: dict[str, list[tuple[object, ...]]] = {}
        self.models: list[SeededModel] = []
        self.versions: list[SeededVersion] = []

    def add(self, run: SeededRun) -> None:
        run_id = run.run_id
        self.runs.append(run)
        for key, value in run.metrics.items():
            step, timestamp, _ = run.history(key)[-1]
            stored, is_nan = _stored(value)
            self._latest[key].append((key, stored, timestamp, step, is_nan, run_id))
        for key, text in run.params.items():
            self._params[key].append((key, text, run_id))
        for key, text in run.tags.items():
            self._tags.setdefault(key, []).append((key, text, run_id))

    def table(self, name: str) -> Iterator[tuple[object, ...]]:
        """The rows of table ``name`` in primary-key order."""
        if name == "runs":
            return (_run_row(run) for run in sorted(self.runs, key=lambda r: r.run_id))
        if name == "metrics":
            # Runs were added in time order: each key's rows come sorted by timestamp.
            return self._metric_rows()
        if name.startswith("logged_model") or name in _REGISTRY_TABLES:
            return iter(_model_rows(name, self.models, self.versions))
        by_run = operator.itemgetter(5 if name == "latest_metrics" else 2)
        groups = {"latest_metrics": self._latest, "params": self._params, "tags": self._tags}
        rows = groups[name]
        return (row for key in sorted(rows) for row in sorted(rows[key], key=by_run))

    def _metric_rows(self) -> Iterator[tuple[object, ...]]:
        for key in sorted(METRIC_KEYS):
            for run in self.runs:
                for step, timestamp, value in run.history(key):
                    stored, is_nan = _stored(value)
                    yield key, stored, timestamp, run.run_id, step, is_nan


def _run_row(run: SeededRun) -> tuple[object, ...]:
    return (
        run.run_id,
        run.name,
        "UNKNOWN",  # source_type, as SqlAlchemyStore.create_run
        "",  # source_name
        "",  # entry_point_name
        USER,  # user_id
        "FINISHED",
        run.start_time,
        run.end_time,
        None,  # deleted_time
        "",  # source_version
        "active",
        run.artifact_uri,
        int(run.experiment_id),
    )


def _model_rows(
    name: str, models: Sequence[SeededModel], versions: Sequence[SeededVersion]
) -> list[tuple[object, ...]]:
    """The rows of one logged-model or registry table."""
    from mlflow.utils.workspace_utils import DEFAULT_WORKSPACE_NAME as WORKSPACE

    if name == "logged_models":
        return [
            (m.model_id, int(m.experiment_id), MODEL_NAME, m.artifact_location, m.creation_time,
             m.last_updated_time, READY, "active", None, m.source_run_id, None)
            for m in models
        ]  # fmt: skip
    if name == "logged_model_params":
        return [
            (m.model_id, int(m.experiment_id), k, v) for m in models for k, v in m.params.items()
        ]
    if name == "logged_model_tags":
        return [(m.model_id, int(m.experiment_id), k, v) for m in models for k, v in m.tags.items()]
    if name == "logged_model_metrics":
        return [
            (m.model_id, key, timestamp, step, value, int(m.experiment_id), m.source_run_id,
             None, *DATASET)  # log_metric(dataset=...) keeps the name and digest, no uuid
            for m in models
            for key, value, timestamp, step in m.metrics
        ]  # fmt: skip
    if name == "registered_models":
        last = {v.name: v.creation_time for v in versions}  # each version touches its model
        first: dict[str, int] = {}
        for v in versions:
            first.setdefault(v.name, v.creation_time - 1_000)
        return [(WORKSPACE, n, first[n], last[n], None) for n in sorted(first)]
    if name == "model_versions":
        return [
            (WORKSPACE, v.name, v.version, v.creation_time, v.creation_time, None, None, "None",
             v.source, v.storage_location, v.run_id, None, "READY", None)
            for v in versions
        ]  # fmt: skip
    if name == "registered_model_aliases":
        return [(WORKSPACE, v.name, a, v.version) for v in versions for a in v.aliases]
    raise SeedError(f"no rows for table {name!r}")


_REGISTRY_TABLES = ("registered_models", "model_versions", "registered_model_aliases")
_INSERTS = {
    "runs": (
        "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, "
        "user_id, status, start_time, end_time, deleted_time, source_version, "
        "lifecycle_stage, artifact_uri, experiment_id) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ),
    "metrics": (
        'INSERT INTO metrics ("key", value, timestamp, run_uuid, step, is_nan) '
        "VALUES (?, ?, ?, ?, ?, ?)"
    ),
    "latest_metrics": (
        'INSERT INTO latest_metrics ("key", value, timestamp, step, is_nan, run_uuid) '
        "VALUES (?, ?, ?, ?, ?, ?)"
    ),
    "params": 'INSERT INTO params ("key", value, run_uuid) VALUES (?, ?, ?)',
    "tags": 'INSERT INTO tags ("key", value, run_uuid) VALUES (?, ?, ?)',
    "logged_models": (
        "INSERT INTO logged_models (model_id, experiment_id, name, artifact_location, "
        "creation_timestamp_ms, last_updated_timestamp_ms, status, lifecycle_stage, "
        "model_type, source_run_id, status_message) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ),
    "logged_model_params": (
        "INSERT INTO logged_model_params (model_id, experiment_id, param_key, param_value) "
        "VALUES (?, ?, ?, ?)"
    ),
    "logged_model_tags": (
        "INSERT INTO logged_model_tags (model_id, experiment_id, tag_key, tag_value) "
        "VALUES (?, ?, ?, ?)"
    ),
    "logged_model_metrics": (
        "INSERT INTO logged_model_metrics (model_id, metric_name, metric_timestamp_ms, "
        "metric_step, metric_value, experiment_id, run_id, dataset_uuid, dataset_name, "
        "dataset_digest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ),
    "registered_models": (
        "INSERT INTO registered_models (workspace, name, creation_time, last_updated_time, "
        "description) VALUES (?, ?, ?, ?, ?)"
    ),
    "model_versions": (
        "INSERT INTO model_versions (workspace, name, version, creation_time, "
        "last_updated_time, description, user_id, current_stage, source, storage_location, "
        "run_id, run_link, status, status_message) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ),
    "registered_model_aliases": (
        "INSERT INTO registered_model_aliases (workspace, name, alias, version) VALUES (?, ?, ?, ?)"
    ),
}
_RUN_TABLES = ("runs", "metrics", "latest_metrics", "params", "tags")


def seed_store(
    root: str | os.PathLike[str],
    *,
    runs: int,
    experiments: int,
    best_runs: int = 1_000,
    seed: int = 42,
    nan_every: int = NAN_EVERY,
    artifact_root: str | os.PathLike[str] | None = None,
    steps: int = 1,
    models_every: int = 0,
    registered_models: int = 0,
) -> SeedResult:
    """Create ``<root>/mlflow.db`` with MLflow's schema and fill it with runs.

    Example:
        >>> result = seed_store(".bench/mlflow", runs=20_000, experiments=10)
        >>> result.best_experiment.run_count
        1000

    Args:
        root: Folder of the store (``mlflow.db``); created if missing.
        runs: Runs in all.
        experiments: Experiments; the first is ``bench-best`` when ``best_runs`` > 0.
        best_runs: Runs of ``bench-best``; 0 for none (then runs are spread evenly).
        seed: Seed of the value generator.
        nan_every: Every ``nan_every``-th run logs ``r2`` as NaN (0: never).
        artifact_root: Default artifact root; ``<root>/artifacts`` (as `LocalMlflowServer`).
        steps: Values per metric and run (steps ``0..steps-1``); ``loss`` has at least 3.
        models_every: Every ``models_every``-th run (the first, then every K-th) logs an
            MLflow 3 logged model; 0 for none.
        registered_models: Registered models, each with up to 3 versions of the first
            logged models and the alias ``champion``; 0 for none.

    Raises:
        SeedError: Bad sizes, or ``<root>/mlflow.db`` exists already.
    """
    started = time.monotonic()
    sizes = split_runs(runs, experiments, best_runs)
    if steps < 1 or models_every < 0 or registered_models < 0:
        raise SeedError(
            f"steps={steps} must be at least 1, models_every={models_every} and "
            f"registered_models={registered_models} must not be negative"
        )
    if registered_models > (-(-runs // models_every) if models_every else 0):
        raise SeedError(
            f"registered_models={registered_models} needs at least as many logged models; "
            "lower --registered-models or --models-every"
        )
    root_path = Path(root).resolve()
    db_path = root_path / "mlflow.db"
    if db_path.exists():
        raise SeedError(f"{db_path} exists; seed into a new folder or remove it first")
    artifacts = Path(artifact_root).resolve() if artifact_root else root_path / "artifacts"
    root_path.mkdir(parents=True, exist_ok=True)

    store = create_schema(db_path, artifacts)
    names = [
        BEST_EXPERIMENT if best_runs and i == 0 else f"bench-{i:03d}" for i in range(experiments)
    ]
    created = []
    for name in names:
        experiment_id = store.create_experiment(name)
        location = store.get_experiment(experiment_id).artifact_location
        created.append((experiment_id, name, location))
    store.engine.dispose()
    logger.info("schema and experiments created seconds=%.2f", time.monotonic() - started)

    # The models first, from a pass of their own over the runs, so that they stay together
    # in memory: made between the runs, they would keep the memory of the runs' values
    # around them (over 400 MiB at 100,000 runs) when the seeding is over.
    rows = _Rows()
    if models_every:
        run_rng, model_rng = random.Random(seed), random.Random(seed + 1)
        index = 0
        for (experiment_id, _, location), count in zip(created, sizes, strict=True):
            for _ in range(count):
                run = make_run(run_rng, index, experiment_id, location, nan_every, steps)
                if index % models_every == 0:
                    rows.models.append(make_model(model_rng, run, location))
                index += 1
    rows.versions = make_versions(rows.models, registered_models)
    rng = random.Random(seed)
    seeded = []
    index = 0
    for (experiment_id, name, location), count in zip(created, sizes, strict=True):
        first = None
        for _ in range(count):
            run = make_run(rng, index, experiment_id, location, nan_every, steps)
            first = first or run
            rows.add(run)
            index += 1
        seeded.append(SeededExperiment(experiment_id, name, count, first))

    counts = _insert(db_path, rows)
    seconds = time.monotonic() - started
    logger.info(
        "store seeded runs=%d models=%d versions=%d seconds=%.2f path=%s",
        index,
        len(rows.models),
        len(rows.versions),
        seconds,
        db_path,
    )
    return SeedResult(
        db_path,
        artifacts,
        tuple(seeded),
        index,
        seconds,
        counts,
        tuple(rows.models),
        tuple(rows.versions),
    )


def _insert(db_path: Path, rows: _Rows) -> dict[str, int]:
    """Insert every row in one transaction; return the row count per table written.

    The secondary indexes of the five run tables are dropped first and created again from
    their own DDL (read from ``sqlite_master``) before the commit: building an index
    once is much faster than updating it row by row, and the schema ends as MLflow made it.
    The logged-model and registry tables are written only when there are models.
    """
    tables = list(_RUN_TABLES)
    if rows.models:
        tables += [t for t in _INSERTS if t.startswith("logged_model")]
    if rows.versions:
        tables += list(_REGISTRY_TABLES)
    connection = sqlite3.connect(db_path, isolation_level=None)
    counts = {}
    try:
        connection.execute("BEGIN")
        indexes = connection.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
            "AND tbl_name IN ('runs', 'metrics', 'latest_metrics', 'params', 'tags')"
        ).fetchall()
        for name, _ in indexes:
            connection.execute(f'DROP INDEX "{name}"')  # a name sqlite_master just gave
        for table in tables:
            counts[table] = connection.executemany(_INSERTS[table], rows.table(table)).rowcount
        for _, sql in indexes:
            connection.execute(sql)
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    finally:
        connection.close()
    return counts


def verify_run(db_url: str, expected: SeededRun) -> None:
    """Read ``expected`` back through `mlflow.MlflowClient` and compare every value.

    ``db_url`` is the store or a tracking server's URL. Every value of every metric is
    compared (`SeededRun.history`).

    Raises:
        SeedError: A value differs; the message names it.
    """
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=db_url)
    run = client.get_run(expected.run_id)
    info = run.info
    got = {
        "experiment_id": info.experiment_id,
        "run_name": info.run_name,
        "status": info.status,
        "lifecycle_stage": info.lifecycle_stage,
        "start_time": info.start_time,
        "end_time": info.end_time,
        "artifact_uri": info.artifact_uri,
        "user_id": info.user_id,
        "params": dict(run.data.params),
        "tags": dict(run.data.tags),
    }
    want = {
        "experiment_id": expected.experiment_id,
        "run_name": expected.name,
        "status": "FINISHED",
        "lifecycle_stage": "active",
        "start_time": expected.start_time,
        "end_time": expected.end_time,
        "artifact_uri": expected.artifact_uri,
        "user_id": USER,
        "params": expected.params,
        "tags": expected.tags,
    }
    wrong = [f"{k}: got {got[k]!r}, want {want[k]!r}" for k in want if got[k] != want[k]]
    metrics = dict(run.data.metrics)
    if set(metrics) != set(expected.metrics) or any(
        not _same(metrics[k], v) for k, v in expected.metrics.items()
    ):
        wrong.append(f"metrics: got {metrics!r}, want {expected.metrics!r}")
    for key in METRIC_KEYS:
        history = sorted(
            (m.step, m.timestamp, m.value) for m in client.get_metric_history(run.info.run_id, key)
        )
        want_history = expected.history(key)
        if len(history) != len(want_history) or any(
            got_point[:2] != want_point[:2] or not _same(got_point[2], want_point[2])
            for got_point, want_point in zip(history, want_history, strict=False)
        ):
            wrong.append(f"{key} history: got {history!r}, want {want_history!r}")
    if wrong:
        raise SeedError(f"run {expected.run_id} reads back wrong: " + "; ".join(wrong))


def verify_models(tracking_uri: str, result: SeedResult) -> None:
    """Read every seeded logged model and model version back through `MlflowClient`.

    Raises:
        SeedError: One is missing or differs; the message names it.
    """
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    wrong = []
    experiment_ids = sorted({m.experiment_id for m in result.models})
    found = {}
    if experiment_ids:
        page_token = None
        while True:
            page = client.search_logged_models(
                experiment_ids=experiment_ids, max_results=100, page_token=page_token
            )
            found.update({m.model_id: m for m in page})
            page_token = page.token
            if not page_token:
                break
    if len(found) != len(result.models):
        wrong.append(f"{len(found)} logged models, want {len(result.models)}")
    for want in result.models:
        model = found.get(want.model_id)
        if model is None:
            wrong.append(f"logged model {want.model_id} missing")
            continue
        got_model = (
            model.experiment_id, model.name, model.source_run_id, model.artifact_location,
            model.creation_timestamp, model.last_updated_timestamp, model.status.to_int(),
            model.params, model.tags,
            sorted((m.key, m.value, m.timestamp, m.step, m.dataset_name, m.dataset_digest)
                   for m in model.metrics or ()),
        )  # fmt: skip
        want_model = (
            want.experiment_id, MODEL_NAME, want.source_run_id, want.artifact_location,
            want.creation_time, want.last_updated_time, READY, want.params, want.tags,
            sorted((k, v, t, s, *DATASET) for k, v, t, s in want.metrics),
        )  # fmt: skip
        if got_model != want_model:
            wrong.append(f"logged model {want.model_id}: got {got_model!r}, want {want_model!r}")
    versions = client.search_model_versions(max_results=1_000)
    got_versions = sorted(
        (v.name, int(v.version), v.source, v.run_id, v.current_stage, v.status) for v in versions
    )
    want_versions = [
        (v.name, v.version, v.source, v.run_id, "None", "READY") for v in result.versions
    ]
    if got_versions != want_versions:
        wrong.append(f"model versions: got {got_versions!r}, want {want_versions!r}")
    for name in sorted({v.name for v in result.versions}):
        aliases = client.get_registered_model(name).aliases
        want_aliases = {
            a: str(v.version) for v in result.versions if v.name == name for a in v.aliases
        }
        if {a: str(n) for a, n in aliases.items()} != want_aliases:
            wrong.append(f"{name} aliases: got {aliases!r}, want {want_aliases!r}")
    if wrong:
        raise SeedError("logged models or registry read back wrong: " + "; ".join(wrong[:5]))


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def main(argv: Sequence[str] | None = None) -> int:
    """Seed a store from the command line; check one run per experiment with MlflowClient."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="folder of the new store (mlflow.db)")
    parser.add_argument("--runs", type=int, default=20_000, help="runs in all (default 20000)")
    parser.add_argument("--experiments", type=int, default=10, help="experiments (default 10)")
    parser.add_argument(
        "--best-runs", type=int, default=1_000, help="runs of experiment bench-best (default 1000)"
    )
    parser.add_argument("--seed", type=int, default=42, help="value generator seed")
    parser.add_argument("--artifact-root", default=None, help="default: <root>/artifacts")
    parser.add_argument("--steps", type=int, default=1, help="values per metric (default 1)")
    parser.add_argument(
        "--models-every", type=int, default=0, help="a logged model every K runs (default 0: none)"
    )
    parser.add_argument(
        "--registered-models", type=int, default=0, help="registered models (default 0)"
    )
    parser.add_argument(
        "--no-verify",
        action="store_true",
        help="skip the check of one run per experiment (10,000 experiments: minutes)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        result = seed_store(
            args.root,
            runs=args.runs,
            experiments=args.experiments,
            best_runs=args.best_runs,
            seed=args.seed,
            artifact_root=args.artifact_root,
            steps=args.steps,
            models_every=args.models_every,
            registered_models=args.registered_models,
        )
        for experiment in () if args.no_verify else result.experiments:
            if experiment.first_run is not None:
                verify_run(result.db_url, experiment.first_run)
        verify_models(result.db_url, result)
    except SeedError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(
        f"seeded {result.run_count} runs in {len(result.experiments)} experiments in "
        f"{result.seconds:.1f} s: {result.db_url}"
    )
    print("rows: " + ", ".join(f"{k}={v}" for k, v in result.rows.items()))
    if not args.no_verify:
        print("checked the first run of every experiment and every model with MlflowClient: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
