"""Flattened runs to Spark: explicit schema with the MLflow key of every column."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlflow_fun.flatten import METADATA_KEY, METADATA_KIND, FlatRuns, to_arrow
from mlflow_fun.naming import ColumnKey

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import DataType, StructType


def spark_type(column_type: str) -> DataType:
    """The Spark type of a column type (``int`` -> IntegerType, ...)."""
    from pyspark.sql import types as T

    return {
        "string": T.StringType(),
        "int": T.IntegerType(),
        "bigint": T.LongType(),
        "double": T.DoubleType(),
        "boolean": T.BooleanType(),
        "timestamp": T.TimestampType(),
    }[column_type]


def spark_schema(flat: FlatRuns) -> StructType:
    """The explicit schema of ``flat``; each field's metadata holds the MLflow key.

    The metadata is ``{"comment": key, "mlflow_key": key, "mlflow_kind": kind}``, so a
    table written from it shows the MLflow key as the column comment.
    """
    from pyspark.sql import types as T

    return T.StructType(
        [
            T.StructField(
                c.name,
                spark_type(c.type),
                nullable=True,
                metadata={"comment": c.key, METADATA_KEY: c.key, METADATA_KIND: c.kind},
            )
            for c in flat.columns
        ]
    )


def to_spark(spark: SparkSession, flat: FlatRuns) -> DataFrame:
    """Make a Spark DataFrame of ``flat`` through Arrow, with `spark_schema`."""
    return spark.createDataFrame(to_arrow(flat), schema=spark_schema(flat))


def column_keys(schema: StructType) -> dict[str, ColumnKey]:
    """Column name -> ``(kind, MLflow key)`` for every metric, param and tag column.

    Example:
        >>> column_keys(spark.table("mlflow_metrics.exp_1").schema)["_m_train_loss"]
        ('metric', 'train/loss')
    """
    keys: dict[str, ColumnKey] = {}
    for field in schema.fields:
        kind = field.metadata.get(METADATA_KIND)
        if kind and kind != "info":
            keys[field.name] = (kind, field.metadata.get(METADATA_KEY, field.name))
    return keys
