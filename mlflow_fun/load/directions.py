"""The metric direction rules: which way is better for a metric, and the
``<database>.metric_directions`` table that holds them for the ``best_runs`` view.

A rule is ``name: min|max`` (``min``: lower is better). Names and keys are compared in
one normal form (`normalize_metric_name`: lower case, words joined by ``_``), so
``Val/RMSE`` is ``val_rmse``; the ``best_runs`` view applies the same words in SQL
(`METRIC_WORD`). The job's rules are `DEFAULT_DIRECTIONS`, then a YAML file
(`load_metric_directions`), then the caller's: `mlflow_fun.load.views.resolve_directions`
layers them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from mlflow_fun.catalog import metastore_locations, table_exists
from mlflow_fun.config import read_yaml_mapping
from mlflow_fun.errors import ConfigError
from mlflow_fun.load import delta_files
from mlflow_fun.load.commits import committed, create_by_delta_rs, delta_rs_path
from mlflow_fun.transform.naming import qualified_table

# pyspark: the optional [spark] extra, imported inside the functions that use it.
if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType


DIRECTIONS_TABLE = "metric_directions"

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
# One word of a metric name; `mlflow_fun.load.views.best_runs_sql` splits keys by it too.
METRIC_WORD = re.compile(r"[a-z0-9]+")


def normalize_metric_name(name: str) -> str:
    """Lower-case ``name`` and join its words with ``_``: the form directions are matched in.

    Example:
        >>> normalize_metric_name("Val/RMSE")
        'val_rmse'
    """
    return "_".join(METRIC_WORD.findall(name.lower()))


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


def load_metric_directions(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read a YAML mapping ``metric: min|max`` (see ``conf/metric_directions.yaml``).

    Example:
        >>> load_metric_directions("conf/metric_directions.yaml")["rmse"]
        'min'

    Raises:
        ConfigError: The file is missing, not YAML, not a mapping, or has a bad direction.
    """
    where = os.fspath(path)
    raw = read_yaml_mapping(path, "metric directions file", "metric: min|max")
    try:
        return merge_directions({str(k): str(v) for k, v in raw.items()})
    except ConfigError as e:
        raise ConfigError(f"metric directions file {where!r}: {e}") from e


def directions_dataframe(spark: SparkSession, directions: Mapping[str, str]) -> DataFrame:
    """The rows of ``<database>.metric_directions`` for normalized ``directions``, by name."""
    return spark.createDataFrame(sorted(directions.items()), _directions_schema())


def _directions_schema() -> StructType:
    from pyspark.sql import types as T

    return T.StructType(
        [T.StructField("name", T.StringType()), T.StructField("direction", T.StringType())]
    )


def write_directions(spark: SparkSession, database: str, directions: Mapping[str, str]) -> bool:
    """Store the direction rules in ``<database>.metric_directions``; no commit if unchanged.

    A local table delta-rs may write (`delta_rs_path`) is read, and rewritten when the rules
    changed, by delta-rs: Spark's read was the one Spark job of a local rebuild, 10 s in
    a new process on 2 cores (its first Delta read). Elsewhere Spark reads and writes it.

    Returns:
        Whether the table was (re)written.
    """
    qualified = qualified_table(database, DIRECTIONS_TABLE)
    schema = _directions_schema()
    table = delta_files.rows_table(sorted(directions.items()), schema)
    if table_exists(spark, database, DIRECTIONS_TABLE):
        found = metastore_locations(spark, database, DIRECTIONS_TABLE).get(DIRECTIONS_TABLE)
        path = delta_rs_path(found, schema)
        stored = (
            delta_files.read(path).to_pylist()
            if path is not None
            else [row.asDict() for row in spark.table(qualified).collect()]
        )
        if {row["name"]: row["direction"] for row in stored} == dict(directions):
            return False
        if path is not None:
            committed(DIRECTIONS_TABLE, lambda: delta_files.overwrite(path, table))
            return True
    elif create_by_delta_rs(spark, database, DIRECTIONS_TABLE, [table], schema):
        return True
    (
        directions_dataframe(spark, directions)
        .write.format("delta")
        .mode("overwrite")
        .option("overwriteSchema", "true")
        .saveAsTable(qualified)
    )
    return True
