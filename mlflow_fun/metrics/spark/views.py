"""Views for analysts over the experiment tables: ``best_runs`` and ``metrics_long``.

Both are plain SQL views over a ``UNION ALL`` of the ``exp_<id>`` tables in the database
when they are (re)created, so BI tools and SQL clients see them like tables:

``<database>.metrics_long``
    One row per run and logged metric: ``experiment_id, run_id, run_name, metric, value``.
    ``metric`` is the original MLflow key (``train/loss``), not the column name; ``value``
    is the run's latest value. A run that did not log a metric has no row for it; a NaN
    that was logged is kept (it is the run's value).

``<database>.best_runs``
    The best run per experiment for each metric whose direction is known: ``experiment_id,
    metric, direction, run_id, run_name, value, start_time``. ``direction`` is ``min``
    (lower is better) or ``max``. The rules are the project's: NULL and NaN are skipped,
    ties go to the earliest ``start_time``, then the smallest ``run_id``.

Directions come from `DEFAULT_DIRECTIONS` (rmse, mae, mse, loss, error: ``min``; r2,
accuracy, auc, f1, precision, recall, score: ``max``), then a YAML file (see
`resolve_directions`), then the ``directions`` argument. A key matches an entry by its
whole name or by its longest trailing run of words, so ``val/rmse``, ``training_log_loss``
and ``training_r2_score`` get a direction. A metric whose direction is unknown is left
out of ``best_runs`` (there is no safe guess; the log says which) and stays in
``metrics_long``; add it to ``conf/metric_directions.yaml`` to rank it.

The views name the tables, so a job run that rewrites a table needs no new views; a job
run that adds a table or a metric does, which is why the job recreates them.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import yaml

from mlflow_fun.errors import ConfigError, InvalidIdentifierError
from mlflow_fun.metrics.spark.convert import column_keys
from mlflow_fun.naming import METRIC, qualified_table, quote_identifier, validate_identifier

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

logger = logging.getLogger(__name__)

BEST_RUNS_VIEW = "best_runs"
METRICS_LONG_VIEW = "metrics_long"
DIRECTIONS_FILE = os.path.join("conf", "metric_directions.yaml")
DIRECTIONS_FILE_ENV = "MLFLOW_FUN_METRIC_DIRECTIONS"

DEFAULT_DIRECTIONS: dict[str, str] = {
    "rmse": "min",
    "mae": "min",
    "mse": "min",
    "loss": "min",
    "error": "min",
    "r2": "max",
    "accuracy": "max",
    "auc": "max",
    "f1": "max",
    "precision": "max",
    "recall": "max",
    # sklearn's autologged ``training_score`` is accuracy or R^2: higher is better.
    "score": "max",
}

_DIRECTION_WORDS = {
    "min": "min",
    "lower": "min",
    "asc": "min",
    "max": "max",
    "higher": "max",
    "desc": "max",
}
_WORD = re.compile(r"[a-z0-9]+")
# Keys made only of these characters are written as plain SQL string literals; any other
# key is written as the hex of its UTF-8 bytes, so no key can end a literal early.
_PLAIN_LITERAL = re.compile(r"[A-Za-z0-9_./:\- ]*")
_TABLE = re.compile(r"exp_[A-Za-z0-9_]+")
_REQUIRED_COLUMNS = ("experiment_id", "run_id", "run_name", "start_time")


@dataclass(frozen=True)
class ExperimentTable:
    """One ``exp_<id>`` table as the views see it.

    Attributes:
        name: The table name, e.g. ``exp_3``.
        metrics: ``(column, MLflow key)`` of every metric column, in column order.
    """

    name: str
    metrics: tuple[tuple[str, str], ...]


def normalize_metric_name(name: str) -> str:
    """Lower-case ``name`` and join its words with ``_``: the form directions are matched in.

    Example:
        >>> normalize_metric_name("Val/RMSE")
        'val_rmse'
    """
    return "_".join(_WORD.findall(name.lower()))


def normalize_direction(value: str, where: str = "direction") -> str:
    """``min`` or ``max`` for ``min/lower/asc`` or ``max/higher/desc`` (any case).

    Example:
        >>> normalize_direction("Higher")
        'max'

    Raises:
        ConfigError: Anything else; the message names ``where`` and the valid words.
    """
    direction = _DIRECTION_WORDS.get(str(value).strip().lower())
    if direction is None:
        raise ConfigError(
            f"{where} {value!r} is not a direction: use min (or lower, asc) or max "
            "(or higher, desc)"
        )
    return direction


def merge_directions(*layers: Mapping[str, str] | None) -> dict[str, str]:
    """Merge direction maps, later layers winning; keys and values normalized.

    Example:
        >>> merge_directions({"rmse": "min"}, {"Val/Acc": "higher"})
        {'rmse': 'min', 'val_acc': 'max'}

    Raises:
        ConfigError: A key has no letters or digits, or a value is not a direction.
    """
    merged: dict[str, str] = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            name = normalize_metric_name(str(key))
            if not name:
                raise ConfigError(f"metric name {key!r} has no letters or digits")
            merged[name] = normalize_direction(value, f"direction of metric {key!r}")
    return merged


def metric_direction(key: str, directions: Mapping[str, str]) -> str | None:
    """The direction of MLflow metric ``key``: by its whole name, else its longest trailing words.

    ``directions`` must be normalized (as `merge_directions` returns it).

    Example:
        >>> metric_direction("val/mean_squared_error", DEFAULT_DIRECTIONS)
        'min'
        >>> metric_direction("loss_ratio", DEFAULT_DIRECTIONS) is None
        True
    """
    words = _WORD.findall(key.lower())
    for start in range(len(words)):
        direction = directions.get("_".join(words[start:]))
        if direction is not None:
            return direction
    return None


def load_metric_directions(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read a YAML mapping ``metric: min|max`` (see ``conf/metric_directions.yaml``).

    Example:
        >>> load_metric_directions("conf/metric_directions.yaml")["rmse"]
        'min'

    Raises:
        ConfigError: The file is missing, not YAML, not a mapping, or has a bad direction.
    """
    where = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as handle:
            raw = yaml.safe_load(handle)
    except OSError as e:
        raise ConfigError(f"cannot read metric directions file {where!r}: {e.strerror}") from e
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"metric directions file {where!r}{line} is not valid YAML") from e
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"metric directions file {where!r} must hold a mapping metric: min|max")
    try:
        return merge_directions({str(k): str(v) for k, v in raw.items()})
    except ConfigError as e:
        raise ConfigError(f"metric directions file {where!r}: {e}") from e


