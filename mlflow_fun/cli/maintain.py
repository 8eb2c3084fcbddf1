"""``mlflow-fun maintain``: compact and vacuum the job's tables, trim old status rows."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import click

from mlflow_fun.cli.options import (
    Command,
    conf_option,
    dashed_option,
    data_dir_option,
    database_option,
)
from mlflow_fun.config import resolve_config
from mlflow_fun.load.lock import JobLock, default_lock_path
from mlflow_fun.load.maintain import DEFAULT_RETAIN_HOURS, DEFAULT_STATUS_DAYS, MaintenanceOptions


@click.command(
    "maintain",
    cls=Command,
    short_help="Compact and vacuum the job's tables; trim old status rows.",
    help="Keep a scheduled job's tables small: OPTIMIZE (compact small files) and VACUUM "
    "(delete files no recent version reads) every Delta table of --database, and delete "
    "mlflow_status rows older than --status-days (each experiment's latest stays). Takes the "
    "job's lock, so it never runs beside a refresh. Run it daily, e.g. after a refresh.",
)
@data_dir_option()
@database_option()
@conf_option("The job's YAML settings file (data_dir, database, metastore); flags override it.")
@dashed_option(
    "retain_hours",
    type=float,
    default=DEFAULT_RETAIN_HOURS,
    show_default=True,
    help="VACUUM keeps every file a version this young reads (at least 1: a reader or "
    "refresh in flight keeps its files).",
)
@dashed_option(
    "status_days",
    type=int,
    default=DEFAULT_STATUS_DAYS,
    show_default=True,
    help="Keep mlflow_status rows this many days.",
)
@click.option(
    "--optimize/--no-optimize", default=True, show_default=True, help="Compact small files."
)
@dashed_option("lock_file", default=None, help="The job's lock file (default: the job's).")
def maintain(**params: Any) -> int:
    """``mlflow-fun maintain``."""
    return run_maintain(SimpleNamespace(**params))


def run_maintain(args: SimpleNamespace) -> int:
    """Check the settings, take the job's lock, maintain every table and print one line each.

    Raises:
        ConfigError: A bad setting, or no database to maintain (before Spark when it can).
    """
    config = resolve_config(
        args.conf, database=args.database, data_dir=args.data_dir, lock_file=args.lock_file
    )
    options = MaintenanceOptions(
        database=config.database,
        retain_hours=args.retain_hours,
        status_days=args.status_days,
        optimize=args.optimize,
    )
    # Spark, Delta and the writers: only once the settings are known to be good.
    from mlflow_fun.load.maintain import maintain as maintain_tables
    from mlflow_fun.query.spark_tables import table_session

    spark = table_session(config)
    with JobLock(config.lock_file or default_lock_path(config.data_dir, config.database)):
        results = maintain_tables(spark, options)
    for result in results:
        print(result.line())
    return 0
