"""Runs deleted since the last refresh: whether taking their rows out of an experiment
table leaves it what a full refresh would write (`rewrite_for_deletes`), from the runs
that stay in ``<database>.runs``.

The rule is `mlflow_fun.transform.deletes.rewrite_reason`'s (pure); here the tables are
read: by delta-rs where they are local Delta tables (milliseconds), else by Spark.

Example:
    >>> rewrite_for_deletes(spark, "mlflow_metrics", "exp_1", pull, columns, local=paths)
    "1 run(s) deleted: no run left has param 'beta': its column goes"
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from mlflow_fun.catalog import table_exists
from mlflow_fun.extract.incremental import Pull
from mlflow_fun.model import RunRecord
from mlflow_fun.transform.deletes import KeyValue, rewrite_reason
from mlflow_fun.transform.naming import METRIC, PARAM, RUNS_TABLE, TAG, ColumnKey, qualified_table
from mlflow_fun.transform.typing_rules import ColumnType

# pyspark: the optional [spark] extra, imported inside the functions that use it.
if TYPE_CHECKING:
    from pyspark.sql import SparkSession


DeletePaths = tuple[str | None, str | None]
"""The local Delta paths of an experiment table and of ``runs`` (None: ask Spark)."""


def rewrite_for_deletes(
    spark: SparkSession,
    database: str,
    name: str,
    pull: Pull,
    columns: Mapping[ColumnKey, ColumnType],
    local: DeletePaths = (None, None),
) -> str | None:
    """Why runs deleted since the last refresh need table ``name`` rewritten, or None:
    none of them is in it, or deleting their rows leaves it equal to a full refresh.

    The runs that stay are read from ``<database>.runs`` (their keys and distinct param
    values, `rewrite_reason`), the pulled ones from ``pull``. Each table that ``local``
    names (the local Delta paths of ``name`` and of ``runs``) is read by delta-rs, in
    milliseconds where Spark's query of a 100,000-run ``runs`` took seconds; the others
    by Spark.

    Args:
        columns: The table's columns once ``pull.runs`` are merged (`merged_columns`).
    """
    if not pull.newly_deleted:
        return None
    table_path, runs_path = local
    if table_path is not None:
        gone = run_ids_in(read_where(table_path, ["run_id"], run_ids=pull.newly_deleted))
    else:
        gone = table_run_ids(spark, database, name, pull.newly_deleted)
    if not gone:
        return None
    replaced = set(pull.newly_deleted) | {run.run_id for run in pull.runs}
    if runs_path is not None:
        stay = read_where(runs_path, ["metrics", "params", "tags"], pull.experiment_id, replaced)
        staying = keys_of_runs(stay)
    elif table_exists(spark, database, RUNS_TABLE):
        staying = staying_keys(spark, database, pull.experiment_id, replaced)
    else:
        return f"{len(gone)} run(s) deleted, and no {RUNS_TABLE} table to read the others from"
    reason = rewrite_reason(columns, [*staying, *_keys(pull.runs)])
    return f"{len(gone)} run(s) deleted: {reason}" if reason else None


def read_where(
    path: str,
    columns: Sequence[str],
    experiment_id: str | None = None,
    without: Iterable[str] = (),
    run_ids: Iterable[str] | None = None,
) -> pa.Table:
    """``columns`` of the Delta table at ``path`` (delta-rs): the rows of ``experiment_id``
    (all when None) but for the runs ``without``, or only those of ``run_ids``."""
    import pyarrow.dataset as ds
    from deltalake import DeltaTable

    # The columns as plain strings: delta-rs gives some files' statistics as string
    # views, which pyarrow cannot compare with a string ("no kernel matching input types").
    experiment, run_id = (
        ds.field("experiment_id").cast(pa.string()),
        ds.field("run_id").cast(pa.string()),
    )
    condition = ds.scalar(True)
    if experiment_id is not None:
        condition = condition & (experiment == experiment_id)
    if skipped := sorted(set(without)):
        condition = condition & ~run_id.isin(skipped)
    if run_ids is not None:
        condition = condition & run_id.isin(sorted(set(run_ids)))
    return DeltaTable(path).to_pyarrow_dataset().to_table(columns=list(columns), filter=condition)


def run_ids_in(table: pa.Table) -> set[str]:
    """The distinct values of ``table``'s ``run_id`` column."""
    return set(pc.unique(table.column("run_id")).to_pylist())


