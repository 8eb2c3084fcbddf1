"""`TableBuilder`: one typed table ``<database>.exp_<id>`` per experiment, plus the
tables of `mlflow_fun.metrics.spark.refresh` (state, ``runs``, ``experiments``,
``metric_history``) and a status table. This module and ``refresh`` write every table.

A refresh is incremental once an experiment has a Delta table and a state: the runs that
may have changed (`mlflow_fun.incremental`) are MERGEd by ``run_id``; new keys add
columns at the end. It falls back to a full refresh of that experiment when the result
could differ from one: a run was deleted (a column or a wider type may go), a param's
type changes, or ``full_refresh`` is set.

Writes are atomic. A full refresh replaces a Delta table by one ``overwrite`` commit
(with ``overwriteSchema``: new keys add columns, a param whose type changes is widened;
the columns the table had keep their place), a MERGE is one commit too: a reader sees
the old version or the new one, and a job killed mid-write leaves the old version. The
state is written after the data, so a killed job re-pulls rather than skips. A Parquet
table (always refreshed in full) is written to a fresh folder first, then the metastore
entry is pointed at it; its old folder is removed afterwards.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlflow_fun import __version__
from mlflow_fun.client.http_client import strip_credentials
from mlflow_fun.client.records import Experiment, MetricPoint, fewer_collections
from mlflow_fun.client.sources import DEFAULT_PAGE_SIZE, RunSource, open_source
from mlflow_fun.client.two_ended import TwoEndedPull
from mlflow_fun.config import DEFAULT_MARGIN_MINUTES, DEFAULT_PARALLELISM, DEFAULT_WRITERS, FORMATS
from mlflow_fun.errors import (
    ConfigError,
    ExperimentNotFoundError,
    MlflowFunError,
    one_line,
)
from mlflow_fun.flatten import FlatRuns, flatten_runs, keep_column_order
from mlflow_fun.incremental import FULL, INCREMENTAL, Pull, RefreshState, pull_all, pull_changes
from mlflow_fun.metrics.spark import refresh
from mlflow_fun.metrics.spark.convert import column_keys, to_spark
from mlflow_fun.naming import (
    PARAM,
    ColumnKey,
    qualified_table,
    quote_identifier,
    sql_literal,
    validate_identifier,
)
from mlflow_fun.runs import shared_pulls
from mlflow_fun.typing_rules import ColumnType, widened_type

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from pyspark.sql.types import StructType

logger = logging.getLogger(__name__)

STATUS_TABLE = "mlflow_status"
FLUSH_ROWS = 100_000  # runs kept for one write of the runs table (bounds driver memory)


def table_name(experiment_id: str) -> str:
    """The table of an experiment: ``exp_<experiment_id>``."""
    return validate_identifier(f"exp_{experiment_id}", "table")


def job_version() -> str:
    """The running mlflow-fun version."""
    return __version__


@dataclass(frozen=True)
class ExperimentResult:
    """What the job did for one experiment (one row of the status table)."""

    experiment_id: str
    experiment_name: str
    table_name: str
    run_count: int
    column_count: int
    refreshed_at: dt.datetime
    duration_s: float
    status: str
    error: str | None = None
    mode: str = FULL
    runs_pulled: int = 0


@dataclass(frozen=True)
class Prepared:
    """One experiment pulled and flattened, ready to be written.

    Attributes:
        pull: The runs pulled.
        flat: ``pull.runs`` flattened with the table's names and types.
        existing: The table's schema before this refresh; None if there is no table.
        history: Metric values of ``pull.runs`` (with history only).
        fallback: Why an incremental pull cannot be merged (a full refresh is needed).
        seconds: Time spent pulling and flattening.
    """

    pull: Pull
    flat: FlatRuns
    existing: StructType | None
    history: tuple[MetricPoint, ...] | None
    fallback: str | None
    seconds: float


@dataclass
class _Batch:
    """Rows for ``runs`` and ``metric_history`` and the states of written experiments,
    kept until they are written together (`TableBuilder._flush`)."""

    full: list[str] = field(default_factory=list)
    full_runs: list[Any] = field(default_factory=list)
    full_history: list[Any] = field(default_factory=list)
    merged_runs: list[Any] = field(default_factory=list)
    merged_history: list[Any] = field(default_factory=list)
    states: list[RefreshState] = field(default_factory=list)
    experiment_ids: list[str] = field(default_factory=list)
    rows: int = 0

    @property
    def empty(self) -> bool:
        """Nothing to write."""
        return not self.states

    def add(self, prepared: Prepared, with_history: bool) -> None:
        """Take the rows (as Arrow tables) and the next state of one written experiment."""
        pull = prepared.pull
        if not pull.changed:
            return
        runs = refresh.runs_table(pull.runs) if pull.runs or pull.mode == FULL else None
        history = None
        if prepared.history is not None and (prepared.history or pull.mode == FULL):
            history = refresh.history_table(pull.experiment_id, prepared.history)
        if pull.mode == FULL:
            self.full.append(pull.experiment_id)
            self.full_runs.append(runs)
            if history is not None:
                self.full_history.append(history)
        else:
            if runs is not None:
                self.merged_runs.append(runs)
            if history is not None:
                self.merged_history.append(history)
        self.states.append(pull.next_state(with_history=with_history))
        self.experiment_ids.append(pull.experiment_id)
        self.rows += len(pull.runs)


@dataclass(frozen=True)
class BuildResult:
    """The outcome of one job run."""

    results: tuple[ExperimentResult, ...]
    seconds: float
    skipped: int = 0

    @property
    def failed(self) -> dict[str, str]:
        """experiment id -> error, for each experiment that failed."""
        return {r.experiment_id: r.error or "" for r in self.results if r.status != "ok"}

    @property
    def run_count(self) -> int:
        """Runs written, over all experiments that succeeded."""
        return sum(r.run_count for r in self.results if r.status == "ok")

    @property
    def runs_pulled(self) -> int:
        """Runs pulled from the source, over all experiments that succeeded."""
        return sum(r.runs_pulled for r in self.results if r.status == "ok")

    def summary(self) -> str:
        """One line: tables, runs, seconds, failures."""
        ok = [r for r in self.results if r.status == "ok"]
        incremental = sum(1 for r in ok if r.mode == INCREMENTAL)
        line = (
            f"{len(ok)} of {len(self.results)} table(s) written "
            f"({incremental} incremental), {self.run_count} run(s), "
            f"{self.runs_pulled} pulled, {self.seconds:.1f} s"
        )
        if self.failed:
            line += f"; failed: {', '.join(sorted(self.failed))}"
        if self.skipped:
            line += f"; stopped before {self.skipped} more"
        return line


def resolve_experiments(
    source: RunSource, experiment_ids: Sequence[str] | None
) -> list[Experiment]:
    """The experiments to load: the given ids (all checked first), else every active one.

    Raises:
        ExperimentNotFoundError: Some ids do not exist; the message lists all of them.
    """
    if experiment_ids is None:
        return list(source.iter_experiments())
    experiments, missing = [], []
    for experiment_id in experiment_ids:
        try:
            experiments.append(source.get_experiment(experiment_id))
        except ExperimentNotFoundError:
            missing.append(experiment_id)
    if missing:
        raise ExperimentNotFoundError(
            f"experiment id(s) {', '.join(missing)} do not exist at {source.tracking_uri}; "
            "nothing was written"
        )
    return experiments


class TableBuilder:
    """Builds ``<database>.exp_<id>`` tables from MLflow, for notebooks and the job.

    Example:
        >>> builder = TableBuilder(spark, "mlflow_metrics", tracking_uri="http://127.0.0.1:5000")
        >>> builder.build(["1", "2"]).summary()
        '2 of 2 table(s) written, 60 run(s), 4.2 s'
        >>> spark.sql("select run_uuid, _m_rmse from mlflow_metrics.exp_1 order by _m_rmse")

    Args:
        spark: The session (its catalog is the metastore written to).
        database: The database; created if missing.
        data_dir: Where a new database keeps its tables (``<data_dir>/warehouse``);
            None for Spark's warehouse.
        tracking_uri: Tracking server or store; None means ``MLFLOW_TRACKING_URI``.
        source: A ready `RunSource` (overrides ``tracking_uri``).
        format: ``delta`` (default) or ``parquet``.
        page_size: Runs per ``runs/search`` page.
        progress: Show progress bars; None shows them only on a terminal.
        parallelism: Experiments pulled from the server at once.
        writers: Tables written at once. Each Delta write has a fixed cost of a few
            hundred milliseconds spent mostly waiting (commit, metastore); two writers
            overlap those waits, which is most of the time of a small experiment.
        full_refresh: Rebuild every table; by default a table with a state is merged.
        with_history: Also keep ``<database>.metric_history``.
        margin_minutes: How far before the watermark an incremental refresh looks.
    """

    def __init__(
        self,
        spark: SparkSession,
        database: str = "mlflow_metrics",
        data_dir: str | None = None,
        *,
        tracking_uri: str | None = None,
        source: RunSource | None = None,
        format: str = "delta",
        page_size: int = DEFAULT_PAGE_SIZE,
        progress: bool | None = None,
        parallelism: int = DEFAULT_PARALLELISM,
        writers: int = DEFAULT_WRITERS,
        full_refresh: bool = False,
        with_history: bool = False,
        margin_minutes: int = DEFAULT_MARGIN_MINUTES,
    ) -> None:
        if format not in FORMATS:
            raise ConfigError(f"format {format!r} is not one of: {', '.join(FORMATS)}")
        if parallelism < 1:
            raise ConfigError(f"parallelism {parallelism} must be at least 1")
        if writers < 1:
            raise ConfigError(f"writers {writers} must be at least 1")
        self.parallelism = parallelism
        self.writers = writers
        self.full_refresh = full_refresh
        self.with_history = with_history
        self.margin_ms = margin_minutes * 60_000
        self._stop_requested = False
        self._batch_lock = threading.Lock()  # writers add their rows to one batch
        self._state_lock = threading.Lock()  # one MERGE into mlflow_state at a time
        self.spark = spark
        self.database = validate_identifier(database, "database")
        self.data_dir = data_dir
        self.source = source or open_source(tracking_uri, page_size=page_size)
        self._shared = shared_pulls(self.source)  # full pulls a free stream can join
        self.format = format
        self.progress = progress

    def build(self, experiment_ids: Sequence[str] | None = None) -> BuildResult:
        """Build the tables of ``experiment_ids`` (None: every active experiment).

        Returns:
            What happened per experiment; an experiment that failed does not stop the
            others and leaves its table as it was.

        Raises:
            ExperimentNotFoundError: An id does not exist (checked before any write).
        """
        return self.build_experiments(resolve_experiments(self.source, experiment_ids))

    def build_experiments(
        self,
        experiments: Sequence[Experiment],
        after_tables: Callable[[], object] | None = None,
    ) -> BuildResult:
        """Build the tables of already resolved experiments; see `build`.

        Up to ``parallelism`` experiments are pulled from the server at once; once the
        last one has started, a stream that runs out of experiments joins a full pull
        still in flight from its other end (`TwoEndedPull`). Up to ``writers`` tables are
        written at once, started in the order given. After `stop` is called, no new table
        is started: the ones being written are finished, the rest are skipped.

        Once the last table is written, ``<database>.experiments`` (the experiments whose
        table was written) is upserted in a second thread while the rows of ``runs`` and
        the states are written; then ``after_tables`` runs beside the status write.

        Args:
            experiments: The experiments, in the order their tables are written.
            after_tables: Called once every table and ``runs`` are written (the job
                creates the analyst views there); an error it raises is raised after
                the status rows are written.
        """
        from concurrent.futures import Future, ThreadPoolExecutor

        from tqdm import tqdm

        started = time.monotonic()
        self._create_database()
        states = refresh.read_states(self.spark, self.database)
        disable = None if self.progress is None else not self.progress
        results: list[ExperimentResult] = []
        batch = _Batch()
        with (
            fewer_collections(),
            tqdm(total=len(experiments), unit="exp", desc="experiments", disable=disable) as exps,
            ThreadPoolExecutor(max_workers=self.parallelism, thread_name_prefix="pull") as pool,
            ThreadPoolExecutor(max_workers=self.writers, thread_name_prefix="write") as writers,
        ):
            plans = []
            to_rebuild = []
            for experiment in experiments:
                state = states.get(experiment.experiment_id)
                try:
                    existing = self._existing_schema(table_name(experiment.experiment_id))
                    merge, error = self._can_merge(existing, state), None
                except Exception as e:  # reported as this experiment's failure
                    existing, merge, error = None, False, e
                if not merge and state is not None and state.watermark_ms is not None:
                    to_rebuild.append(state.pending())
                plans.append((experiment, state, existing, merge, error))
            # A full refresh may see what an incremental one cannot; until the state that
            # follows it is written, the next run must be a full one too.
            refresh.write_states(self.spark, self.database, to_rebuild)

            def submit(index: int) -> Future[Prepared]:
                experiment, state, existing, merge, error = plans[index]
                if error is not None:
                    failed: Future[Prepared] = Future()
                    failed.set_exception(error)
                    return failed
                if merge:
                    return pool.submit(self._prepare, experiment, existing, state)
                shared = self._shared.register(experiment.experiment_id)
                return pool.submit(self._prepare, experiment, existing, None, shared)

            # At most parallelism + 1 experiments pulled ahead of the newest table being
            # written: the driver holds a few experiments' runs, not all of them.
            ahead = self.parallelism + 1
            tables_done = False
            futures = {i: submit(i) for i in range(min(ahead, len(plans)))}
            if len(plans) <= ahead:
                self._submit_assists(pool)
            writing: deque[Future[ExperimentResult]] = deque()

            def finish(keep: int) -> None:
                """Collect written tables, in order, until ``keep`` are still being written."""
                while len(writing) > keep:
                    results.append(writing.popleft().result())
                    exps.update(1)

            try:
                for index, (experiment, state, *_) in enumerate(plans):
                    if self._stop_requested:
                        break
                    future = futures.pop(index)
                    writing.append(
                        writers.submit(self._write_one, experiment, state, future, batch)
                    )
                    del future
                    if index + ahead < len(plans):
                        futures[index + ahead] = submit(index + ahead)
                        if index + ahead == len(plans) - 1:
                            self._submit_assists(pool)
                    finish(self.writers - 1)
                    if batch.rows >= FLUSH_ROWS and index + 1 < len(plans):
                        finish(0)
                        self._flush(batch, results)
                        batch = _Batch()
                finish(0)
                tables_done = True
            finally:
                for future in futures.values():
                    future.cancel()
                finish(0)
                self._shared.clear()
                side = views = None
                if tables_done:
                    written = [e for e in experiments if e.experiment_id in _ok(results)]
                    side = pool.submit(
                        refresh.upsert_experiments, self.spark, self.database, written
                    )
                try:
                    self._flush(batch, results)
                    if tables_done and after_tables is not None:
                        views = pool.submit(after_tables)
                    self._append_status(results)
                finally:
                    if side is not None:
                        side.result()
                    if views is not None:
                        views.result()
        skipped = len(experiments) - len(results)
        if skipped:
            logger.warning("stopped before %d experiment(s); their tables are unchanged", skipped)
        return BuildResult(tuple(results), time.monotonic() - started, skipped)

    def stop(self) -> None:
        """Ask `build` to stop after the table it is writing (e.g. on SIGTERM)."""
        self._stop_requested = True

    def _submit_assists(self, pool: Any) -> None:
        """Queue a helper for each stream but one; a helper starts when a stream is free."""
        if not self._shared.enabled:
            return
        for _ in range(self.parallelism - 1):
            pool.submit(self._shared.assist, lambda: self._stop_requested)

    def _can_merge(self, existing: StructType | None, state: RefreshState | None) -> bool:
        """True when this experiment can be refreshed incrementally."""
        if self.full_refresh or self.format != "delta" or existing is None or state is None:
            return False
        if state.watermark_ms is None or (self.with_history and not state.with_history):
            return False
        tables = [refresh.RUNS_TABLE] + ([refresh.HISTORY_TABLE] if self.with_history else [])
        return all(self._table_exists(t) for t in tables)

    def _prepare(
        self,
        experiment: Experiment,
        existing: StructType | None,
        state: RefreshState | None,
        shared: TwoEndedPull | None = None,
    ) -> Prepared:
        """Pull (incrementally when ``state`` is given) and flatten one experiment.

        Args:
            shared: Pulls the active runs of a full refresh (`SharedPulls.register`).
        """
        started = time.monotonic()
        experiment_id = experiment.experiment_id
        previous = _names(existing)
        fallback = None
        if state is None:
            try:
                active_runs = shared.run if shared else None
                pull = pull_all(self.source, experiment_id, self.margin_ms, active_runs)
            finally:
                self._shared.finish(experiment_id)
            flat = flatten_runs(pull.runs, previous)
            if existing is not None:
                flat = keep_column_order(flat, existing.fieldNames())
        else:
            pull = pull_changes(self.source, experiment_id, state, self.margin_ms)
            param_types, fallback = _merged_param_types(pull, existing, previous)
            flat = flatten_runs(pull.runs, previous, reserve_previous=True, param_types=param_types)
        history = None
        if self.with_history and fallback is None:
            history = tuple(self.source.iter_metric_history(pull.runs))
        logger.info(
            "pulled experiment_id=%s mode=%s runs=%d seconds=%.2f",
            experiment_id,
            pull.mode,
            len(pull.runs),
            time.monotonic() - started,
        )
        return Prepared(pull, flat, existing, history, fallback, time.monotonic() - started)

    def _write_one(
        self, experiment: Experiment, state: RefreshState | None, pulled: Any, batch: _Batch
    ) -> ExperimentResult:
        """Write the experiment's table; its rows of the other tables go into ``batch``."""
        started = time.monotonic()
        name = table_name(experiment.experiment_id)
        mode, run_count, column_count, runs_pulled = FULL, 0, 0, 0
        try:
            prepared: Prepared = pulled.result()
            started -= prepared.seconds
            runs_pulled = prepared.pull.pulled
            if prepared.pull.mode == INCREMENTAL:
                reason = prepared.fallback or self._deleted_from_table(name, prepared.pull)
                if reason:
                    logger.info(
                        "full refresh experiment_id=%s reason=%s", experiment.experiment_id, reason
                    )
                    prepared = self._prepare(experiment, prepared.existing, None)
                    runs_pulled += prepared.pull.pulled
                    if state is not None:  # a crash from here on must not go back to merging
                        with self._state_lock:
                            refresh.write_states(self.spark, self.database, [state.pending()])
            mode = prepared.pull.mode
            if mode == FULL:
                self._write(name, to_spark(self.spark, prepared.flat))
                run_count, column_count = prepared.flat.num_rows, len(prepared.flat.columns)
            else:
                run_count, column_count = self._merge(name, prepared)
            with self._batch_lock:
                batch.add(prepared, self.with_history)
        except Exception as e:  # one experiment's failure must not stop the others
            logger.error(
                "experiment failed experiment_id=%s table=%s error=%s",
                experiment.experiment_id,
                name,
                one_line(e),
            )
            if not isinstance(e, MlflowFunError):
                logger.debug("traceback", exc_info=True)
            return ExperimentResult(
                experiment.experiment_id,
                experiment.name,
                name,
                0,
                0,
                _now(),
                time.monotonic() - started,
                "failed",
                one_line(e),
                mode,
                runs_pulled,
            )
        seconds = time.monotonic() - started
        logger.info(
            "table written experiment_id=%s table=%s mode=%s runs=%d pulled=%d columns=%d "
            "seconds=%.2f",
            experiment.experiment_id,
            name,
            mode,
            run_count,
            runs_pulled,
            column_count,
            seconds,
        )
        return ExperimentResult(
            experiment.experiment_id,
            experiment.name,
            name,
            run_count,
            column_count,
            _now(),
            seconds,
            "ok",
            None,
            mode,
            runs_pulled,
        )

    def _deleted_from_table(self, name: str, pull: Pull) -> str | None:
        """Why a full refresh is needed because runs of the table were deleted, or None."""
        if not pull.newly_deleted:
            return None
        gone = refresh.table_run_ids(self.spark, self.database, name, pull.newly_deleted)
        return f"{len(gone)} run(s) deleted" if gone else None

    def _merge(self, name: str, prepared: Prepared) -> tuple[int, int]:
        """MERGE the changed runs into the experiment's table.

        Returns:
            Rows and columns of the table afterwards.
        """
        if prepared.pull.runs:
            df = _aligned(to_spark(self.spark, prepared.flat), prepared.existing)
            refresh.upsert(self.spark, self.database, name, df, ["run_id"], schema_evolution=True)
        table = self.spark.table(qualified_table(self.database, name))
        return table.count(), len(table.columns)

    def _flush(self, batch: _Batch, results: list[ExperimentResult]) -> None:
        """Write the batch's rows of ``runs`` and ``metric_history``, then its states.

        One commit per table and kind of refresh. If a write fails, the experiments of the
        batch are reported failed: their states are not written, so the next run pulls
        their changes again.
        """
        if batch.empty:
            return
        try:
            db, spark = self.database, self.spark
            if batch.full_runs:
                ids = batch.full
                union = refresh.arrow_frame(spark, batch.full_runs, refresh.runs_schema())
                refresh.replace_experiments(spark, db, refresh.RUNS_TABLE, ids, union)
            if batch.merged_runs:
                union = refresh.arrow_frame(spark, batch.merged_runs, refresh.runs_schema())
                refresh.upsert(spark, db, refresh.RUNS_TABLE, union, ["run_id"])
            if batch.full_history:
                ids = batch.full
                union = refresh.arrow_frame(spark, batch.full_history, refresh.history_schema())
                refresh.replace_experiments(spark, db, refresh.HISTORY_TABLE, ids, union)
            if batch.merged_history:
                union = refresh.arrow_frame(spark, batch.merged_history, refresh.history_schema())
                refresh.insert_new(spark, db, refresh.HISTORY_TABLE, union, refresh.history_keys())
            refresh.write_states(spark, db, batch.states)
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

    def _create_database(self) -> None:
        database = quote_identifier(self.database)
        if self.data_dir is None:
            self.spark.sql(f"CREATE DATABASE IF NOT EXISTS {database}")
            return
        import os

        location = os.path.join(os.path.abspath(self.data_dir), "warehouse", f"{self.database}.db")
        self.spark.sql(f"CREATE DATABASE IF NOT EXISTS {database} LOCATION {sql_literal(location)}")

    def _table_exists(self, name: str) -> bool:
        return bool(self.spark.catalog.tableExists(f"{self.database}.{name}"))

    def _existing_schema(self, name: str) -> StructType | None:
        if not self._table_exists(name):
            return None
        schema: StructType = self.spark.table(qualified_table(self.database, name)).schema
        return schema

    def _write(self, name: str, df: Any) -> None:
        qualified = qualified_table(self.database, name)
        if self.format == "delta":
            (
                df.write.format("delta")
                .mode("overwrite")
                .option("overwriteSchema", "true")
                .saveAsTable(qualified)
            )
            return
        self._write_parquet(name, qualified, df)

    def _write_parquet(self, name: str, qualified: str, df: Any) -> None:
        import shutil
        from urllib.parse import urlparse

        base = self._database_location()
        path = f"{base.rstrip('/')}/{name}/v_{int(time.time() * 1000)}_{uuid.uuid4().hex[:8]}"
        df.write.parquet(path)
        old_location = None
        if self._table_exists(name):
            old_location = self._table_location(qualified)
            self.spark.sql(f"DROP TABLE {qualified}")
        self.spark.catalog.createTable(
            f"{self.database}.{name}", path=path, source="parquet", schema=df.schema
        )
        if old_location and old_location != path:
            parsed = urlparse(old_location)
            if parsed.scheme in ("", "file"):
                shutil.rmtree(parsed.path, ignore_errors=True)

    def _database_location(self) -> str:
        rows = self.spark.sql(f"DESCRIBE DATABASE {quote_identifier(self.database)}").collect()
        info = {row[0]: row[1] for row in rows}
        return str(info.get("Location") or info.get("Database Location"))

    def _table_location(self, qualified: str) -> str | None:
        rows = self.spark.sql(f"DESCRIBE FORMATTED {qualified}").collect()
        for row in rows:
            if row[0] == "Location":
                return str(row[1])
        return None

    def _append_status(self, results: Sequence[ExperimentResult]) -> None:
        """One status row per experiment, in one commit."""
        if not results:
            return
        rows = [self._status_row(result) for result in results]
        df = self.spark.createDataFrame(rows, status_schema())
        df.write.format(self.format).mode("append").option("mergeSchema", "true").saveAsTable(
            qualified_table(self.database, STATUS_TABLE)
        )

    def _status_row(self, result: ExperimentResult) -> tuple[Any, ...]:
        return (
            result.experiment_id,
            result.experiment_name,
            result.table_name,
            result.run_count,
            result.column_count,
            result.refreshed_at,
            result.duration_s,
            strip_credentials(self.source.tracking_uri),
            job_version(),
            result.status,
            result.error,
            result.mode,
            result.runs_pulled,
        )


