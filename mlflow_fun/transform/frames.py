"""Flattened runs to Spark: explicit schema with the MLflow key of every column."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pyarrow as pa

from mlflow_fun.transform.flatten import METADATA_KEY, METADATA_KIND, FlatRuns, to_arrow
from mlflow_fun.transform.naming import ColumnKey

# pyspark: the optional [spark] extra, imported inside the functions that use it.
if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
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


def arrow_frame(spark: SparkSession, tables: Sequence[pa.Table], schema: StructType) -> DataFrame:
    """One DataFrame of ``schema`` from same-schema Arrow ``tables`` (one plan, not a union).

    The chunks are combined into one: PySpark 4.2's ``createDataFrame`` of an Arrow table
    stops at the first empty record batch (an experiment without runs), losing the rest.
    """
    return spark.createDataFrame(pa.concat_tables(tables).combine_chunks(), schema=schema)


def to_pandas(flat: FlatRuns) -> pd.DataFrame:
    """Convert flattened runs to pandas with nullable dtypes (see `arrow_to_pandas`).

    ``df.attrs["mlflow_keys"]`` maps each metric, param and tag column to its
    ``(kind, MLflow key)``.
    """
    df = arrow_to_pandas(to_arrow(flat))
    df.attrs["mlflow_keys"] = {c.name: (c.kind, c.key) for c in flat.columns if c.kind != "info"}
    return df


def arrow_to_pandas(table: pa.Table) -> pd.DataFrame:
    """An Arrow run table as pandas with nullable dtypes.

    INT and BIGINT become ``Int64``, DOUBLE ``float64``, BOOLEAN ``boolean``, STRING
    ``string``, TIMESTAMP ``datetime64[ns, UTC]``.
    """
    import pandas as pd
    import pyarrow as pa

    mapping = {
        pa.int32(): pd.Int64Dtype(),
        pa.int64(): pd.Int64Dtype(),
        pa.bool_(): pd.BooleanDtype(),
        pa.string(): pd.StringDtype(),
        pa.large_string(): pd.StringDtype(),
    }
    return table.to_pandas(types_mapper=mapping.get, coerce_temporal_nanoseconds=True)
