"""The Delta commits the job's writes share: MERGE by key (`upsert`), insert the rows a
table lacks (`insert_new`), replace whole experiments' rows (`replace_experiments`), create
an empty table (`ensure_table`); and the rows of ``experiments`` and of the refresh states.

Every commit goes through `committed`, which retries it when another job's commit to the
same table conflicted: each commit here gives the same table when run again.
`mlflow_fun.load.writer` writes the experiment tables and the side tables' batches with
them.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from mlflow_fun.catalog import database_location, local_delta_path, local_path, table_exists
from mlflow_fun.errors import TableWriteError
from mlflow_fun.extract.incremental import RefreshState
from mlflow_fun.load import delta_files
from mlflow_fun.load.catalog_entries import CatalogEntries
from mlflow_fun.load.delta_files import conflict_errors
from mlflow_fun.load.side_tables import experiments_dataframe, state_schema
from mlflow_fun.model import Experiment
from mlflow_fun.transform.naming import EXPERIMENTS_TABLE, STATE_TABLE, qualified_table, sql_literal

# delta, pyspark: the optional [spark] extras, imported inside the functions that use them.
if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

logger = logging.getLogger(__name__)


def upsert_experiments(
    spark: SparkSession, database: str, experiments: Sequence[Experiment]
) -> None:
    """MERGE ``experiments`` into ``<database>.experiments``; no commit when nothing changed."""
    from pyspark.sql import functions as F

    if not experiments:
        return
    df = experiments_dataframe(spark, experiments)
    if table_exists(spark, database, EXPERIMENTS_TABLE):
        columns = [F.to_json(c).alias(c) if c == "tags" else F.col(c) for c in df.columns]
        stored = spark.table(qualified_table(database, EXPERIMENTS_TABLE)).select(*columns)
        if df.select(*columns).exceptAll(stored).isEmpty():
            return
    upsert(spark, database, EXPERIMENTS_TABLE, df, ["experiment_id"])


def state_rows(states: Sequence[RefreshState]) -> list[tuple[Any, ...]]:
    """``states`` as rows of `state_schema`, stamped now."""
    now = dt.datetime.now(dt.timezone.utc)
    return [
        (
            state.experiment_id,
            state.watermark_ms,
            sorted(state.open_run_ids),
            sorted(state.deleted_run_ids),
            state.with_history,
            dict(state.fingerprints),
            now,
            dict(state.settled),
        )
        for state in states
    ]


def write_states(spark: SparkSession, database: str, states: Sequence[RefreshState]) -> None:
    """Store the states of some experiments (one commit)."""

    if not states:
        return
    df = spark.createDataFrame(state_rows(states), state_schema())
    upsert(spark, database, STATE_TABLE, df, ["experiment_id"], schema_evolution=True)


def upsert(
    spark: SparkSession,
    database: str,
    table: str,
    df: DataFrame,
    keys: Sequence[str],
    *,
    schema_evolution: bool = False,
) -> None:
    """MERGE ``df`` into ``table`` by ``keys``: update matches, insert the rest.

    Creates the table from ``df`` when it does not exist.
    """
    from delta.tables import DeltaTable

    if not table_exists(spark, database, table):
        df.write.format("delta").saveAsTable(qualified_table(database, table))
        return
    condition = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)
    merge = (
        DeltaTable.forName(spark, qualified_table(database, table))
        .alias("t")
        .merge(df.alias("s"), condition)
        .whenMatchedUpdateAll()
        .whenNotMatchedInsertAll()
    )
    if schema_evolution:
        merge = merge.withSchemaEvolution()
    committed(table, merge.execute)


# Attempts of one Delta commit that another job's commit made conflict (`committed`).
CONFLICT_ATTEMPTS = 4


def committed(table: str, commit: Callable[[], object]) -> None:
    """Run ``commit``, one Delta commit of ``table``; retry it when another job's commit
    conflicted with it.

    Two jobs on one metastore (two hosts, each with its own lock file) meet here: Delta's
    optimistic concurrency rejects the commit that read what the other changed. The
    commits of this module are MERGEs by key and replaces of whole experiments, which give
    the same table when run again, so the loser retries (after 1, 2, 3 s).

    Raises:
        TableWriteError: Still conflicting after `CONFLICT_ATTEMPTS` attempts: one line.
    """
    import delta.exceptions as conflicts  # delta-spark: only where Delta writes

    retried = tuple(getattr(conflicts, name) for name in conflicts.__all__) + conflict_errors()
    for attempt in range(1, CONFLICT_ATTEMPTS + 1):
        try:
            commit()
            return
        except retried as e:
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            if attempt == CONFLICT_ATTEMPTS:
                raise TableWriteError(
                    f"{table}: another job's commit conflicted {CONFLICT_ATTEMPTS} times "
                    f"({reason}); run one job at a time (the lock file covers one host; "
                    "across hosts, the scheduler's one-at-a-time setting)"
                ) from e
            logger.warning(
                "%s: another job's commit conflicted (%s); retrying (%d of %d)",
                table,
                reason,
                attempt,
                CONFLICT_ATTEMPTS - 1,
            )
            time.sleep(attempt)


def insert_new(
    spark: SparkSession, database: str, table: str, df: DataFrame, keys: Sequence[str]
) -> None:
    """Insert the rows of ``df`` that ``table`` does not hold yet (by ``keys``, NULL-safe)."""
    from delta.tables import DeltaTable

    if not table_exists(spark, database, table):
        df.write.format("delta").saveAsTable(qualified_table(database, table))
        return
    condition = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in keys)
    merge = (
        DeltaTable.forName(spark, qualified_table(database, table))
        .alias("t")
        .merge(df.alias("s"), condition)
        .whenNotMatchedInsertAll()
    )
    committed(table, merge.execute)


def delete_runs(spark: SparkSession, database: str, table: str, run_ids: Iterable[str]) -> None:
    """Delete the rows of ``run_ids`` from ``table`` (one commit; none when no row matches
    or the table does not exist)."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    ids = sorted(set(run_ids))
    if not ids or not table_exists(spark, database, table):
        return
    delta_table = DeltaTable.forName(spark, qualified_table(database, table))
    committed(table, lambda: delta_table.delete(F.col("run_id").isin(ids)))