def resolve_directions(
    directions: Mapping[str, str] | None = None,
    directions_file: str | os.PathLike[str] | None = None,
) -> dict[str, str]:
    """`DEFAULT_DIRECTIONS`, then the directions file, then ``directions``; normalized.

    The file is ``directions_file`` if given, else the path in ``MLFLOW_FUN_METRIC_DIRECTIONS``
    if set, else ``conf/metric_directions.yaml`` under the current directory if it exists.

    Example:
        >>> resolve_directions({"val_acc": "max"})["val_acc"]
        'max'

    Raises:
        ConfigError: A named file cannot be read or holds a bad direction.
    """
    path: str | os.PathLike[str] | None = directions_file or os.environ.get(DIRECTIONS_FILE_ENV)
    if path is None and os.path.isfile(DIRECTIONS_FILE):
        path = DIRECTIONS_FILE
    from_file = load_metric_directions(path) if path is not None else {}
    if path is not None:
        logger.info("metric directions file=%s entries=%d", os.fspath(path), len(from_file))
    return merge_directions(DEFAULT_DIRECTIONS, from_file, directions)


def experiment_tables(spark: SparkSession, database: str) -> list[ExperimentTable]:
    """Every ``exp_<id>`` table of ``database`` (not views, not temporary), sorted by name.

    A metric column whose name is not a plain identifier (a key longer than 125
    characters) is left out with a warning; so is a table without the run info columns.

    Raises:
        InvalidIdentifierError: ``database`` is not a valid name.
    """
    validate_identifier(database, "database")
    names = sorted(
        t.name
        for t in spark.catalog.listTables(database)
        if not t.isTemporary and t.tableType != "VIEW" and _TABLE.fullmatch(t.name)
    )
    tables = []
    for name in names:
        schema = spark.table(qualified_table(database, name)).schema
        missing = [c for c in _REQUIRED_COLUMNS if c not in schema.fieldNames()]
        if missing:
            logger.warning("table skipped table=%s missing_columns=%s", name, ",".join(missing))
            continue
        metrics = []
        for column, (kind, key) in column_keys(schema).items():
            if kind != METRIC:
                continue
            try:
                validate_identifier(column, "column")
            except InvalidIdentifierError:
                logger.warning("metric column skipped table=%s column=%s", name, column[:40])
                continue
            metrics.append((column, key))
        tables.append(ExperimentTable(name, tuple(metrics)))
    return tables


