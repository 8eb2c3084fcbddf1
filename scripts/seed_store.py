"""Seed a real MLflow tracking store fast, through MLflow's own schema.

MLflow's `SqlAlchemyStore` creates the schema (its migrations) and the experiments; the
runs then go straight into ``runs``, ``metrics``, ``latest_metrics``, ``params`` and
``tags`` with one ``executemany`` per table in one transaction: rows exactly as the store
writes them for ``create_run`` + ``log_batch`` + ``set_terminated`` (hex run ids, status
``FINISHED``, ``lifecycle_stage`` ``active``, NaN stored as value 0 with ``is_nan``, the
``mlflow.runName`` tag). 100,000 runs (2.4 million rows) take about 25 s on a busy
2-core machine, a third of it MLflow's migrations, instead of hours of REST calls.

Layout: ``--experiments E`` experiments. The first, ``bench-best``, holds ``--best-runs``
runs (default 1,000: the best-run comparison); the other runs are spread evenly over the
other experiments. Each run has 5 metrics (``loss`` with a 3-step history), 8 params
(ints, doubles, strings) and 3 tags. Values and run ids come from a seeded generator, so
a store is the same every time but for the experiments' creation times.

Example::

    .venv/bin/python scripts/seed_store.py --root .bench/mlflow --runs 100000 --experiments 10
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
from collections.abc import Sequence
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
    """

    db_path: Path
    artifact_root: Path
    experiments: tuple[SeededExperiment, ...]
    run_count: int
    seconds: float
    rows: dict[str, int] = field(default_factory=dict)

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
) -> SeededRun:
    """The values of run number ``index`` (0-based over the whole store).

    Every ``nan_every``-th run logs ``r2`` as NaN (0: never).

    Example:
        >>> make_run(random.Random(0), 0, "1", "/tmp/art/1").params["optimizer"]
        'rmsprop'
    """
    run_id = uuid.UUID(int=rng.getrandbits(128), version=4).hex
    start_time = BASE_TIME_MS + index * 1_000
    end_time = start_time + 500 + rng.randrange(500)
    rmse = round(rng.uniform(0.5, 1.5), 9)
    loss_values = [round(rng.uniform(0.1, 2.0), 9) for _ in range(HISTORY_STEPS)]
    loss_history = tuple(
        (step, start_time + 100 * (step + 1), value) for step, value in enumerate(loss_values)
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
    )


def _stored(value: float) -> tuple[float, int]:
    """``(value, is_nan)`` as `SqlAlchemyStore.sanitize_metric_value` stores a metric."""
    if math.isnan(value):
        return 0.0, 1
    if math.isinf(value):
        return (1.7976931348623157e308 if value > 0 else -1.7976931348623157e308), 0
    return value, 0


class _Rows:
    """Rows of the five run tables, in the column order of the INSERTs below.

    Each table's rows come out in the order of its primary key (metric key, then time or
    run id), so that sqlite appends to its B-trees instead of inserting at random places.
    """

    def __init__(self) -> None:
        self._runs: list[tuple[object, ...]] = []
        self._metrics: dict[str, list[tuple[object, ...]]] = {k: [] for k in METRIC_KEYS}
        self._latest: dict[str, list[tuple[object, ...]]] = {k: [] for k in METRIC_KEYS}
        self._params: dict[str, list[tuple[object, ...]]] = {k: [] for k in PARAM_KEYS}
        self._tags: dict[str, list[tuple[object, ...]]] = {}

    def add(self, run: SeededRun) -> None:
        run_id = run.run_id
        self._runs.append(
            (
                run_id,
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
        )
        for key, value in run.metrics.items():
            if key == HISTORY_METRIC:
                for step, timestamp, logged in run.loss_history:
                    self._metrics[key].append((key, logged, timestamp, run_id, step, 0))
                step, timestamp, _ = run.loss_history[-1]
            else:
                step, timestamp = 0, run.end_time
                stored, is_nan = _stored(value)
                self._metrics[key].append((key, stored, timestamp, run_id, step, is_nan))
            stored, is_nan = _stored(value)
            self._latest[key].append((key, stored, timestamp, step, is_nan, run_id))
        for key, text in run.params.items():
            self._params[key].append((key, text, run_id))
        for key, text in run.tags.items():
            self._tags.setdefault(key, []).append((key, text, run_id))

    def table(self, name: str) -> list[tuple[object, ...]]:
        """The rows of table ``name`` in primary-key order."""
        by_run = operator.itemgetter(0 if name == "runs" else 5 if name == "latest_metrics" else 2)
        if name == "runs":
            return sorted(self._runs, key=by_run)
        if name == "metrics":
            # Runs were added in time order: each key's rows are sorted by timestamp already.
            return [row for key in sorted(self._metrics) for row in self._metrics[key]]
        groups = {"latest_metrics": self._latest, "params": self._params, "tags": self._tags}
        rows = groups[name]
        return [row for key in sorted(rows) for row in sorted(rows[key], key=by_run)]


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
}


def seed_store(
    root: str | os.PathLike[str],
    *,
    runs: int,
    experiments: int,
    best_runs: int = 1_000,
    seed: int = 42,
    nan_every: int = NAN_EVERY,
    artifact_root: str | os.PathLike[str] | None = None,
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

    Raises:
        SeedError: Bad sizes, or ``<root>/mlflow.db`` exists already.
    """
    started = time.monotonic()
    sizes = split_runs(runs, experiments, best_runs)
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

    rng = random.Random(seed)
    rows = _Rows()
    seeded = []
    index = 0
    for (experiment_id, name, location), count in zip(created, sizes, strict=True):
        first = None
        for _ in range(count):
            run = make_run(rng, index, experiment_id, location, nan_every)
            first = first or run
            rows.add(run)
            index += 1
        seeded.append(SeededExperiment(experiment_id, name, count, first))

    counts = _insert(db_path, rows)
    seconds = time.monotonic() - started
    logger.info("store seeded runs=%d seconds=%.2f path=%s", index, seconds, db_path)
    return SeedResult(db_path, artifacts, tuple(seeded), index, seconds, counts)


def _insert(db_path: Path, rows: _Rows) -> dict[str, int]:
    """Insert every row in one transaction; return the row count per table.

    The secondary indexes of the five tables are dropped first and created again from
    their own DDL (read from ``sqlite_master``) before the commit: building an index
    once is much faster than updating it row by row, and the schema ends as MLflow made it.
    """
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
        for table, sql in _INSERTS.items():
            table_rows = rows.table(table)
            connection.executemany(sql, table_rows)
            counts[table] = len(table_rows)
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
    history = tuple(
        (m.step, m.timestamp, m.value) for m in client.get_metric_history(run.info.run_id, "loss")
    )
    if sorted(history) != sorted(expected.loss_history):
        wrong.append(f"loss history: got {history!r}, want {expected.loss_history!r}")
    if wrong:
        raise SeedError(f"run {expected.run_id} reads back wrong: " + "; ".join(wrong))


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
        )
        for experiment in result.experiments:
            if experiment.first_run is not None:
                verify_run(result.db_url, experiment.first_run)
    except SeedError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(
        f"seeded {result.run_count} runs in {len(result.experiments)} experiments in "
        f"{result.seconds:.1f} s: {result.db_url}"
    )
    print("rows: " + ", ".join(f"{k}={v}" for k, v in result.rows.items()))
    print("checked the first run of every experiment with MlflowClient: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
