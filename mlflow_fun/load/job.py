"""The table-building job: preflight checks, Spark, `TableBuilder`.

Shared by ``spark-submit jobs/build_tables.py`` and ``mlflow-fun build``. Everything that
can be wrong with the input (config file, database name, data_dir, tracking server,
experiment ids) is checked before Spark starts, so bad input touches no table.
"""

from __future__ import annotations

import logging
import os
import signal
import tempfile
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from mlflow_fun.config import JobConfig, check_env_references
from mlflow_fun.errors import ConfigError, JobFailedError, JobStoppedError, one_line
from mlflow_fun.extract.open import open_source
from mlflow_fun.load.builder import TableBuilder
from mlflow_fun.load.lock import JobLock, default_lock_path
from mlflow_fun.load.plan import resolve_experiments
from mlflow_fun.load.views import create_analyst_views, resolve_directions
from mlflow_fun.session import build_spark_session

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from mlflow_fun.extract.source import RunSource
    from mlflow_fun.load.results import BuildResult
    from mlflow_fun.model import Experiment

logger = logging.getLogger(__name__)


def check_data_dir(data_dir: str) -> None:
    """Create ``data_dir`` if needed and prove it is writable.

    Raises:
        ConfigError: It cannot be created or written; the message says why.
    """
    try:
        os.makedirs(data_dir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=data_dir, prefix=".write-check-"):
            pass
    except OSError as e:
        raise ConfigError(
            f"data_dir {data_dir!r} is not writable ({e.strerror or e}); choose another --data_dir"
        ) from e


def open_job_source(config: JobConfig) -> RunSource:
    """The source of the job's runs: the tracking server, or MLflow's database."""
    if config.source == "db":
        # SQLAlchemy and the database drivers: only for --source db.
        from mlflow_fun.extract.database.source import DatabaseSource

        return DatabaseSource(config.connection or "", page_size=config.page_size)
    return open_source(config.tracking_uri, page_size=config.page_size)


def run_job(
    config: JobConfig,
    spark: SparkSession | None = None,
    progress: bool | None = None,
    stop_on_sigterm: bool = False,
) -> BuildResult:
    """Check the input, start Spark (unless given one) and build the tables.

    Raises:
        ConfigError, InvalidIdentifierError: Bad settings (before Spark starts).
        TrackingServerError, ExperimentNotFoundError: Server or ids wrong (before Spark).
        JobFailedError: Some experiments failed; the others were written.
        JobStoppedError: ``stop_on_sigterm`` and a SIGTERM came: the table being written
            was finished, the remaining experiments were skipped.
    """
    if config.data_dir is not None:
        check_data_dir(config.data_dir)
    check_env_references(config.spark_conf)
    directions = resolve_directions()
    source = open_job_source(config)
    experiments = resolve_experiments(source, config.experiment_ids)
    logger.info(
        "job starting experiments=%d database=%s table_format=%s tracking_uri=%s",
        len(experiments),
        config.database,
        config.table_format,
        source.tracking_uri,
    )
    lock_path = config.lock_file or default_lock_path(config.data_dir, config.database)
    with JobLock(lock_path):
        return _build(config, source, experiments, spark, progress, stop_on_sigterm, directions)


def _build(
    config: JobConfig,
    source: RunSource,
    experiments: Sequence[Experiment],
    spark: SparkSession | None,
    progress: bool | None,
    stop_on_sigterm: bool,
    directions: Mapping[str, str],
) -> BuildResult:
    if spark is None:
        spark = build_spark_session(
            data_dir=config.data_dir, app_name="mlflow-fun-build", conf=config.spark_conf
        )
    builder = TableBuilder(
        spark,
        config.database,
        config.data_dir,
        source=source,
        table_format=config.table_format,
        progress=progress,
        parallelism=config.parallelism,
        full_refresh=config.full_refresh,
        with_history=config.with_history,
        margin_minutes=config.incremental_margin_minutes,
    )
    if stop_on_sigterm:

        def on_sigterm(signum: int, frame: object) -> None:
            logger.warning("SIGTERM: stopping after the table being written")
            builder.stop()

        previous_handler = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        result = builder.build_experiments(
            experiments, lambda: _create_views(spark, config.database, directions)
        )
    finally:
        if stop_on_sigterm:
            signal.signal(signal.SIGTERM, previous_handler)
    if result.failed:
        raise JobFailedError(result.failed)
    if result.skipped:
        raise JobStoppedError(f"stopped by SIGTERM: {result.summary()}", result)
    return result


def _create_views(spark: SparkSession, database: str, directions: Mapping[str, str]) -> None:
    """The analyst views; a failure is one warning line, never a failed build of the tables."""
    try:
        create_analyst_views(spark, database, directions)
    except Exception as e:  # the tables are written; the views are a convenience over them
        logger.warning(
            "analyst views not created database=%s error=%s (the tables are written; the "
            "next run of the job tries again)",
            database,
            one_line(e)[:300],
        )