def metrics_long_sql(database: str, tables: Sequence[ExperimentTable]) -> str:
    """The ``CREATE OR REPLACE VIEW`` statement of ``<database>.metrics_long``.

    Example:
        >>> print(metrics_long_sql("db", [ExperimentTable("exp_1", (("_m_rmse", "rmse"),))]))
        CREATE OR REPLACE VIEW `db`.`metrics_long` (...) AS SELECT ... FROM `db`.`exp_1` ...
    """
    branches = [
        "SELECT CAST(experiment_id AS STRING) AS experiment_id, run_id, run_name, "
        f"stack({len(t.metrics)}, "
        + ", ".join(f"{sql_string(key)}, {quote_identifier(column)}" for column, key in t.metrics)
        + f") AS (metric, value) FROM {qualified_table(database, t.name)}"
        for t in tables
        if t.metrics
    ]
    empty = (
        "SELECT CAST(NULL AS STRING) AS experiment_id, CAST(NULL AS STRING) AS run_id, "
        "CAST(NULL AS STRING) AS run_name, CAST(NULL AS STRING) AS metric, "
        "CAST(NULL AS DOUBLE) AS value"
    )
    return (
        f"CREATE OR REPLACE VIEW {qualified_table(database, METRICS_LONG_VIEW)} ("
        "experiment_id COMMENT 'MLflow experiment id', "
        "run_id COMMENT 'MLflow run id', "
        "run_name COMMENT 'MLflow run name', "
        "metric COMMENT 'MLflow metric key', "
        "value COMMENT 'latest value of the metric in the run') "
        "COMMENT 'Latest metrics of every run, one row per run and metric (mlflow-fun)' AS "
        "SELECT experiment_id, run_id, run_name, metric, value FROM ("
        + _union(branches, empty)
        + ") AS runs WHERE value IS NOT NULL"
    )


