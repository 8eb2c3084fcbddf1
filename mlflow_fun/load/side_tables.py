"""The Delta tables beside ``exp_<id>``: refresh state, ``runs``, ``experiments`` and
``metric_history``, and the writes that keep them in step.

- ``<database>.mlflow_state``: one row per experiment (`RefreshState`), written after the
  experiment's data, so a job killed between the two re-pulls rather than skips changes.
- ``<database>.runs``: every run of every loaded experiment, metrics/params/tags as MAPs,
  its dataset inputs as an ARRAY of structs (the view ``run_inputs`` has one row each).
- ``<database>.experiments``: the experiments whose ``exp_<id>`` table was written.
- ``<database>.metric_history``: every logged metric value (``--with-history``).

Every write is one Delta commit: a MERGE by key, or an overwrite of one experiment's rows
(``replaceWhere``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from mlflow_fun.catalog import table_exists
from mlflow_fun.extract.incremental import RefreshState
from mlflow_fun.model import Experiment, MetricPoint, RunRecord
from mlflow_fun.transform.naming import STATE_TABLE, qualified_table

# pyspark: the optional [spark] extra, imported inside the functions that use it.
if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType


_TIMESTAMP = pa.timestamp("ms", tz="UTC")
# The fields of a run's dataset inputs (`DatasetInput`), as ``runs.inputs`` holds them.
_INPUT_FIELDS = ("name", "digest", "source_type", "context")


def state_schema() -> StructType:
    """Schema of ``<database>.mlflow_state``."""
    from pyspark.sql import types as T

    return T.StructType(
        [
            T.StructField("experiment_id", T.StringType()),
            T.StructField("watermark_ms", T.LongType()),
            T.StructField("open_run_ids", T.ArrayType(T.StringType())),
            T.StructField("deleted_run_ids", T.ArrayType(T.StringType())),
            T.StructField("with_history", T.BooleanType()),
            T.StructField("fingerprints", T.MapType(T.StringType(), T.StringType())),
            T.StructField("refreshed_at", T.TimestampType()),
            # last: a table written before this column got it appended by its next MERGE
            T.StructField("settled", T.MapType(T.StringType(), T.LongType())),
        ]
    )


def runs_schema() -> StructType:
    """Schema of ``<database>.runs``."""
    from pyspark.sql import types as T

    return T.StructType(
        [
            T.StructField("run_id", T.StringType()),
            T.StructField("experiment_id", T.StringType()),
            T.StructField("run_name", T.StringType()),
            T.StructField("user_id", T.StringType()),
            T.StructField("status", T.StringType()),
            T.StructField("lifecycle_stage", T.StringType()),
            T.StructField("start_time", T.TimestampType()),
            T.StructField("end_time", T.TimestampType()),
            T.StructField("artifact_uri", T.StringType()),
            T.StructField("metrics", T.MapType(T.StringType(), T.DoubleType())),
            T.StructField("params", T.MapType(T.StringType(), T.StringType())),
            T.StructField("tags", T.MapType(T.StringType(), T.StringType())),
            T.StructField(
                "inputs",
                T.ArrayType(
                    T.StructType([T.StructField(n, T.StringType()) for n in _INPUT_FIELDS])
                ),
            ),
        ]
    )


def experiments_schema() -> StructType:
    """Schema of ``<database>.experiments``."""
    from pyspark.sql import types as T

    return T.StructType(
        [
            T.StructField("experiment_id", T.StringType()),
            T.StructField("name", T.StringType()),
            T.StructField("lifecycle_stage", T.StringType()),
            T.StructField("artifact_location", T.StringType()),
            T.StructField("tags", T.MapType(T.StringType(), T.StringType())),
            T.StructField("creation_time", T.TimestampType()),
            T.StructField("last_update_time", T.TimestampType()),
        ]
    )


def history_schema() -> StructType:
    """Schema of ``<database>.metric_history``."""
    from pyspark.sql import types as T

    return T.StructType(
        [
            T.StructField("experiment_id", T.StringType()),
            T.StructField("run_id", T.StringType()),
            T.StructField("key", T.StringType()),
            T.StructField("value", T.DoubleType()),
            T.StructField("step", T.LongType()),
            T.StructField("timestamp", T.TimestampType()),
        ]
    )


def runs_table(runs: Sequence[RunRecord]) -> pa.Table:
    """``<database>.runs`` rows of ``runs`` as an Arrow table (see `arrow_frame`)."""
    info = {
        name: [run.info.get(name) for run in runs]
        for name in ("run_name", "user_id", "status", "lifecycle_stage", "artifact_uri")
    }
    table = pa.table(
        {
            "run_id": pa.array([run.run_id for run in runs], pa.string()),
            "experiment_id": pa.array(
                [str(run.info["experiment_id"]) for run in runs], pa.string()
            ),
            "run_name": pa.array(
                [
                    n or run.tags.get("mlflow.runName")
                    for n, run in zip(info["run_name"], runs, strict=True)
                ],
                pa.string(),
            ),
            "user_id": pa.array(info["user_id"], pa.string()),
            "status": pa.array(info["status"], pa.string()),
            "lifecycle_stage": pa.array(info["lifecycle_stage"], pa.string()),
            "start_time": pa.array([run.info.get("start_time") for run in runs], _TIMESTAMP),
            "end_time": pa.array([run.info.get("end_time") for run in runs], _TIMESTAMP),
            "artifact_uri": pa.array(info["artifact_uri"], pa.string()),
            "metrics": sorted_map([run.metrics for run in runs], pa.float64()),
            "params": sorted_map([run.params for run in runs], pa.string()),
            "tags": sorted_map([run.tags for run in runs], pa.string()),
            "inputs": pa.array(
                [[vars(i) for i in run.inputs] for run in runs],
                pa.list_(pa.struct([(n, pa.string()) for n in _INPUT_FIELDS])),
            ),
        }
    )
    return table


def sorted_map(mappings: Sequence[Mapping[str, Any]], value_type: pa.DataType) -> pa.MapArray:
    """An Arrow MAP<STRING, value_type> of ``mappings``, keys sorted within each entry.

    Built from flat key and value lists and offsets: 4x faster than converting a list of
    sorted ``(key, value)`` lists (1.6 s for the 100k runs of make bench).

    Example:
        >>> sorted_map([{"b": 1.0, "a": 2.0}, {}], pa.float64()).to_pylist()
        [[('a', 2.0), ('b', 1.0)], []]
    """
    offsets = [0]
    keys: list[str] = []
    values: list[Any] = []
    for mapping in mappings:
        ordered = sorted(mapping)
        keys += ordered
        values += [mapping[key] for key in ordered]
        offsets.append(len(keys))
    return pa.MapArray.from_arrays(
        pa.array(offsets, pa.int32()), pa.array(keys, pa.string()), pa.array(values, value_type)
    )


def experiments_dataframe(spark: SparkSession, experiments: Sequence[Experiment]) -> DataFrame:
    """``<database>.experiments`` rows of ``experiments``."""
    return spark.createDataFrame(experiments_table(experiments), schema=experiments_schema())


def experiments_table(experiments: Sequence[Experiment]) -> pa.Table:
    """``<database>.experiments`` rows of ``experiments`` as an Arrow table."""
    return pa.table(
        {
            "experiment_id": pa.array([e.experiment_id for e in experiments], pa.string()),
            "name": pa.array([e.name for e in experiments], pa.string()),
            "lifecycle_stage": pa.array([e.lifecycle_stage for e in experiments], pa.string()),
            "artifact_location": pa.array([e.artifact_location for e in experiments], pa.string()),
            "tags": sorted_map([e.tags for e in experiments], pa.string()),
            "creation_time": pa.array([e.creation_time for e in experiments], _TIMESTAMP),
            "last_update_time": pa.array([e.last_update_time for e in experiments], _TIMESTAMP),
        }
    )


def changed_rows(stored: pa.Table, rows: pa.Table, key: str) -> bool:
    """True if a row of ``rows`` is not in ``stored`` as it is (by ``key``; both Arrow
    tables of one schema, maps compared as mappings).

    Example:
        >>> old = pa.table({"id": ["1"], "name": ["a"]})
        >>> changed_rows(old, pa.table({"id": ["1"], "name": ["b"]}), "id")
        True
    """
    wanted = pc.is_in(stored.column(key), value_set=rows.column(key))
    held = {row[key]: _comparable(row) for row in stored.filter(wanted).to_pylist()}
    return any(held.get(row[key]) != _comparable(row) for row in rows.to_pylist())


def _comparable(row: Mapping[str, Any]) -> dict[str, Any]:
    """An Arrow row whose maps (lists of pairs) are dicts."""
    return {
        name: dict(value)
        if isinstance(value, list) and value and isinstance(value[0], tuple)
        else value
        for name, value in row.items()
    }


def history_table(experiment_id: str, points: Iterable[MetricPoint]) -> pa.Table:
    """``<database>.metric_history`` rows of one experiment as an Arrow table."""
    points = list(points)
    table = pa.table(
        {
            "experiment_id": pa.array([experiment_id] * len(points), pa.string()),
            "run_id": pa.array([p.run_id for p in points], pa.string()),
            "key": pa.array([p.key for p in points], pa.string()),
            "value": pa.array([p.value for p in points], pa.float64()),
            "step": pa.array([p.step for p in points], pa.int64()),
            "timestamp": pa.array([p.timestamp for p in points], _TIMESTAMP),
        }
    )
    return table


def read_states(spark: SparkSession, database: str) -> dict[str, RefreshState]:
    """experiment id -> its stored state (empty when the state table does not exist)."""
    if not table_exists(spark, database, STATE_TABLE):
        return {}
    rows = spark.table(qualified_table(database, STATE_TABLE)).collect()
    return states_of(row.asDict() for row in rows)


def states_of(rows: Iterable[Mapping[str, Any]]) -> dict[str, RefreshState]:
    """experiment id -> state, from rows of ``mlflow_state`` (Spark's, whose maps are
    dicts, or Arrow's, whose maps are lists of pairs; a row from before ``settled`` too)."""
    return {
        row["experiment_id"]: RefreshState(
            row["experiment_id"],
            row["watermark_ms"],
            frozenset(row["open_run_ids"] or ()),
            frozenset(row["deleted_run_ids"] or ()),
            bool(row["with_history"]),
            dict(row["fingerprints"] or {}),
            dict(row.get("settled") or {}),
        )
        for row in rows
    }


def history_keys() -> list[str]:
    """What identifies a row of ``metric_history`` (MLflow's primary key of ``metrics``)."""
    return ["run_id", "key", "step", "timestamp", "value"]
