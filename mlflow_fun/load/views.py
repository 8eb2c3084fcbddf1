"""Views for analysts over ``<database>.runs``: ``best_runs``, ``metrics_long`` and
``run_inputs``; and ``metric_summary`` over ``<database>.metric_history`` when the job
keeps it.

All are plain SQL views, so BI tools and SQL clients see them like tables. They read the
``runs`` table (every run of every loaded experiment, metrics as a MAP), so their text
does not grow with the number of experiments or metrics: a metastore with tens of
thousands of experiments stores the same two short statements (a ``UNION`` of every
``exp_<id>`` once outgrew the embedded Derby metastore's 32,700-character column).

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

``<database>.run_inputs``
    One row per dataset a run logged as input: ``run_id, experiment_id, dataset_name,
    dataset_digest, dataset_source_type, context`` (from ``runs.inputs``).

``<database>.metric_summary`` (with ``--with-history``)
    One row per run and metric over all its steps: ``run_id, experiment_id, key, last,
    last_step, min, min_step, max, max_step, steps, first_time, last_time`` (see
    `metric_summary_sql`): the best value at any step, e.g. for early stopping.

``<database>.metric_directions``
    The direction rules ``best_runs`` applies (`mlflow_fun.load.directions`): ``name,
    direction``. They come from `DEFAULT_DIRECTIONS` (rmse, mae, mse, loss, error: ``min``;
    r2, accuracy, auc, f1, precision, recall, score: ``max``), then a YAML file (see
    `resolve_directions`), then the ``directions`` argument. A key matches a rule by its
    whole normalized name (`normalize_metric_name`) or by its longest trailing run of words,
    so ``val/rmse``, ``training_log_loss`` and ``training_r2_score`` get a direction. A
    metric that no rule matches is left out of ``best_runs`` (there is no safe guess) and
    stays in ``metrics_long``; add it to ``conf/metric_directions.yaml`` to rank it.

A job run creates the views that are missing or whose statement changed (each view keeps
its statement's SHA-256 as a property, read for all of them in one metastore call): in a
new process, recreating them was 2.6 s of a 9.6 s incremental refresh on 2 cores, where
the check takes a tenth of a second. The rules table is rewritten only when the rules
change.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from mlflow_fun.catalog import (
    local_delta_path,
    metastore_locations,
    table_exists,
    table_information,
)
from mlflow_fun.load.commits import ensure_table
from mlflow_fun.load.delta_files import spark_schema
from mlflow_fun.load.directions import (
    DEFAULT_DIRECTIONS,
    DIRECTIONS_TABLE,
    METRIC_WORD,
    load_metric_directions,
    merge_directions,
    write_directions,
)
from mlflow_fun.load.side_tables import runs_schema
from mlflow_fun.transform.naming import (
    HISTORY_TABLE,
    RUNS_TABLE,
    qualified_table,
    validate_identifier,
)

# pyspark: the optional [spark] extra, imported inside the functions that use it.
if TYPE_CHECKING:
    from pyspark.sql import SparkSession

logger = logging.getLogger(__name__)


BEST_RUNS_VIEW = "best_runs"
SUMMARY_VIEW = "metric_summary"
INPUTS_VIEW = "run_inputs"
METRICS_LONG_VIEW = "metrics_long"
DIRECTIONS_FILE = os.path.join("conf", "metric_directions.yaml")
DIRECTIONS_FILE_ENV = "MLFLOW_FUN_METRIC_DIRECTIONS"
# The view property holding the SHA-256 of the statement a view was created by: a job
# run recreates only the views whose statement changed (or that are missing).
FINGERPRINT_PROPERTY = "mlflow_fun.statement_sha256"


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


def metrics_long_sql(database: str) -> str:
    """The ``CREATE OR REPLACE VIEW`` statement of ``<database>.metrics_long``.

    Its text is the same for any number of experiments and metrics.

    Example:
        >>> print(metrics_long_sql("db"))
        CREATE OR REPLACE VIEW `db`.`metrics_long` (...) AS SELECT ... FROM `db`.`runs` ...
    """
    return (
        f"CREATE OR REPLACE VIEW {qualified_table(database, METRICS_LONG_VIEW)} ("
        "experiment_id COMMENT 'MLflow experiment id', "
        "run_id COMMENT 'MLflow run id', "
        "run_name COMMENT 'MLflow run name', "
        "metric COMMENT 'MLflow metric key', "
        "value COMMENT 'latest value of the metric in the run') "
        "COMMENT 'Latest metrics of every run, one row per run and metric (mlflow-fun)' AS "
        "SELECT experiment_id, run_id, run_name, metric, value "
        f"FROM {_exploded(database)} WHERE value IS NOT NULL"
    )


def best_runs_sql(database: str) -> str:
    """The ``CREATE OR REPLACE VIEW`` statement of ``<database>.best_runs``.

    A metric takes part when a rule of ``<database>.metric_directions`` matches it: its
    normalized key (`normalize_metric_name`) equals the rule's name or ends with ``_`` and
    the name; the longest matching name wins. Its text is the same for any number of
    experiments and metrics.

    Example:
        >>> print(best_runs_sql("db"))
        CREATE OR REPLACE VIEW `db`.`best_runs` (...) AS SELECT ... FROM `db`.`runs` ...
    """
    rules = qualified_table(database, DIRECTIONS_TABLE)
    runs = qualified_table(database, RUNS_TABLE)
    # The metric keys in use, each with the direction of its longest matching rule.
    directed = (
        "SELECT metric, direction FROM ("
        "SELECT k.metric, r.direction, row_number() OVER (PARTITION BY k.metric "
        "ORDER BY length(r.name) DESC) AS rule_rank FROM ("
        "SELECT DISTINCT metric, "
        f"array_join(regexp_extract_all(lower(metric), '{METRIC_WORD.pattern}', 0), '_') AS words "
        f"FROM {runs} LATERAL VIEW explode(map_keys(metrics)) k AS metric) AS k "
        f"JOIN {rules} AS r ON k.words = r.name OR endswith(k.words, concat('_', r.name))"
        ") AS matched WHERE rule_rank = 1"
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
        "SELECT l.*, d.direction, row_number() OVER (PARTITION BY l.experiment_id, l.metric "
        "ORDER BY CASE WHEN d.direction = 'min' THEN l.value ELSE -l.value END ASC, "
        "l.start_time ASC NULLS LAST, l.run_id ASC) AS run_rank "
        f"FROM (SELECT * FROM {_exploded(database)} "
        "WHERE value IS NOT NULL AND NOT isnan(value)) AS l "
        f"JOIN ({directed}) AS d ON l.metric = d.metric) AS ranked WHERE run_rank = 1"
    )


def metric_summary_sql(database: str) -> str:
    """The ``CREATE OR REPLACE VIEW`` statement of ``<database>.metric_summary``.

    One row per run and metric of ``metric_history``, by `mlflow_fun.transform.steps`'
    rules: ``last`` is MLflow's latest value (highest step, then timestamp, then value);
    ``min``/``max`` skip NaN (NaN when every value is) and count at their earliest step.

    Example:
        >>> print(metric_summary_sql("db"))
        CREATE OR REPLACE VIEW `db`.`metric_summary` (...) AS SELECT ... GROUP BY ...
    """
    nan, low = "CAST('NaN' AS DOUBLE)", "CAST('-Infinity' AS DOUBLE)"
    latest = f"struct(step, timestamp, coalesce(v, {low}))"
    return (
        f"CREATE OR REPLACE VIEW {qualified_table(database, SUMMARY_VIEW)} ("
        "run_id COMMENT 'MLflow run id', "
        "experiment_id COMMENT 'MLflow experiment id', "
        "key COMMENT 'MLflow metric key', "
        "last COMMENT 'the latest value (MLflow''s value of the run)', "
        "last_step COMMENT 'its step', "
        "min COMMENT 'the lowest value at any step (NaN skipped)', "
        "min_step COMMENT 'the earliest step it was reached', "
        "max COMMENT 'the highest value at any step (NaN skipped)', "
        "max_step COMMENT 'the earliest step it was reached', "
        "steps COMMENT 'how many values were logged', "
        "first_time COMMENT 'when the first was logged', "
        "last_time COMMENT 'when the last was logged') "
        "COMMENT 'Each metric of each run over all its steps (mlflow-fun)' AS "
        f"SELECT run_id, experiment_id, key, max_by(value, {latest}) AS last, "
        f"max_by(step, {latest}) AS last_step, coalesce(min(v), {nan}) AS min, "
        "min_by(step, IF(v IS NULL, NULL, struct(v, step, timestamp))) AS min_step, "
        f"coalesce(max(v), {nan}) AS max, "
        "min_by(step, IF(v IS NULL, NULL, struct(-v, step, timestamp))) AS max_step, "
        "count(*) AS steps, min(timestamp) AS first_time, max(timestamp) AS last_time "
        "FROM (SELECT *, CASE WHEN isnan(value) THEN NULL ELSE value END AS v "
        f"FROM {qualified_table(database, HISTORY_TABLE)}) AS h "
        "GROUP BY run_id, experiment_id, key"
    )


def run_inputs_sql(database: str) -> str:
    """The ``CREATE OR REPLACE VIEW`` statement of ``<database>.run_inputs``.

    One row per dataset input of a run: "the best run on dataset X" is a join with it.

    Example:
        >>> print(run_inputs_sql("db"))
        CREATE OR REPLACE VIEW `db`.`run_inputs` (...) AS SELECT ... FROM `db`.`runs` ...
    """
    return (
        f"CREATE OR REPLACE VIEW {qualified_table(database, INPUTS_VIEW)} ("
        "run_id COMMENT 'MLflow run id', "
        "experiment_id COMMENT 'MLflow experiment id', "
        "dataset_name COMMENT 'the dataset''s name', "
        "dataset_digest COMMENT 'its digest (MLflow''s content hash)', "
        "dataset_source_type COMMENT 'where it came from: local, http, delta_table, ...', "
        "context COMMENT 'its role in the run (mlflow.data.context): train, eval, ...') "
        "COMMENT 'The datasets each run logged as inputs (mlflow-fun)' AS "
        "SELECT run_id, experiment_id, i.name, i.digest, i.source_type, i.context "
        f"FROM {qualified_table(database, RUNS_TABLE)} LATERAL VIEW explode(inputs) d AS i"
    )


def create_analyst_views(
    spark: SparkSession,
    database: str,
    directions: Mapping[str, str] | None = None,
    *,
    directions_file: str | os.PathLike[str] | None = None,
) -> None:
    """(Re)create ``best_runs``, ``metrics_long`` and ``run_inputs`` over ``<database>.runs``,
    and ``metric_summary`` over ``<database>.metric_history`` when it exists.

    Writes the direction rules to ``<database>.metric_directions`` when they changed, and
    an empty ``<database>.runs`` when there is none yet.

    Example:
        >>> create_analyst_views(spark, "mlflow_metrics", {"val_acc": "max"})
        >>> spark.sql("select * from mlflow_metrics.best_runs where metric = 'rmse'").show()

    Args:
        spark: The session whose catalog holds the database.
        database: The database of the job's tables.
        directions: ``metric: min|max`` overrides, applied last (see the module docstring).
        directions_file: A YAML file of directions; see `resolve_directions`.

    Raises:
        InvalidIdentifierError: ``database`` is not a valid name.
        ConfigError: A direction is not ``min``/``max`` or the directions file is bad.
    """
    validate_identifier(database, "database")
    resolved = resolve_directions(directions, directions_file)
    ensure_table(spark, database, RUNS_TABLE, runs_schema())
    rewritten = write_directions(spark, database, resolved)
    _add_inputs_column(spark, database)
    statements = {
        METRICS_LONG_VIEW: metrics_long_sql(database),
        BEST_RUNS_VIEW: best_runs_sql(database),
        INPUTS_VIEW: run_inputs_sql(database),
    }
    if table_exists(spark, database, HISTORY_TABLE):
        statements[SUMMARY_VIEW] = metric_summary_sql(database)
    stored = _stored_fingerprints(spark, database, list(statements))
    created = []
    for name, statement in statements.items():
        if stored.get(name) != fingerprint(statement):
            spark.sql(_marked(statement))
            created.append(name)
    logger.info(
        "analyst views created database=%s views=%s unchanged=%d direction_rules=%d "
        "rules_rewritten=%s",
        database,
        ",".join(created) or "-",
        len(statements) - len(created),
        len(resolved),
        rewritten,
    )


def fingerprint(statement: str) -> str:
    """A view statement's SHA-256 (hex), kept in the view's `FINGERPRINT_PROPERTY`.

    Example:
        >>> len(fingerprint(metrics_long_sql("db")))
        64
    """
    return hashlib.sha256(statement.encode("utf-8")).hexdigest()


def _marked(statement: str) -> str:
    """``statement`` with its fingerprint as a view property (before its query's ``AS``)."""
    head, query = statement.split("' AS SELECT ", 1)
    return (
        f"{head}' TBLPROPERTIES ('{FINGERPRINT_PROPERTY}' = '{fingerprint(statement)}') "
        f"AS SELECT {query}"
    )


def _stored_fingerprints(spark: SparkSession, database: str, names: list[str]) -> dict[str, str]:
    """View name -> the fingerprint it was created with, for those of ``names`` that exist
    and carry one (one metastore call; no view's query is analysed)."""
    found = {}
    for name, lines in table_information(spark, database, "|".join(names)).items():
        for line in lines:
            marker = line.find(f"{FINGERPRINT_PROPERTY}=")
            if line.startswith("Table Properties: ") and marker >= 0:
                start = marker + len(FINGERPRINT_PROPERTY) + 1
                found[name] = line[start : start + 64]
    return found


def _add_inputs_column(spark: SparkSession, database: str) -> None:
    """Add ``runs.inputs`` to a ``runs`` table written before it existed (NULL until the
    next full refresh or change of a run fills it)."""
    qualified = qualified_table(database, RUNS_TABLE)
    runs = local_delta_path(metastore_locations(spark, database, RUNS_TABLE).get(RUNS_TABLE))
    # A local table's columns come from its log: Spark would load the table, 0.5 s in a
    # new process, where a rebuild with its views unchanged asks Spark for nothing else.
    columns = spark_schema(runs).fieldNames() if runs else spark.table(qualified).columns
    if "inputs" not in columns:
        data_type = runs_schema()["inputs"].dataType.simpleString()
        spark.sql(f"ALTER TABLE {qualified} ADD COLUMNS (inputs {data_type})")
        logger.info("added the column inputs to %s", qualified)


def _exploded(database: str) -> str:
    """``runs`` with one row per run and metric key: ``metric``, ``value`` beside run info."""
    return (
        "(SELECT experiment_id, run_id, run_name, start_time, metric, value "
        f"FROM {qualified_table(database, RUNS_TABLE)} "
        "LATERAL VIEW explode(metrics) m AS metric, value) AS runs_metrics"
    )
