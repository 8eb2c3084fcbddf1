"""``<database>.model_versions``: the model registry as a table (``--with-registry``).

One row per model version. The registry is small, so each job run replaces the whole
table in one commit (Delta ``overwrite``; Parquet: a new folder swapped in): a deleted
version or a moved alias is gone from the table as it is from the registry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pyarrow as pa

from mlflow_fun.extract.registry import ModelVersionRecord
from mlflow_fun.load.side_tables import sorted_map
from mlflow_fun.load.writer import TableWriter
from mlflow_fun.transform.frames import arrow_frame

# pyspark: the optional [spark] extra, imported inside the functions that use it.
if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from pyspark.sql.types import StructType

MODEL_VERSIONS_TABLE = "model_versions"

_TIMESTAMP = pa.timestamp("ms", tz="UTC")


def model_versions_schema() -> StructType:
    """Schema of ``<database>.model_versions``."""
    from pyspark.sql import types as T

    return T.StructType(
        [
            T.StructField("name", T.StringType()),
            T.StructField("version", T.IntegerType()),
            T.StructField("run_id", T.StringType()),
            T.StructField("model_id", T.StringType()),
            T.StructField("source", T.StringType()),
            T.StructField("status", T.StringType()),
            T.StructField("current_stage", T.StringType()),
            T.StructField("aliases", T.ArrayType(T.StringType())),
            T.StructField("tags", T.MapType(T.StringType(), T.StringType())),
            T.StructField("creation_time", T.TimestampType()),
            T.StructField("last_updated_time", T.TimestampType()),
            T.StructField("description", T.StringType()),
        ]
    )


def model_versions_table(versions: Sequence[ModelVersionRecord]) -> pa.Table:
    """``<database>.model_versions`` rows of ``versions`` as an Arrow table.

    Example:
        >>> model_versions_table([]).num_rows
        0
    """
    return pa.table(
        {
            "name": pa.array([v.name for v in versions], pa.string()),
            "version": pa.array([v.version for v in versions], pa.int32()),
            "run_id": pa.array([v.run_id for v in versions], pa.string()),
            "model_id": pa.array([v.model_id for v in versions], pa.string()),
            "source": pa.array([v.source for v in versions], pa.string()),
            "status": pa.array([v.status for v in versions], pa.string()),
            "current_stage": pa.array([v.current_stage for v in versions], pa.string()),
            "aliases": pa.array([list(v.aliases) for v in versions], pa.list_(pa.string())),
            "tags": sorted_map([v.tags for v in versions], pa.string()),
            "creation_time": pa.array([v.creation_time for v in versions], _TIMESTAMP),
            "last_updated_time": pa.array([v.last_updated_time for v in versions], _TIMESTAMP),
            "description": pa.array([v.description for v in versions], pa.string()),
        }
    )


def write_model_versions(
    spark: SparkSession,
    database: str,
    versions: Sequence[ModelVersionRecord],
    table_format: str = "delta",
) -> None:
    """Replace ``<database>.model_versions`` by ``versions`` in one commit.

    Example:
        >>> write_model_versions(spark, "mlflow_metrics", read_model_versions(client))
        >>> spark.sql("select name, version from mlflow_metrics.model_versions "
        ...           "where array_contains(aliases, 'champion')")

    Args:
        spark: The session (its catalog is the metastore written to).
        database: The database, already validated and created.
        versions: Every model version of the registry (an empty list empties the table).
        table_format: ``delta`` or ``parquet``, as the job's other tables.
    """
    writer = TableWriter(spark, database, None, table_format)
    df = arrow_frame(spark, [model_versions_table(versions)], model_versions_schema())
    writer.replace(MODEL_VERSIONS_TABLE, df, exists=writer.table_exists(MODEL_VERSIONS_TABLE))