def status_schema() -> StructType:
    """Schema of ``<database>.mlflow_status``: one row per experiment per job run."""
    from pyspark.sql import types as T

    return T.StructType(
        [
            T.StructField("experiment_id", T.StringType()),
            T.StructField("experiment_name", T.StringType()),
            T.StructField("table_name", T.StringType()),
            T.StructField("run_count", T.LongType()),
            T.StructField("column_count", T.IntegerType()),
            T.StructField("refreshed_at", T.TimestampType()),
            T.StructField("duration_s", T.DoubleType()),
            T.StructField("tracking_uri", T.StringType()),
            T.StructField("job_version", T.StringType()),
            T.StructField("status", T.StringType()),
            T.StructField("error", T.StringType()),
            T.StructField("refresh_mode", T.StringType()),
            T.StructField("runs_pulled", T.LongType()),
        ]
    )


def _ok(results: Sequence[ExperimentResult]) -> set[str]:
    return {r.experiment_id for r in results if r.status == "ok"}


def _names(existing: StructType | None) -> dict[ColumnKey, str]:
    """(kind, key) -> column name of an existing table."""
    if existing is None:
        return {}
    return {key: column for column, key in column_keys(existing).items()}


def _merged_param_types(
    pull: Pull, existing: StructType | None, names: dict[ColumnKey, str]
) -> tuple[dict[str, ColumnType], str | None]:
    """Types of the params of ``pull.runs`` once merged into ``existing``.

    Returns:
        key -> type for the params the table has, and why the runs cannot be merged
        (a type that only a full refresh can decide), or None.
    """
    if existing is None:
        return {}, "no table"
    types = {field.name: _SPARK_TO_COLUMN.get(field.dataType.simpleString()) for field in existing}
    keys = {key for run in pull.runs for key in run.params}
    merged: dict[str, ColumnType] = {}
    for key in sorted(keys):
        column = names.get((PARAM, key))
        if column is None:
            continue
        current = types.get(column)
        widened = widened_type(current, [r.params.get(key) for r in pull.runs]) if current else None
        if widened is None:
            return {}, f"param {key!r} changes type"
        merged[key] = widened
    return merged, None


_SPARK_TO_COLUMN: dict[str, ColumnType] = {
    "string": "string",
    "int": "int",
    "bigint": "bigint",
    "double": "double",
    "boolean": "boolean",
}


def _aligned(df: Any, existing: StructType | None) -> Any:
    """``df`` with the columns of ``existing`` first (NULL where ``df`` lacks one), in the
    table's order, then its new columns: a MERGE then sets what a run no longer has."""
    from pyspark.sql import functions as F

    if existing is None:
        return df
    present = set(df.columns)
    columns = [
        F.col(field.name)
        if field.name in present
        else F.lit(None).cast(field.dataType).alias(field.name, metadata=field.metadata)
        for field in existing.fields
    ]
    known = {field.name for field in existing.fields}
    return df.select(*columns, *(F.col(name) for name in df.columns if name not in known))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
