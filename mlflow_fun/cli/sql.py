"""``mlflow-fun sql``: one Spark SQL statement over the job's tables."""

from __future__ import annotations

import logging
import sys
from types import SimpleNamespace
from typing import Any

import click

from mlflow_fun.cli.options import (
    OUTPUT_FORMATS,
    Command,
    conf_option,
    dashed_option,
    data_dir_option,
    database_option,
    merge_renamed,
    output_option,
    renamed_flag,
)
from mlflow_fun.cli.output import print_rows
from mlflow_fun.config import resolve_config
from mlflow_fun.errors import ConfigError, QueryError

logger = logging.getLogger(__name__)

# pyspark: the optional [spark] extra, imported inside the functions that use it.


@click.command(
    "sql",
    cls=Command,
    short_help="Run Spark SQL against the tables built by `mlflow-fun build`.",
    help="Run one Spark SQL statement with --database selected, e.g. "
    '"select run_uuid, _m_rmse from exp_1 order by _m_rmse".',
)
@click.argument("query")
@data_dir_option()
@database_option()
@conf_option("The job's YAML settings file (data_dir, database, metastore); flags override it.")
@output_option("table (default), csv, json (one document) or jsonl (one object a line).")
@renamed_flag("--format", "--output", type=click.Choice(OUTPUT_FORMATS))
@dashed_option(
    "max_rows",
    type=int,
    default=1000,
    show_default=True,
    help="Print at most this many rows.",
)
@click.option(
    "--engine",
    type=click.Choice(("auto", "spark")),
    default="auto",
    show_default=True,
    help="auto: with --data-dir, a plain SELECT over the job's Delta tables runs on DuckDB "
    "(delta-rs reads the tables; no JVM starts), anything else on Spark; spark: always Spark.",
)
def sql(**params: Any) -> int:
    """``mlflow-fun sql``."""
    merge_renamed(params, "--format", "output")
    return run_sql(SimpleNamespace(**params))


def run_sql(args: SimpleNamespace) -> int:
    """Run the statement with ``--database`` selected and print at most ``--max-rows`` rows:
    on DuckDB when it can (`mlflow_fun.query.local_sql`), else on Spark.

    Raises:
        ConfigError: The database does not exist.
        QueryError: Spark refused the statement (its first line).
    """
    from mlflow_fun.query.spark_tables import table_session

    config = resolve_config(args.conf, database=args.database, data_dir=args.data_dir)
    database = config.database
    if args.engine == "auto" and config.data_dir is not None:
        from mlflow_fun.query.local_sql import select_locally
        from mlflow_fun.query.tables import TableNotLocalError

        try:
            columns, found = select_locally(config.data_dir, database, args.query, args.max_rows)
            return _print(columns, found, args)
        except TableNotLocalError as e:
            logger.info("asking Spark: %s", e)
    spark = table_session(config)
    from pyspark.errors import PySparkException  # Spark: only once a session runs

    if not spark.catalog.databaseExists(database):
        raise ConfigError(f"database {database!r} does not exist; run `mlflow-fun build` first")
    spark.catalog.setCurrentDatabase(database)
    try:
        df = spark.sql(args.query)
        rows = df.limit(args.max_rows + 1).collect()
    except PySparkException as e:
        raise QueryError((str(e).strip() or "query failed").splitlines()[0]) from e
    return _print(df.columns, rows, args)


def _print(columns: list[str], rows: list[Any], args: SimpleNamespace) -> int:
    """Print at most ``--max-rows`` of ``rows`` (one more says there were more)."""
    print_rows(columns, rows[: args.max_rows], args.output or "table")
    if len(rows) > args.max_rows:
        print(f"(only the first {args.max_rows} rows; see --max-rows)", file=sys.stderr)
    return 0
