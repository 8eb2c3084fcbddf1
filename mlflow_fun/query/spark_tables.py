"""Read-side helpers over the tables the job writes: best run, experiment lookup."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from mlflow_fun.catalog import (
    local_delta_path,
    location_of,
    provider_of,
    table_exists,
    table_information,
)
from mlflow_fun.config import JobConfig
from mlflow_fun.errors import ConfigError, ExperimentNotFoundError
from mlflow_fun.java_runtime import check_spark_runtime
from mlflow_fun.query.engine import RUNS, best_run_of
from mlflow_fun.query.model import no_value_error
from mlflow_fun.query.tables import LocalExperimentTable, TableNotLocalError
from mlflow_fun.session import (
    METASTORE_URIS_KEY,
    METASTORE_URL_KEY,
    build_spark_session,
    spark_conf_dir,
)
from mlflow_fun.transform.flatten import Column, resolve_metric
from mlflow_fun.transform.frames import column_keys
from mlflow_fun.transform.naming import (
    STATUS_TABLE,
    ColumnKey,
    qualified_table,
    table_name,
    validate_identifier,
)

# pyspark: the optional [spark] extra, imported inside the functions that use it.
if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


logger = logging.getLogger(__name__)

# The columns `best_run_of` reads besides the metric: the answer and the tie rule.
TIE_COLUMNS = (RUNS.id_column, "experiment_id", RUNS.time_column)

# Settings that name a metastore other than the embedded default's.
METASTORE_KEYS = (METASTORE_URL_KEY, METASTORE_URIS_KEY)


def table_session(config: JobConfig) -> SparkSession:
    """The Spark session that sees the job's tables: the active one, or one from ``config``.

    ``config`` is the job's settings (`resolve_config`): its ``data_dir`` (the embedded
    default), or a metastore in its ``spark_conf`` or in a ``hive-site.xml`` of Spark's.
    With none of them there are no tables to read, and no metastore is created.

    Raises:
        ConfigError: ``data_dir`` does not exist, or nothing says where the tables are.
        MissingRuntimeError: pyspark, delta-spark or Java 17+ is missing.
    """
    check_spark_runtime()  # one line on what to install, before pyspark is imported
    from pyspark.sql import SparkSession  # pyspark: only where Spark is asked for

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    data_dir = config.data_dir
    if data_dir is not None and not os.path.isdir(data_dir):
        raise ConfigError(
            f"data_dir {data_dir!r} does not exist; run `mlflow-fun build --data_dir "
            f"{data_dir}` first"
        )
    if data_dir is None and not _metastore_configured(config.spark_conf):
        raise ConfigError(
            "no tables to read: give --data_dir (as given to `mlflow-fun build`) or --conf "
            "with the job's metastore settings (e.g. conf/metastore-postgres.yaml)"
        )
    return build_spark_session(data_dir=data_dir, app_name="mlflow-fun-sql", conf=config.spark_conf)


def spark_session(data_dir: str | None) -> SparkSession:
    """A session for DataFrames of runs (no tables): the active one, or a local one."""
    check_spark_runtime()
    from pyspark.sql import SparkSession

    return SparkSession.getActiveSession() or build_spark_session(
        data_dir=data_dir, app_name="mlflow-fun-best"
    )


def _metastore_configured(spark_conf: Mapping[str, str]) -> bool:
    """A metastore in the settings, or a ``hive-site.xml`` where Spark reads its own."""
    if any(key in spark_conf for key in METASTORE_KEYS):
        return True
    folders = [spark_conf_dir(), os.environ.get("HADOOP_CONF_DIR")]
    return any(
        folder and os.path.isfile(os.path.join(folder, "hive-site.xml")) for folder in folders
    )


def read_experiment_table(spark: SparkSession, database: str, experiment_id: str) -> DataFrame:
    """``<database>.exp_<experiment_id>`` as a DataFrame.

    Raises:
        ExperimentNotFoundError: The table does not exist (the job has not loaded it).
    """
    name = table_name(experiment_id)
    if not table_exists(spark, validate_identifier(database, "database"), name):
        raise ExperimentNotFoundError(
            f"table {database}.{name} does not exist; run `mlflow-fun build "
            f"--experiment_ids {experiment_id}` first"
        )
    return spark.table(qualified_table(database, name))


def experiment_id_by_name(spark: SparkSession, database: str, name: str) -> str:
    """The id of the experiment called ``name``, from the latest successful job run.

    Raises:
        ExperimentNotFoundError: No table of the database was loaded from such an experiment.
    """
    from pyspark.sql import functions as F

    if not table_exists(spark, validate_identifier(database, "database"), STATUS_TABLE):
        raise ExperimentNotFoundError(f"database {database!r} has no tables built by mlflow-fun")
    rows = (
        spark.table(qualified_table(database, STATUS_TABLE))
        .where((F.col("experiment_name") == F.lit(name)) & (F.col("status") == F.lit("ok")))
        .orderBy(F.col("refreshed_at").desc())
        .select("experiment_id")
        .limit(1)
        .collect()
    )
    if not rows:
        raise ExperimentNotFoundError(
            f"no table in {database!r} was built from an experiment named {name!r}"
        )
    return str(rows[0]["experiment_id"])


def best_run_from_table(
    spark: SparkSession, database: str, experiment_id: str, metric: str, ascending: bool = True
) -> tuple[str, float]:
    """Best run read from ``<database>.exp_<experiment_id>``; rules as the builders.

    The session's catalog says where the table is. A Delta table on the local file system
    is read by delta-rs, only the metric's column and those of the tie rule (milliseconds;
    a Spark query of a Delta table plans it with a Spark job of its own, about 0.3 s);
    any other table, or one delta-rs cannot read, through Spark. Both give the same
    answer (`best_run_of`).

    Example:
        >>> best_run_from_table(spark, "mlflow_metrics", "1", "rmse")
        ('5f0c…', 0.7223)

    Raises:
        ExperimentNotFoundError: The table does not exist.
        MetricNotFoundError: No column holds the metric, or no run has a value.
    """
    df = None
    path = _local_delta_path(spark, database, experiment_id)
    if path is not None:
        try:
            table = LocalExperimentTable(path)
            column = _metric_column(table.keys, metric, experiment_id)
            df = table.frame([*TIE_COLUMNS, column.name])
        except TableNotLocalError as e:  # a table feature delta-rs lacks: Spark reads it
            logger.info("asking Spark experiment_id=%s reason=%s", experiment_id, e)
    if df is None:
        df = read_experiment_table(spark, database, experiment_id)
        column = _metric_column(column_keys(df.schema), metric, experiment_id)
    best = best_run_of(df, column.name, ascending)
    if best is None:
        raise no_value_error(experiment_id, metric)
    return best


def _metric_column(keys: Mapping[str, ColumnKey], metric: str, experiment_id: str) -> Column:
    """The column of ``metric`` (``rmse`` or ``_m_rmse``) among a table's ``column ->
    (kind, MLflow key)``; `resolve_metric`'s error where there is none."""
    columns = [Column(name, kind, key, "double") for name, (kind, key) in keys.items()]
    return resolve_metric(columns, metric, experiment_id)


def _local_delta_path(spark: SparkSession, database: str, experiment_id: str) -> str | None:
    """The local folder of the experiment's table if the catalog has it as a Delta table
    there, else None (also where the catalog knows no such table or database: then
    `read_experiment_table` says what is missing)."""
    from pyspark.errors import AnalysisException

    name = table_name(experiment_id)
    try:
        information = table_information(spark, validate_identifier(database, "database"), name)
    except AnalysisException:
        return None  # no such database
    # The metastore keeps names in lower case; Spark finds a table whatever its case.
    lines = {found.lower(): info for found, info in information.items()}.get(name.lower())
    if lines is None or (provider_of(lines) or "").lower() != "delta":
        return None
    return local_delta_path(location_of(lines))


def loaded_experiment_ids(spark: SparkSession, database: str) -> list[str]:
    """Ids of every experiment with a table ``exp_<id>`` in ``database``."""
    validate_identifier(database, "database")
    names = [t.name for t in spark.catalog.listTables(database)]
    return sorted(n[4:] for n in names if n.startswith("exp_") and len(n) > 4)
