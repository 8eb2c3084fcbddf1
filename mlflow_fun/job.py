"""The table-building job: arguments, preflight checks, Spark, `TableBuilder`.

Shared by ``spark-submit jobs/build_tables.py`` and ``mlflow-fun build``. Everything that
can be wrong with the input (config file, database name, data_dir, tracking server,
experiment ids) is checked before Spark starts, so bad input touches no table.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import tempfile
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from mlflow_fun.config import FORMATS, SOURCES, JobConfig, load_config, parse_experiment_ids
from mlflow_fun.errors import ConfigError, JobFailedError, JobStoppedError, one_line
from mlflow_fun.lock import JobLock, default_lock_path

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from mlflow_fun.client.records import Experiment
    from mlflow_fun.client.sources import RunSource
    from mlflow_fun.metrics.spark.table_builder import BuildResult

logger = logging.getLogger(__name__)


def add_build_arguments(parser: argparse.ArgumentParser) -> None:
    """The job's flags; each has an underscore and a dashed spelling."""
    parser.add_argument(
        "--database", default=None, help="metastore database (default: mlflow_metrics)"
    )
    parser.add_argument(
        "--data_dir",
        "--data-dir",
        dest="data_dir",
        default=None,
        help="home of the embedded default: tables and a Derby metastore under it",
    )
    parser.add_argument(
        "--experiment_ids",
        "--experiment-ids",
        dest="experiment_ids",
        default=None,
        help="comma-separated experiment ids, e.g. 1,2,9 (default: every active experiment)",
    )
    parser.add_argument(
        "--tracking_uri",
        "--tracking-uri",
        dest="tracking_uri",
        default=None,
        help="tracking server URL or store URI (default: MLFLOW_TRACKING_URI)",
    )
    parser.add_argument(
        "--format", default=None, choices=FORMATS, help="table format (default: delta)"
    )
    parser.add_argument(
        "--page_size",
        "--page-size",
        dest="page_size",
        type=int,
        default=None,
        help="runs per runs/search page (default: 5000)",
    )
    parser.add_argument(
        "--parallelism",
        type=int,
        default=None,
        help="experiments pulled from the server at once (default: 2)",
    )
    parser.add_argument(
        "--source",
        default=None,
        choices=SOURCES,
        help="where runs are read: the tracking server (default) or MLflow's database",
    )
    parser.add_argument(
        "--connection",
        default=None,
        help="SQLAlchemy URL of MLflow's database, for --source db (password from the environment)",
    )
    parser.add_argument(
        "--full_refresh",
        "--full-refresh",
        dest="full_refresh",
        action="store_true",
        default=None,
        help="rebuild every table instead of merging the runs that changed",
    )
    parser.add_argument(
        "--with_history",
        "--with-history",
        dest="with_history",
        action="store_true",
        default=None,
        help="also load <database>.metric_history (every logged value of every metric)",
    )
    parser.add_argument(
        "--incremental_margin_minutes",
        "--incremental-margin-minutes",
        dest="incremental_margin_minutes",
        type=int,
        default=None,
        help="how far before the last watermark an incremental refresh looks (default: 60)",
    )
    parser.add_argument(
        "--lock_file",
        "--lock-file",
        dest="lock_file",
        default=None,
        help="file lock keeping two runs of the job apart (default: <data_dir>/.mlflow-fun.lock)",
    )
    parser.add_argument(
        "--conf", default=None, help="YAML settings file (conf/*.yaml); flags override it"
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bars (default: only on a terminal)",
    )


def config_from_args(args: argparse.Namespace) -> JobConfig:
    """The file from ``--conf`` (if any) with the flags applied over it."""
    base = load_config(args.conf) if args.conf else JobConfig()
    ids = parse_experiment_ids(args.experiment_ids) if args.experiment_ids else None
    return base.with_overrides(
        database=args.database,
        data_dir=args.data_dir,
        experiment_ids=ids,
        tracking_uri=args.tracking_uri,
        format=args.format,
        page_size=args.page_size,
        parallelism=args.parallelism,
        source=args.source,
        connection=args.connection,
        full_refresh=args.full_refresh,
        with_history=args.with_history,
        incremental_margin_minutes=args.incremental_margin_minutes,
        lock_file=args.lock_file,
    )


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
        from mlflow_fun.client.db_source import DatabaseSource

        return DatabaseSource(config.connection or "", page_size=config.page_size)
    from mlflow_fun.client.sources import open_source

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
    from mlflow_fun.metrics.spark.table_builder import resolve_experiments
    from mlflow_fun.metrics.spark.views import resolve_directions
    from mlflow_fun.serve import check_env_references

    if config.data_dir is not None:
        check_data_dir(config.data_dir)
    check_env_references(config.spark_conf)
    directions = resolve_directions()
    source = open_job_source(config)
    experiments = resolve_experiments(source, config.experiment_ids)
    logger.info(
        "job starting experiments=%d database=%s format=%s tracking_uri=%s",
        len(experiments),
        config.database,
        config.format,
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
    from mlflow_fun.metrics.spark.table_builder import TableBuilder

    if spark is None:
        from mlflow_fun.spark_session import build_spark_session

        spark = build_spark_session(
            data_dir=config.data_dir, app_name="mlflow-fun-build", conf=config.spark_conf
        )
    builder = TableBuilder(
        spark,
        config.database,
        config.data_dir,
        source=source,
        format=config.format,
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
    from mlflow_fun.metrics.spark.views import create_analyst_views

    try:
        create_analyst_views(spark, database, directions)
    except Exception as e:  # the tables are written; the views are a convenience over them
        logger.warning(
            "analyst views not created database=%s error=%s (the tables are written; the "
            "next run of the job tries again)",
            database,
            one_line(e)[:300],
        )
