"""``<database>.logged_models`` and ``<database>.model_metrics``: MLflow 3's logged models
as tables (``--with-models``).

``logged_models`` holds one row per model (params and tags as maps); ``model_metrics`` one
row per metric value, its dataset in plain columns, so "the best model on dataset X" is a
``where dataset_name = 'X'`` and an ``order by value``, without JSON or map functions, and
a metric measured on two datasets is two rows, not two keys to name apart.

Each job run replaces the rows of the loaded experiments in both tables, one Delta commit
per table (``replaceWhere experiment_id IN (...)``, as ``runs``): a job that loads other
experiments leaves their models alone, and a model deleted in MLflow is gone from the
tables at the next run that loads its experiment. Both are Delta tables whatever the
job's ``--table-format`` (as ``runs`` and ``metric_history``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pyarrow as pa

from mlflow_fun.extract.logged_models import LoggedModelRecord
from mlflow_fun.load.commits import replace_experiments
from mlflow_fun.load.side_tables import sorted_map
from mlflow_fun.transform.frames import arrow_frame
from mlflow_fun.transform.naming import LOGGED_MODELS_TABLE, MODEL_METRICS_TABLE

# pyspark: the optional [spark] extra, imported inside the functions that use it.
if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from pyspark.sql.types import StructType

_TIMESTAMP = pa.timestamp("ms", tz="UTC")


def logged_models_schema() -> StructType:
    """Schema of ``<database>.logged_models``."""
    from pyspark.sql import types as T

    return T.StructType(
        [
            T.StructField("model_id", T.StringType()),
            T.StructField("name", T.StringType()),
            T.StructField("experiment_id", T.StringType()),
            T.StructField("source_run_id", T.StringType()),
            T.StructField("model_type", T.StringType()),
            T.StructField("status", T.StringType()),
            T.StructField("creation_time", T.TimestampType()),
            T.StructField("last_updated_time", T.TimestampType()),
            T.StructField("artifact_location", T.StringType()),
            T.StructField("params", T.MapType(T.StringType(), T.StringType())),
            T.StructField("tags", T.MapType(T.StringType(), T.StringType())),
        ]
    )


def model_metrics_schema() -> StructType:
    """Schema of ``<database>.model_metrics``."""
    from pyspark.sql import types as T

    return T.StructType(
        [
            T.StructField("model_id", T.StringType()),
            T.StructField("experiment_id", T.StringType()),
            T.StructField("key", T.StringType()),
            T.StructField("value", T.DoubleType()),
            T.StructField("step", T.LongType()),
            T.StructField("timestamp", T.TimestampType()),
            T.StructField("dataset_name", T.StringType()),
            T.StructField("dataset_digest", T.StringType()),
            T.StructField("run_id", T.StringType()),
        ]
    )


def logged_models_table(models: Sequence[LoggedModelRecord]) -> pa.Table:
    """``<database>.logged_models`` rows of ``models`` as an Arrow table.

    Example:
        >>> logged_models_table([]).num_rows
        0
    """
    return pa.table(
        {
            "model_id": pa.array([m.model_id for m in models], pa.string()),
            "name": pa.array([m.name for m in models], pa.string()),
            "experiment_id": pa.array([m.experiment_id for m in models], pa.string()),
            "source_run_id": pa.array([m.source_run_id for m in models], pa.string()),
            "model_type": pa.array([m.model_type for m in models], pa.string()),
            "status": pa.array([m.status for m in models], pa.string()),
            "creation_time": pa.array([m.creation_time for m in models], _TIMESTAMP),
            "last_updated_time": pa.array([m.last_updated_time for m in models], _TIMESTAMP),
            "artifact_location": pa.array([m.artifact_location for m in models], pa.string()),
            "params": sorted_map([m.params for m in models], pa.string()),
            "tags": sorted_map([m.tags for m in models], pa.string()),
        }
    )


def model_metrics_table(models: Sequence[LoggedModelRecord]) -> pa.Table:
    """``<database>.model_metrics`` rows of ``models``: one per metric value.

    Example:
        >>> model_metrics_table([]).num_rows
        0
    """
    rows = [(m, metric) for m in models for metric in m.metrics]
    return pa.table(
        {
            "model_id": pa.array([m.model_id for m, _ in rows], pa.string()),
            "experiment_id": pa.array([m.experiment_id for m, _ in rows], pa.string()),
            "key": pa.array([x.key for _, x in rows], pa.string()),
            "value": pa.array([x.value for _, x in rows], pa.float64()),
            "step": pa.array([x.step for _, x in rows], pa.int64()),
            "timestamp": pa.array([x.timestamp for _, x in rows], _TIMESTAMP),
            "dataset_name": pa.array([x.dataset_name for _, x in rows], pa.string()),
            "dataset_digest": pa.array([x.dataset_digest for _, x in rows], pa.string()),
            "run_id": pa.array([x.run_id for _, x in rows], pa.string()),
        }
    )


def write_logged_models(
    spark: SparkSession,
    database: str,
    experiment_ids: Sequence[str],
    models: Sequence[LoggedModelRecord],
) -> None:
    """Replace the rows of ``experiment_ids`` in ``logged_models`` and ``model_metrics``.

    One commit per table; the rows of other experiments stay.

    Example:
        >>> write_logged_models(spark, "mlflow_metrics", ["1"], read_logged_models(client, ["1"]))
        >>> spark.sql("select model_id, value from mlflow_metrics.model_metrics "
        ...           "where key = 'rmse' and dataset_name = 'wine-test' order by value limit 1")

    Args:
        spark: The session (its catalog is the metastore written to).
        database: The database, already validated and created.
        experiment_ids: The experiments whose rows are replaced.
        models: Every logged model of those experiments (none empties their rows).

    Raises:
        ValueError: A model belongs to none of ``experiment_ids`` (its row would
            outlive the next replacement).
    """
    if not experiment_ids:
        return
    outside = sorted({m.experiment_id for m in models} - set(experiment_ids))
    if outside:
        raise ValueError(f"logged models of experiments not being replaced: {', '.join(outside)}")
    models_df = arrow_frame(spark, [logged_models_table(models)], logged_models_schema())
    metrics_df = arrow_frame(spark, [model_metrics_table(models)], model_metrics_schema())
    replace_experiments(spark, database, LOGGED_MODELS_TABLE, experiment_ids, models_df)
    replace_experiments(spark, database, MODEL_METRICS_TABLE, experiment_ids, metrics_df)
