"""`TableBuilder`: one typed table ``<database>.exp_<id>`` per experiment, plus the side
tables (state, ``runs``, ``experiments``, ``metric_history``) and a status table.

The build in four rooms: `plan` decides per experiment between a full rewrite and a
MERGE, `pipeline` pulls a few experiments ahead of the writes, this module pulls and
flattens each one (`TableBuilder._prepare`), and `writer` writes every table.

A refresh is incremental once an experiment has a Delta table and a state: the runs that
may have changed (`mlflow_fun.extract.incremental`) are MERGEd by ``run_id``; new keys add
columns at the end. It falls back to a full refresh of that experiment when the result
could differ from one: a run was deleted (a column or a wider type may go), a param's
type changes, or ``full_refresh`` is set. The state is written after the data, so a
killed job re-pulls rather than skips.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from mlflow_fun.config import DEFAULT_MARGIN_MINUTES, DEFAULT_PARALLELISM, DEFAULT_WRITERS
from mlflow_fun.errors import ConfigError, MlflowFunError, one_line
from mlflow_fun.extract.incremental import FULL, INCREMENTAL, RefreshState
from mlflow_fun.extract.open import open_source
from mlflow_fun.extract.source import DEFAULT_PAGE_SIZE, RunSource
from mlflow_fun.extract.two_ended import TwoEndedPull, shared_pulls
from mlflow_fun.load.losses import LossWatch
from mlflow_fun.load.pipeline import OrderedWrites, ReadAhead
from mlflow_fun.load.plan import (
    ExperimentPlan,
    RefreshOptions,
    full_pulls,
    plan_experiments,
    resolve_experiments,
)
from mlflow_fun.load.prepare import Prepared, prepare_experiment, rewrite_reason_of
from mlflow_fun.load.results import BuildResult, ExperimentResult, finished, ok_ids, status_row
from mlflow_fun.load.side_batch import SideBatch
from mlflow_fun.load.writer import TableWriter
from mlflow_fun.model import Experiment, fewer_collections
from mlflow_fun.transform.naming import table_name, validate_identifier

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from pyspark.sql.types import StructType

logger = logging.getLogger(__name__)


FLUSH_ROWS = 100_000  # runs kept for one write of the runs table (bounds driver memory)


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
        table_format: ``delta`` (default) or ``parquet``.
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
        table_format: str = "delta",
        page_size: int = DEFAULT_PAGE_SIZE,
        progress: bool | None = None,
        parallelism: int = DEFAULT_PARALLELISM,
        writers: int = DEFAULT_WRITERS,
        full_refresh: bool = False,
        with_history: bool = False,
        margin_minutes: int = DEFAULT_MARGIN_MINUTES,
    ) -> None:
        if parallelism < 1:
            raise ConfigError(f"parallelism {parallelism} must be at least 1")
        if writers < 1:
            raise ConfigError(f"writers {writers} must be at least 1")
        self.parallelism = parallelism
        self.writers = writers
        self.with_history = with_history
        self.margin_ms = margin_minutes * 60_000
        self._stop_requested = False
        self._watch = LossWatch()  # a new one per build: a lost metastore or source stops it
        self._batch_lock = threading.Lock()  # writers add their rows to one batch
        self._state_lock = threading.Lock()  # one MERGE into mlflow_state at a time
        self.spark = spark
        self.database = validate_identifier(database, "database")
        self.writer = TableWriter(spark, self.database, data_dir, table_format)
        self.options = RefreshOptions(full_refresh, table_format, with_history)
        self.source = source or open_source(tracking_uri, page_size=page_size)
        self._shared = shared_pulls(self.source)  # full pulls a free stream can join
        self.progress = progress

    def build(self, experiment_ids: Sequence[str] | None = None) -> BuildResult:
        """Build the tables of ``experiment_ids`` (None: every active experiment).

        Returns:
            What happened per experiment; an experiment that failed does not stop the
            others and leaves its table as it was.

        Raises:
            ExperimentNotFoundError: An id does not exist (checked before any write).
            MetastoreUnreachableError: The metastore stopped answering (`LossWatch`): no
                table was started after, and the steps that need it were not tried.
            ServerUnreachableError, DatabaseUnavailableError: The source stopped
                answering: no table was started after.
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
        started = time.monotonic()
        self._watch = LossWatch()
        with self._watch.raising("nothing written"):
            self.writer.create_database()
            present = self.writer.table_names()  # one metastore call, not one per experiment
            plans = plan_experiments(
                experiments, self.writer.read_states(), self.options, present.__contains__
            )
            self.writer.write_states([p.rebuild_pending for p in plans if p.rebuild_pending])
        existing = [table_name(p.experiment.experiment_id) for p in plans if p.exists]
        if existing and self.writer.table_format == "delta":  # read ahead of their pulls
            self.writer.read_locations_ahead(existing)
        results: list[ExperimentResult] = []
        disable = None if self.progress is None else not self.progress
        with (
            fewer_collections(),
            self.source.indexed(len(plans), full_pulls(plans)),  # MLflow's database: one scan
            tqdm(total=len(plans), unit="exp", desc="experiments", disable=disable) as bar,
            ThreadPoolExecutor(max_workers=self.parallelism, thread_name_prefix="pull") as pool,
            ThreadPoolExecutor(max_workers=self.writers, thread_name_prefix="write") as writers,
        ):
            written = 0  # tables, counted before failed side rows may fail some

            def done(result: ExperimentResult) -> None:
                nonlocal written
                written += result.status == "ok"
                results.append(result)
                bar.update(1)

            # At most parallelism + 1 experiments pulled ahead of the newest table being
            # written: the driver holds a few experiments' runs, not all of them.
            pulls = ReadAhead(
                lambda i: self._submit_pull(pool, plans[i]),
                len(plans),
                self.parallelism + 1,
                lambda: self._submit_assists(pool),
            )
            writes = OrderedWrites(writers, done)
            batch = SideBatch()
            tables_done = False
            try:
                self._write_tables(plans, pulls, writes, results, batch)
                tables_done = True
            finally:
                pulls.cancel()
                writes.finish()
                self.writer.stop_reading_ahead()
                self._shared.clear()
                self._finish(pool, experiments, results, batch, tables_done, after_tables)
        skipped = len(experiments) - len(results)
        if skipped:
            logger.warning("stopped before %d experiment(s); their tables are unchanged", skipped)
        if self._watch.lost:
            tables = f"{written} of {len(experiments)} table(s) written"
            rest = (
                "the steps after them stopped"
                if self._watch.metastore_lost
                else "the others unchanged"
            )
            raise self._watch.error(f"{tables}, {rest}")
        return BuildResult(tuple(results), time.monotonic() - started, skipped)

    def _write_tables(
        self,
        plans: Sequence[ExperimentPlan],
        pulls: ReadAhead[Prepared],
        writes: OrderedWrites[ExperimentResult],
        results: list[ExperimentResult],
        batch: SideBatch,
    ) -> None:
        """Write the tables in order, up to ``writers`` at once; flush big batches."""
        for index, plan in enumerate(plans):
            if self._stop_requested or self._watch.lost:  # lost: each would wait it out
                break
            writes.submit(self._write_one, plan, pulls.take(index), batch)
            writes.finish(keep=self.writers - 1)
            if batch.rows >= FLUSH_ROWS and index + 1 < len(plans):
                writes.finish()
                self._flush(batch, results)
        writes.finish()

    def _finish(
        self,
        pool: ThreadPoolExecutor,
        experiments: Sequence[Experiment],
        results: list[ExperimentResult],
        batch: SideBatch,
        tables_done: bool,
        after_tables: Callable[[], object] | None,
    ) -> None:
        """After the tables: ``experiments`` (beside), ``runs`` and states, views, status.

        Without ``tables_done`` (an error is on its way up) the rows and states of the
        tables written so far and the status rows are still written; the rest is not.
        Once the metastore is lost (`LossWatch`), no step that needs it is tried.
        """
        side = views = None
        if tables_done and not self._watch.metastore_lost:
            written = [e for e in experiments if e.experiment_id in ok_ids(results)]
            side = pool.submit(self.writer.upsert_experiments, written)
        try:
            runs_written = self._flush(batch, results)
            if tables_done and after_tables is not None:
                if runs_written:
                    views = pool.submit(after_tables)
                else:  # they read `runs`: the next run creates them
                    logger.warning("analyst views not created: writing the runs rows failed")
            if not self._watch.metastore_lost:  # else each would wait through the retries
                uri = self.source.tracking_uri
                with self._watch.keeping():
                    self.writer.append_status([status_row(r, uri) for r in results])
        finally:
            if side is not None:
                with self._watch.keeping():
                    side.result()
            if views is not None:
                with self._watch.keeping():
                    views.result()

    def _flush(self, batch: SideBatch, results: list[ExperimentResult]) -> bool:
        """`SideWriter.flush`, or nothing once the metastore is lost; True if written."""
        if self._watch.metastore_lost:
            batch.clear()
            return False
        error = self.writer.flush(batch, results)
        if error is not None:
            self._watch.saw(error)  # lost: no table is started after it
        return error is None

    def stop(self) -> None:
        """Ask `build` to stop after the table it is writing (e.g. on SIGTERM)."""
        self._stop_requested = True

    def _submit_assists(self, pool: Any) -> None:
        """Queue a helper for each stream but one; a helper starts when a stream is free."""
        if not self._shared.enabled:
            return
        for _ in range(self.parallelism - 1):
            pool.submit(self._shared.assist, lambda: self._stop_requested or self._watch.lost)

    def _prepare(
        self,
        experiment: Experiment,
        existing: Callable[[], StructType | None],
        state: RefreshState | None,
        shared: TwoEndedPull | None = None,
    ) -> Prepared:
        """`prepare_experiment` with this build's settings; a full pull frees its slot in
        the shared pulls as soon as its runs are in."""
        return prepare_experiment(
            self.source,
            experiment.experiment_id,
            existing,
            state,
            margin_ms=self.margin_ms,
            with_history=self.with_history,
            active_runs=shared.run if shared else None,
            on_pulled=lambda: self._shared.finish(experiment.experiment_id),
        )

    def _submit_pull(self, pool: ThreadPoolExecutor, plan: ExperimentPlan) -> Future[Prepared]:
        """Start pulling ``plan``'s experiment: its changes, or all of it (two-ended)."""
        if plan.error is not None:
            failed: Future[Prepared] = Future()
            failed.set_exception(plan.error)
            return failed
        name = table_name(plan.experiment.experiment_id)

        def existing() -> StructType | None:  # read in the pulling thread, when needed
            return self.writer.schema(name) if plan.exists else None

        if plan.merge:
            return pool.submit(self._prepare, plan.experiment, existing, plan.state)
        shared = self._shared.register(plan.experiment.experiment_id)
        return pool.submit(self._prepare, plan.experiment, existing, None, shared)

    def _write_one(
        self, plan: ExperimentPlan, pulled: Future[Prepared], batch: SideBatch
    ) -> ExperimentResult:
        """Write the experiment's table; its rows of the other tables go into ``batch``."""
        experiment = plan.experiment
        started = time.monotonic()
        name = table_name(experiment.experiment_id)
        mode, run_count, column_count, runs_pulled = FULL, 0, 0, 0
        error = None
        try:
            prepared = pulled.result()
            started -= prepared.seconds
            runs_pulled = prepared.pull.pulled
            if prepared.pull.mode == INCREMENTAL:
                reason = rewrite_reason_of(self.writer, name, prepared)
                if reason:
                    logger.info(
                        "full refresh experiment_id=%s reason=%s", experiment.experiment_id, reason
                    )
                    schema = prepared.existing
                    prepared = self._prepare(experiment, lambda: schema, None)
                    runs_pulled += prepared.pull.pulled
                    if plan.state is not None:  # a crash from here on must not go back to merging
                        with self._state_lock:
                            self.writer.write_states([plan.state.pending()])
            pull = prepared.pull
            mode = pull.mode
            if mode == FULL:
                exists = prepared.existing is not None
                self.writer.replace_runs(name, prepared.flat, exists)
                run_count, column_count = prepared.flat.num_rows, len(prepared.flat.columns)
            elif (pull.runs or pull.newly_deleted) and prepared.existing is not None:
                flat = prepared.flat if pull.runs else None
                run_count, column_count = self.writer.merge_runs(
                    name, flat, prepared.existing, pull.newly_deleted
                )
            else:
                run_count, column_count = self.writer.shape(name)
            if pull.changed:
                state = pull.next_state(with_history=self.with_history)
                with self._batch_lock:
                    batch.add(
                        pull.experiment_id,
                        mode,
                        pull.runs,
                        prepared.history,
                        state,
                        pull.newly_deleted,
                    )
        except Exception as e:  # one experiment's failure must not stop the others
            logger.error(
                "experiment failed experiment_id=%s table=%s error=%s",
                experiment.experiment_id,
                name,
                one_line(e),
            )
            if not isinstance(e, MlflowFunError):
                logger.debug("traceback", exc_info=True)
            self._watch.saw(e)  # lost: no table is started after it
            error, run_count, column_count = one_line(e), 0, 0
        counts = (run_count, column_count, runs_pulled)
        return finished(experiment, name, mode, counts, time.monotonic() - started, error)