def create_by_delta_rs(
    spark: SparkSession,
    database: str,
    name: str,
    tables: Sequence[pa.Table],
    schema: StructType,
) -> bool:
    """Create the new Delta table ``<database>.<name>`` holding ``tables`` (as Spark's
    ``schema``) through delta-rs and register it, as a new experiment table is:
    milliseconds, where Spark's first write of a table runs a job (1-6 s in a new process).
    False, writing nothing, where delta-rs may not write it (not a local folder, or one
    holding something else): then Spark does.

    Raises:
        deltalake.exceptions.DeltaError: A table is there already (another job's).
    """
    location = f"{database_location(spark, database).rstrip('/')}/{name}"
    path = local_path(location)
    if path is None or not delta_files.writable(path):
        return False
    delta_files.create(path, delta_files.conformed(tables, schema))
    register(spark, database, name, location)
    return True


def register(spark: SparkSession, database: str, name: str, location: str) -> None:
    """Name the Delta table at ``location`` ``<database>.<name>`` in the metastore (where
    that name is free): one metastore call (`CatalogEntries`), else Delta's SQL statement,
    which also gives any refusal in Spark's words."""
    entries = CatalogEntries.open(spark)
    if entries is not None:
        try:
            entries.create(database, name, location)
            return
        except Exception as e:  # py4j: Spark's SQL below says what was refused
            logger.debug("catalog entry refused table=%s error=%s", name, type(e).__name__)
    qualified = qualified_table(database, name)
    spark.sql(
        f"CREATE TABLE IF NOT EXISTS {qualified} USING DELTA LOCATION {sql_literal(location)}"
    )


def delta_rs_path(location: str | None, schema: StructType | None = None) -> str | None:
    """The local path of the table at ``location`` when delta-rs may read it and commit to
    it as Spark would (`delta_files.writable`) without changing its ``schema`` (if given);
    else None (Spark reads and writes it)."""
    path = local_delta_path(location)
    if path is None or not delta_files.writable(path):
        return None
    return path if schema is None or delta_files.has_schema(path, schema) else None


def ensure_table(spark: SparkSession, database: str, table: str, schema: StructType) -> None:
    """Create ``table`` as an empty Delta table of ``schema`` unless it exists."""
    if not table_exists(spark, database, table):
        spark.createDataFrame([], schema).write.format("delta").saveAsTable(
            qualified_table(database, table)
        )


def replace_experiments(
    spark: SparkSession, database: str, table: str, experiment_ids: Sequence[str], df: DataFrame
) -> None:
    """Replace every row of these experiments in ``table`` with ``df`` (one commit)."""
    qualified = qualified_table(database, table)
    if not table_exists(spark, database, table):
        df.write.format("delta").saveAsTable(qualified)
        return
    literals = ", ".join(sql_literal(i) for i in experiment_ids)
    writer = (
        df.write.format("delta")
        .mode("overwrite")
        .option("mergeSchema", "true")  # new columns of a newer release (runs.inputs)
        .option("replaceWhere", f"experiment_id IN ({literals})")
    )
    committed(table, lambda: writer.saveAsTable(qualified))
