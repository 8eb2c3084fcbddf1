"""`SideWriter`: the writes of the side tables (``runs``, ``metric_history``, the states,
``experiments``, the status rows). `mlflow_fun.load.writer.TableWriter` adds the
experiment tables.

A side table is created by delta-rs and registered (`create_by_delta_rs`), and its later
commits (the ``runs`` rows of rebuilt experiments, the MERGEs of changed runs, of the states
and of ``experiments``, the status rows) and the read of the states are delta-rs's too where
it writes what Spark would: a local Delta table of the protocol delta-rs writes
(`delta_files.writable`) and of exactly the schema written (`delta_files.has_schema`). A
rebuild of 20,000 runs in 10 experiments paid Spark 1.9 s to replace their ``runs`` rows and
1.3-2.1 s to MERGE ten states, fixed costs of a Spark job, a snapshot and a commit; delta-rs
commits the same in tens of milliseconds. Every other table, and one that must gain columns
(an ``mlflow_state`` from before ``settled``, a ``runs`` from before ``inputs``), is written
by Spark, whose MERGE evolves its schema once.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from mlflow_fun.catalog import metastore_locations, table_exists
from mlflow_fun.errors import one_line
from mlflow_fun.extract.incremental import RefreshState
from mlflow_fun.load import delta_files
from mlflow_fun.load.commits import (
    committed,
    create_by_delta_rs,
    delete_runs,
    delta_rs_path,
    insert_new,
    replace_experiments,
    state_rows,
    upsert,
    upsert_experiments,
    write_states,
)
from mlflow_fun.load.locations import AheadLocations
from mlflow_fun.load.results import ExperimentResult, status_schema
from mlflow_fun.load.side_batch import SideBatch
from mlflow_fun.load.side_tables import (
    changed_rows,
    experiments_schema,
    experiments_table,
    history_keys,
    history_schema,
    read_states,
    runs_schema,
    state_schema,
    states_of,
)
from mlflow_fun.model import Experiment
from mlflow_fun.transform.frames import arrow_frame
from mlflow_fun.transform.naming import (
    EXPERIMENTS_TABLE,
    HISTORY_TABLE,
    RUNS_TABLE,
    STATE_TABLE,
    STATUS_TABLE,
    qualified_table,
)

# pyspark: the optional [spark] extra.
if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import SparkSession
    from pyspark.sql.types import StructType

logger = logging.getLogger(__name__)


class SideWriter:
    """Writes the side tables of one database.

    Args:
        spark: The session (its catalog is the metastore written to).
        database: The database, already validated.
        table_format: ``delta`` or ``parquet`` for the experiment tables and the status
            rows (the other side tables are Delta).
    """

    def __init__(self, spark: SparkSession, database: str, table_format: str) -> None:
        self.spark = spark
        self.database = database
        self.table_format = table_format
        self._table_dirs: dict[str, str] | None = None  # every table's location, once asked
        self._side_dirs: dict[str, str | None] = {}  # a side table's, asked alone
        self._ahead: AheadLocations | None = None  # the tables to write, read in order
        self._lock = threading.Lock()  # writer threads ask

    def table_exists(self, name: str) -> bool:
        """True if ``<database>.<name>`` exists."""
        return table_exists(self.spark, self.database, name)

    def read_states(self) -> dict[str, RefreshState]:
        """experiment id -> its stored state (empty when there is no state table).

        A local Delta table of the protocol delta-rs writes is read by delta-rs (no Spark
        job: its first read in a new process is a snapshot and a job), else by Spark.
        """
        if not self.table_exists(STATE_TABLE):
            return {}
        path = self._side_path(STATE_TABLE)
        if path is None:
            return read_states(self.spark, self.database)
        return states_of(delta_files.read(path).to_pylist())

    def write_states(self, states: Sequence[RefreshState]) -> None:
        """Store the states of some experiments (one commit)."""
        if not states:
            return
        schema = state_schema()

        def rows() -> list[pa.Table]:
            return [delta_files.rows_table(state_rows(states), schema)]

        if self._created(STATE_TABLE, rows, schema):
            return
        path = self._side_path(STATE_TABLE, schema)
        if path is not None:
            committed(STATE_TABLE, lambda: delta_files.upsert(path, rows()[0], ["experiment_id"]))
            return
        write_states(self.spark, self.database, states)

    def upsert_experiments(self, experiments: Sequence[Experiment]) -> None:
        """MERGE ``experiments`` into ``<database>.experiments``; a new table is created by
        delta-rs where it may (`create_by_delta_rs`)."""
        schema = experiments_schema()
        if not experiments or self._created(
            EXPERIMENTS_TABLE, lambda: [experiments_table(experiments)], schema
        ):
            return
        path = self._side_path(EXPERIMENTS_TABLE, schema)
        if path is None:
            upsert_experiments(self.spark, self.database, experiments)
            return
        rows = delta_files.conformed([experiments_table(experiments)], schema)
        if not changed_rows(delta_files.read(path), rows, "experiment_id"):
            return
        committed(EXPERIMENTS_TABLE, lambda: delta_files.upsert(path, rows, ["experiment_id"]))

    def write_side_rows(self, batch: SideBatch) -> None:
        """Write the batch's rows of ``runs`` and ``metric_history``, then its states.

        One commit per table and kind of refresh; the states come last, so a failure
        before them makes the next run pull these experiments' changes again.
        """
        if batch.full_runs:
            self._replace_rows(RUNS_TABLE, batch.full, batch.full_runs, runs_schema())
        if batch.merged_runs:
            self._upsert_runs(batch.merged_runs)
        if batch.full_history:
            self._replace_rows(HISTORY_TABLE, batch.full, batch.full_history, history_schema())
        if batch.merged_history:
            self._insert_history(batch.merged_history)
        for table in (RUNS_TABLE, HISTORY_TABLE):  # runs deleted without a rewrite
            self._delete_runs(table, batch.deleted)
        self.write_states(batch.states)

    def _insert_history(self, tables: Sequence[pa.Table]) -> None:
        """Insert the metric points ``metric_history`` lacks (by `history_keys`, NULL-safe,
        NaN matching NaN) in one commit: delta-rs's where it may commit, else Spark's
        (`insert_new`; Spark creates the table when there is none)."""
        schema = history_schema()
        path = self._side_path(HISTORY_TABLE, schema)
        if path is not None:
            rows = delta_files.conformed(tables, schema)
            committed(HISTORY_TABLE, lambda: delta_files.insert_new(path, rows, history_keys()))
            return
        union = arrow_frame(self.spark, tables, schema)
        insert_new(self.spark, self.database, HISTORY_TABLE, union, history_keys())

    def _delete_runs(self, name: str, run_ids: Sequence[str]) -> None:
        """Delete the rows of ``run_ids`` from side table ``name`` in one commit (none when
        no row matches or there is no such table): delta-rs's where it may commit and every
        id is `plain` (a few milliseconds, where a process's first Spark DELETE took
        seconds), else Spark's (`delete_runs`)."""
        ids = sorted(set(run_ids))
        if not ids:
            return
        path = self._side_path(name)
        if path is not None and all(map(delta_files.plain, ids)):
            committed(name, lambda: delta_files.delete_where(path, "run_id", ids))
            return
        delete_runs(self.spark, self.database, name, ids)

    def flush(self, batch: SideBatch, results: list[ExperimentResult]) -> Exception | None:
        """Write the batch (`write_side_rows`) and empty it; the error if a write failed.

        If a write fails, the experiments of the batch are reported failed in ``results``:
        their states are not written, so the next run pulls their changes again.
        """
        if batch.empty:
            return None
        try:
            self.write_side_rows(batch)
            return None
        except Exception as e:
            error = one_line(e)
            logger.error("writing runs, history or state failed error=%s", error)
            written = set(batch.experiment_ids)
            results[:] = [
                dataclasses.replace(r, status="failed", error=error)
                if r.experiment_id in written
                else r
                for r in results
            ]
            return e
        finally:
            batch.clear()

    def append_status(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Append status rows (`mlflow_fun.load.results.status_row`) in one commit."""
        if not rows:
            return
        schema = status_schema()

        def table() -> list[pa.Table]:
            return [delta_files.rows_table(rows, schema)]

        if self.table_format == "delta":
            if self._created(STATUS_TABLE, table, schema):
                return
            path = self._side_path(STATUS_TABLE, schema)
            if path is not None:
                committed(STATUS_TABLE, lambda: delta_files.append(path, table()[0]))
                return
        df = self.spark.createDataFrame(list(rows), schema)
        df.write.format(self.table_format).mode("append").option("mergeSchema", "true").saveAsTable(
            qualified_table(self.database, STATUS_TABLE)
        )

    def _replace_rows(
        self, name: str, experiment_ids: Sequence[str], tables: Sequence[pa.Table], schema: Any
    ) -> None:
        """Replace the experiments' rows of side table ``name`` by ``tables`` (one commit);
        a new table is created by delta-rs where it may (`create_by_delta_rs`)."""
        if self._created(name, lambda: tables, schema):
            return
        path = self._side_path(name, schema)
        if path is not None and all(delta_files.plain(i) for i in experiment_ids):
            rows = delta_files.conformed(tables, schema)
            ids = list(experiment_ids)
            committed(name, lambda: delta_files.replace_where(path, rows, "experiment_id", ids))
            return
        frame = arrow_frame(self.spark, tables, schema)
        replace_experiments(self.spark, self.database, name, experiment_ids, frame)

    def _upsert_runs(self, tables: Sequence[pa.Table]) -> None:
        """MERGE changed runs into ``runs`` by ``run_id`` (one commit)."""
        schema = runs_schema()
        path = self._side_path(RUNS_TABLE, schema)
        if path is not None:
            rows = delta_files.conformed(tables, schema)
            committed(RUNS_TABLE, lambda: delta_files.upsert(path, rows, ["run_id"]))
            return
        union = arrow_frame(self.spark, tables, schema)  # schema evolution: runs before inputs
        upsert(self.spark, self.database, RUNS_TABLE, union, ["run_id"], schema_evolution=True)

    def _created(
        self, name: str, tables: Callable[[], Sequence[pa.Table]], schema: StructType
    ) -> bool:
        """True once the missing side table ``name`` is created by delta-rs from
        ``tables()`` (`create_by_delta_rs`); False, with nothing built or written, when it
        exists or only Spark may create it."""
        if self.table_exists(name):
            return False
        return create_by_delta_rs(self.spark, self.database, name, tables(), schema)

    def _side_path(self, name: str, schema: StructType | None = None) -> str | None:
        """The local path of side table ``name`` when delta-rs may read it and commit to
        it as Spark would without changing its ``schema`` (if given); else None
        (`delta_rs_path`)."""
        with self._lock:
            if self._table_dirs is not None and name in self._table_dirs:
                location: str | None = self._table_dirs[name]
            elif name in self._side_dirs:
                location = self._side_dirs[name]
            else:  # the metastore alone: this table's entry, not every table's
                found = metastore_locations(self.spark, self.database, name)
                location = self._side_dirs[name] = found.get(name)
        return delta_rs_path(location, schema)

    def read_locations_ahead(self, names: Sequence[str]) -> None:
        """Start reading where the existing tables ``names`` are, in the order they will be
        written (`AheadLocations`); `stop_reading_ahead` when the writes are done."""
        self.stop_reading_ahead()
        self._ahead = AheadLocations(
            lambda pattern: metastore_locations(self.spark, self.database, pattern), names
        )

    def stop_reading_ahead(self) -> None:
        """Read no further locations ahead (a later question lists the tables itself)."""
        if self._ahead is not None:
            self._ahead.close()
            self._ahead = None

    def _table_dir(self, name: str) -> str | None:
        """The location of table ``name`` (None if the metastore has no such table)."""
        ahead = self._ahead
        if ahead is not None and ahead.covers(name):
            return ahead.get(name)
        return self._locations().get(name)

    def _locations(self) -> dict[str, str]:
        """Table -> location, for the tables of the database when first asked."""
        with self._lock:
            if self._table_dirs is None:
                self._table_dirs = metastore_locations(self.spark, self.database, "*")
            return self._table_dirs

    def _table_location(self, qualified: str) -> str | None:
        rows = self.spark.sql(f"DESCRIBE FORMATTED {qualified}").collect()
        for row in rows:
            if row[0] == "Location":
                return str(row[1])
        return None