def keys_of_runs(runs: pa.Table) -> list[KeyValue]:
    """The metric and tag keys and the distinct param values of ``runs`` (rows of
    ``<database>.runs`` as Arrow: its ``metrics``, ``params`` and ``tags`` maps), as
    `staying_keys` reads them through Spark.

    Example:
        >>> keys_of_runs(pa.table({"metrics": ..., "params": ..., "tags": ...}))
        [('metric', 'rmse', None), ('param', 'alpha', '1'), ('tag', 'team', None)]
    """
    found: list[KeyValue] = []
    for kind, column in ((METRIC, "metrics"), (PARAM, "params"), (TAG, "tags")):
        entries = _map_entries(runs.column(column))
        if kind == PARAM:
            pairs = entries.group_by(["key", "value"]).aggregate([])
            keys, values = pairs.column("key").to_pylist(), pairs.column("value").to_pylist()
            found += [(kind, key, value) for key, value in zip(keys, values, strict=True)]
        else:
            found += [(kind, key, None) for key in pc.unique(entries.column("key")).to_pylist()]
    return found


def _map_entries(column: pa.ChunkedArray) -> pa.Table:
    """Every ``(key, value)`` entry of a map column, as a table of two columns. (A map
    array's ``keys`` ignore a slice's offset; its entries as a list of structs do not.)"""
    entry = pa.struct([("key", column.type.key_type), ("value", column.type.item_type)])
    flat = pc.list_flatten(column.cast(pa.list_(entry)))
    return pa.table({"key": pc.struct_field(flat, "key"), "value": pc.struct_field(flat, "value")})


def _keys(runs: Iterable[RunRecord]) -> list[KeyValue]:
    """The metric and tag keys and the param values of ``runs``."""
    return [
        kv
        for run in runs
        for kv in (
            *((METRIC, key, None) for key in run.metrics),
            *((PARAM, key, value) for key, value in run.params.items()),
            *((TAG, key, None) for key in run.tags),
        )
    ]


def table_run_ids(
    spark: SparkSession, database: str, table: str, run_ids: Iterable[str]
) -> set[str]:
    """The ids among ``run_ids`` that ``table`` holds."""
    from pyspark.sql import functions as F

    wanted = sorted(set(run_ids))
    if not wanted:
        return set()
    rows = (
        spark.table(qualified_table(database, table))
        .where(F.col("run_id").isin(wanted))
        .select("run_id")
        .collect()
    )
    return {row[0] for row in rows}


def staying_keys(
    spark: SparkSession, database: str, experiment_id: str, without: Iterable[str]
) -> list[KeyValue]:
    """The metric and tag keys and the distinct param values of the experiment's runs in
    ``<database>.runs``, but for the runs ``without``."""
    from pyspark.sql import functions as F

    runs = spark.table(qualified_table(database, RUNS_TABLE)).where(
        (F.col("experiment_id") == experiment_id) & ~F.col("run_id").isin(sorted(without))
    )
    no_value = F.lit(None).cast("string").alias("value")
    keys = (
        runs.select(
            F.lit(METRIC).alias("kind"), F.explode(F.map_keys("metrics")).alias("key"), no_value
        )
        .union(runs.select(F.lit(PARAM).alias("kind"), F.explode("params").alias("key", "value")))
        .union(
            runs.select(
                F.lit(TAG).alias("kind"), F.explode(F.map_keys("tags")).alias("key"), no_value
            )
        )
        .distinct()
    )
    return [(row["kind"], row["key"], row["value"]) for row in keys.collect()]