def best_runs_sql(
    database: str, tables: Sequence[ExperimentTable], directions: Mapping[str, str]
) -> str:
    """The ``CREATE OR REPLACE VIEW`` statement of ``<database>.best_runs``.

    Only metrics with a direction in ``directions`` (normalized) take part.

    Example:
        >>> sql = best_runs_sql("db", [ExperimentTable("exp_1", (("_m_rmse", "rmse"),))],
        ...                     DEFAULT_DIRECTIONS)
    """
    branches = []
    for table in tables:
        ranked = [
            (column, key, direction)
            for column, key in table.metrics
            if (direction := metric_direction(key, directions)) is not None
        ]
        if not ranked:
            continue
        stacked = ", ".join(
            f"{sql_string(key)}, {sql_string(direction)}, {quote_identifier(column)}"
            for column, key, direction in ranked
        )
        branches.append(
            "SELECT CAST(experiment_id AS STRING) AS experiment_id, run_id, run_name, "
            f"start_time, stack({len(ranked)}, {stacked}) AS (metric, direction, value) "
            f"FROM {qualified_table(database, table.name)}"
        )
    empty = (
        "SELECT CAST(NULL AS STRING) AS experiment_id, CAST(NULL AS STRING) AS run_id, "
        "CAST(NULL AS STRING) AS run_name, CAST(NULL AS TIMESTAMP) AS start_time, "
        "CAST(NULL AS STRING) AS metric, CAST(NULL AS STRING) AS direction, "
        "CAST(NULL AS DOUBLE) AS value"
    )
    return (
        f"CREATE OR REPLACE VIEW {qualified_table(database, BEST_RUNS_VIEW)} ("
        "experiment_id COMMENT 'MLflow experiment id', "
        "metric COMMENT 'MLflow metric key', "
        "direction COMMENT 'min: lower is better, max: higher is better', "
        "run_id COMMENT 'the best run', "
        "run_name COMMENT 'its name', "
        "value COMMENT 'its latest value of the metric', "
        "start_time COMMENT 'its start time') "
        "COMMENT 'Best run per experiment and metric; NULL and NaN skipped, ties to the "
        "earliest start_time, then the smallest run_id (mlflow-fun)' AS "
        "SELECT experiment_id, metric, direction, run_id, run_name, value, start_time FROM ("
        "SELECT *, row_number() OVER (PARTITION BY experiment_id, metric ORDER BY "
        "CASE WHEN direction = 'min' THEN value ELSE -value END ASC, "
        "start_time ASC NULLS LAST, run_id ASC) AS run_rank FROM ("
        + _union(branches, empty)
        + ") AS runs WHERE value IS NOT NULL AND NOT isnan(value)) AS ranked WHERE run_rank = 1"
    )


def create_analyst_views(
    spark: SparkSession,
    database: str,
    directions: Mapping[str, str] | None = None,
    *,
    directions_file: str | os.PathLike[str] | None = None,
) -> None:
    """(Re)create ``<database>.best_runs`` and ``<database>.metrics_long`` over its tables.

    Example:
        >>> create_analyst_views(spark, "mlflow_metrics", {"val_acc": "max"})
        >>> spark.sql("select * from mlflow_metrics.best_runs where metric = 'rmse'").show()

    Args:
        spark: The session whose catalog holds the database.
        database: The database of the ``exp_<id>`` tables.
        directions: ``metric: min|max`` overrides, applied last (see the module docstring).
        directions_file: A YAML file of directions; see `resolve_directions`.

    Raises:
        InvalidIdentifierError: ``database`` is not a valid name.
        ConfigError: A direction is not ``min``/``max`` or the directions file is bad.
    """
    validate_identifier(database, "database")
    resolved = resolve_directions(directions, directions_file)
    tables = experiment_tables(spark, database)
    unranked = sorted(
        {key for t in tables for _, key in t.metrics if metric_direction(key, resolved) is None}
    )
    if unranked:
        logger.info(
            "metrics without a direction left out of best_runs metrics=%s", ",".join(unranked)
        )
    spark.sql(metrics_long_sql(database, tables))
    spark.sql(best_runs_sql(database, tables, resolved))
    logger.info(
        "analyst views created database=%s tables=%d metrics=%d unranked=%d",
        database,
        len(tables),
        sum(len(t.metrics) for t in tables),
        len(unranked),
    )


def sql_string(value: str) -> str:
    """A Spark SQL expression for the string ``value`` that no content can break out of.

    Example:
        >>> sql_string("train/loss")
        "'train/loss'"
        >>> sql_string("it's")
        "decode(unhex('69742773'), 'UTF-8')"
    """
    if _PLAIN_LITERAL.fullmatch(value):
        return f"'{value}'"
    return f"decode(unhex('{value.encode('utf-8').hex()}'), 'UTF-8')"


def _union(branches: Iterable[str], empty: str) -> str:
    selected = list(branches)
    if not selected:
        return empty + " WHERE false"
    return " UNION ALL ".join(selected)
