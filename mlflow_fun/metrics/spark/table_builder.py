"""`TableBuilder`: one typed table ``<database>.exp_<id>`` per experiment, plus a status
table. This is the only module that writes tables.

Writes are atomic. A Delta table is replaced by one ``overwrite`` commit (with
``overwriteSchema``, so new keys add columns and a param whose type changes is widened):
a reader sees the old version or the new one, and a job killed mid-write leaves the old
version. A Parquet table is written to a fresh folder first, then the metastore entry is
pointed at it; its old folder is removed afterwards.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import logging
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlflow_fun.client.http_client import strip_credentials
from mlflow_fun.client.records import Experiment, RunRecord
from mlflow_fun.client.sources import DEFAULT_PAGE_SIZE, RunSource, open_source
from mlflow_fun.config import DEFAULT_PARALLELISM, FORMATS
from mlflow_fun.errors import ConfigError, ExperimentNotFoundError, MlflowFunError
from mlflow_fun.flatten import FlatRuns, flatten_runs
from mlflow_fun.metrics.spark.convert import column_keys, to_spark
from mlflow_fun.naming import ColumnKey, qualified_table, quote_identifier, validate_identifier

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from pyspark.sql.types import StructType

logger = logging.getLogger(__name__)

STATUS_TABLE = "mlflow_status"


def table_name(experiment_id: str) -> str:
    """The table of an experiment: ``exp_<experiment_id>``."""
    return validate_identifier(f"exp_{experiment_id}", "table")


def job_version() -> str:
    """The installed mlflow-fun version."""
    try:
        return importlib.metadata.version("mlflow-fun")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


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

    def summary(self) -> str:
        """One line: tables, runs, seconds, failures."""
        ok = sum(1 for r in self.results if r.status == "ok")
        line = (
            f"{ok} of {len(self.results)} table(s) written, {self.run_count} run(s), "
            f"{self.seconds:.1f} s"
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
    ) -> None:
        if format not in FORMATS:
            raise ConfigError(f"format {format!r} is not one of: {', '.join(FORMATS)}")
        if parallelism < 1:
            raise ConfigError(f"parallelism {parallelism} must be at least 1")
        self.parallelism = parallelism
        self._stop_requested = False
        self.spark = spark
        self.database = validate_identifier(database, "database")
        self.data_dir = data_dir
        self.source = source or open_source(tracking_uri, page_size=page_size)
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

    def build_experiments(self, experiments: Sequence[Experiment]) -> BuildResult:
        """Build the tables of already resolved experiments; see `build`.

        Up to ``parallelism`` experiments are pulled from the server at once; tables are
        written one after another, in the order given. After `stop` is called, no new
        table is started: the one being written is finished, the rest are skipped.
        """
        from concurrent.futures import Future, ThreadPoolExecutor

        from tqdm import tqdm

        started = time.monotonic()
        self._create_database()
        disable = None if self.progress is None else not self.progress
        results = []
        with (
            tqdm(total=len(experiments), unit="exp", desc="experiments", disable=disable) as exps,
            tqdm(unit="run", desc="runs", disable=disable) as runs_bar,
            ThreadPoolExecutor(max_workers=self.parallelism, thread_name_prefix="pull") as pool,
        ):
            pending: list[tuple[Experiment, Future[tuple[FlatRuns, float]]]] = []
            for experiment in experiments:
                try:
                    previous = self._previous_names(table_name(experiment.experiment_id))
                    future = pool.submit(self._pull, experiment, previous, runs_bar)
                except Exception as e:  # reported as this experiment's failure
                    future = Future()
                    future.set_exception(e)
                pending.append((experiment, future))
            for experiment, future in pending:
                if self._stop_requested:
                    future.cancel()
                    continue
                result = self._write_one(experiment, future)
                results.append(result)
                self._append_status(result)
                exps.update(1)
        skipped = len(experiments) - len(results)
        if skipped:
            logger.warning("stopped before %d experiment(s); their tables are unchanged", skipped)
        return BuildResult(tuple(results), time.monotonic() - started, skipped)

    def stop(self) -> None:
        """Ask `build` to stop after the table it is writing (e.g. on SIGTERM)."""
        self._stop_requested = True

    def _pull(
        self, experiment: Experiment, previous: dict[ColumnKey, str], runs_bar: Any
    ) -> tuple[FlatRuns, float]:
        started = time.monotonic()
        runs = _counting(self.source.iter_runs(experiment.experiment_id), runs_bar)
        flat = flatten_runs(runs, previous)
        return flat, time.monotonic() - started

    def _write_one(self, experiment: Experiment, pulled: Any) -> ExperimentResult:
        started = time.monotonic()
        name = table_name(experiment.experiment_id)
        run_count = column_count = 0
        try:
            flat, pull_seconds = pulled.result()
            started -= pull_seconds
            run_count, column_count = flat.num_rows, len(flat.columns)
            self._write(name, to_spark(self.spark, flat))
        except Exception as e:  # one experiment's failure must not stop the others
            logger.error(
                "experiment failed experiment_id=%s table=%s error=%s",
                experiment.experiment_id,
                name,
                _one_line(e),
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
                _one_line(e),
            )
        seconds = time.monotonic() - started
        logger.info(
            "table written experiment_id=%s table=%s runs=%d columns=%d seconds=%.2f",
            experiment.experiment_id,
            name,
            run_count,
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
        )

    def _create_database(self) -> None:
        database = quote_identifier(self.database)
        if self.data_dir is None:
            self.spark.sql(f"CREATE DATABASE IF NOT EXISTS {database}")
            return
        import os

        location = os.path.join(os.path.abspath(self.data_dir), "warehouse", f"{self.database}.db")
        self.spark.sql(f"CREATE DATABASE IF NOT EXISTS {database} LOCATION {_sql_string(location)}")

    def _table_exists(self, name: str) -> bool:
        return bool(self.spark.catalog.tableExists(f"{self.database}.{name}"))

    def _previous_names(self, name: str) -> dict[ColumnKey, str]:
        if not self._table_exists(name):
            return {}
        schema: StructType = self.spark.table(qualified_table(self.database, name)).schema
        return {key: column for column, key in column_keys(schema).items()}

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

    def _append_status(self, result: ExperimentResult) -> None:
        row = (
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
        )
        df = self.spark.createDataFrame([row], status_schema())
        df.write.format(self.format).mode("append").saveAsTable(
            qualified_table(self.database, STATUS_TABLE)
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
        ]
    )


def _counting(runs: Iterator[RunRecord], bar: Any) -> Iterator[RunRecord]:
    for run in runs:
        bar.update(1)
        yield run


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _one_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    first = text.splitlines()[0]
    return f"{type(error).__name__}: {first}" if not isinstance(error, MlflowFunError) else first


def _sql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
