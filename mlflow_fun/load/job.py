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
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from mlflow_fun.config import JobConfig, check_env_references
from mlflow_fun.errors import ConfigError, JobFailedError, JobStoppedError, java_root_line, one_line
from mlflow_fun.extract.client_models import read_logged_models_with_client
from mlflow_fun.extract.logged_models import read_logged_models
from mlflow_fun.extract.mlflow_client import MlflowClientSource
from mlflow_fun.extract.open import open_source
from mlflow_fun.extract.registry import read_model_versions
from mlflow_fun.extract.rest import RestSource
from mlflow_fun.load.builder import TableBuilder
from mlflow_fun.load.lock import JobLock, default_lock_path
from mlflow_fun.load.logged_models import write_logged_models
from mlflow_fun.load.plan import resolve_experiments
from mlflow_fun.load.registry import MODEL_VERSIONS_TABLE, write_model_versions
from mlflow_fun.load.views import create_analyst_views, resolve_directions
from mlflow_fun.session import build_spark_session
from mlflow_fun.transform.naming import LOGGED_MODELS_TABLE, MODEL_METRICS_TABLE

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

    With ``config.with_registry``, ``<database>.model_versions`` is replaced after the
    experiments' tables (even when some failed; not after a stop); a registry that cannot
    be read or written is a warning line, not an error. With ``config.with_models``, the
    loaded experiments' rows of ``<database>.logged_models`` and ``model_metrics`` are
    replaced after them, on the same terms.

    Raises:
        ConfigError, InvalidIdentifierError: Bad settings (before Spark starts).
        TrackingServerError, ExperimentNotFoundError: Server or ids wrong (before Spark).
        JobFailedError: Some experiments failed; the others were written.
        JobStoppedError: ``stop_on_sigterm`` and a SIGTERM came: the table being written
            was finished, the remaining experiments were skipped.
        MetastoreUnreachableError, ServerUnreachableError, DatabaseUnavailableError:
            The metastore or the source stopped answering mid-build (`LossWatch`): no
            table was started after; the message says how many were written.
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
    if config.with_registry and not result.skipped:
        _load_registry(spark, config, source)
    if config.with_models and not result.skipped:
        _load_logged_models(spark, config, source, [e.experiment_id for e in experiments])
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


def _load_registry(spark: SparkSession, config: JobConfig, source: RunSource) -> None:
    """``<database>.model_versions`` from the tracking server's registry.

    Only a REST source has one to read (``--source db`` and an ``MlflowClient`` store are
    skipped, in one INFO line). A failure is one warning line: the experiment tables are
    written, the table keeps its previous version, and the job's exit code stays 0.
    """
    if not isinstance(source, RestSource):
        logger.info(
            "model registry skipped: %s is read from a tracking server's REST API, not from %s",
            MODEL_VERSIONS_TABLE,
            source.tracking_uri,
        )
        return
    started = time.monotonic()
    try:
        versions = read_model_versions(source.client)
        write_model_versions(spark, config.database, versions, config.table_format)
    except Exception as e:  # the tables are written; the registry is an addition beside them
        logger.warning(
            "%s not written database=%s error=%s (the experiment tables are written; the "
            "next run of the job tries again)",
            MODEL_VERSIONS_TABLE,
            config.database,
            _root_cause(e)[:300],
        )
        return
    logger.info(
        "%s written database=%s versions=%d seconds=%.1f",
        MODEL_VERSIONS_TABLE,
        config.database,
        len(versions),
        time.monotonic() - started,
    )


def _load_logged_models(
    spark: SparkSession, config: JobConfig, source: RunSource, experiment_ids: Sequence[str]
) -> None:
    """The experiments' rows of ``<database>.logged_models`` and ``model_metrics``.

    Read from a REST source's ``logged-models/search``, with MLflow's client from any other
    tracking URI (``MlflowClient.search_logged_models``), or with ``--source db`` from
    MLflow's database (its ``logged_models`` tables). As `_load_registry`, a failure is one
    warning line and the exit code stays 0. A server or database without logged models
    (MLflow 2.x) is one INFO line and no table is touched.
    """
    tables = f"{LOGGED_MODELS_TABLE} and {MODEL_METRICS_TABLE}"
    started = time.monotonic()
    try:
        if isinstance(source, RestSource):
            models = read_logged_models(source.client, experiment_ids)
        elif isinstance(source, MlflowClientSource):
            models = read_logged_models_with_client(
                source.client, experiment_ids, retry=source.retry
            )
        else:
            # SQLAlchemy and the database drivers: only for --source db.
            from mlflow_fun.extract.database.logged_models import read_logged_models_from_db
            from mlflow_fun.extract.database.source import DatabaseSource

            assert isinstance(source, DatabaseSource)  # config.source == "db" opened it
            models = read_logged_models_from_db(source.engine, experiment_ids)
        if models is None:
            logger.info(
                "%s has no logged models (MLflow 2.x): %s not written",
                source.tracking_uri,
                tables,
            )
            return
        write_logged_models(spark, config.database, experiment_ids, models)
    except Exception as e:  # the tables are written; the models are an addition beside them
        logger.warning(
            "%s not written database=%s error=%s (the experiment tables are written; the "
            "next run of the job tries again)",
            tables,
            config.database,
            _root_cause(e)[:300],
        )
        return
    logger.info(
        "%s written database=%s experiments=%d models=%d metrics=%d seconds=%.1f",
        tables,
        config.database,
        len(experiment_ids),
        len(models),
        sum(len(m.metrics) for m in models),
        time.monotonic() - started,
    )


def _root_cause(error: BaseException) -> str:
    """`one_line` of ``error``; for an error Py4J raises, its deepest Java cause's first
    line (Py4J's own first line names only the Java call that failed; pyspark's own errors
    say it in their first line)."""
    py4j = getattr(error, "java_exception", None) is not None
    deepest = java_root_line(error) if py4j else None
    return deepest or one_line(error)
