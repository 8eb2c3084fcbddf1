"""``mlflow-fun sql``: one Spark SQL statement over the job's tables."""

from __future__ import annotations

import argparse
import sys

from mlflow_fun.cli.options import OUTPUT_FORMATS, add_data_dir, add_database
from mlflow_fun.cli.output import print_rows
from mlflow_fun.config import DEFAULT_DATABASE
from mlflow_fun.errors import ConfigError, QueryError

# pyspark: the optional [spark] extra, imported inside the functions that use it.


def add_sql_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``mlflow-fun sql``."""
    parser.add_argument("query", help="the SQL statement")
    add_data_dir(parser)
    add_database(parser)
    parser.add_argument(
        "--format", choices=OUTPUT_FORMATS, default="table", help="output format (default: table)"
    )
    parser.add_argument(
        "--max-rows",
        "--max_rows",
        dest="max_rows",
        type=int,
        default=1000,
        help="print at most this many rows (default: 1000)",
    )


def run_sql(args: argparse.Namespace) -> int:
    """Run the statement with ``--database`` selected and print at most ``--max-rows`` rows.

    Raises:
        ConfigError: The database does not exist.
        QueryError: Spark refused the statement (its first line).
    """
    from pyspark.errors import PySparkException  # Spark: only when the command runs

    from mlflow_fun.query.spark_tables import table_session

    database = args.database or DEFAULT_DATABASE
    spark = table_session(args.data_dir, database)
    if not spark.catalog.databaseExists(database):
        raise ConfigError(f"database {database!r} does not exist; run `mlflow-fun build` first")
    spark.catalog.setCurrentDatabase(database)
    try:
        df = spark.sql(args.query)
        rows = df.limit(args.max_rows + 1).collect()
    except PySparkException as e:
        raise QueryError((str(e).strip() or "query failed").splitlines()[0]) from e
    truncated = len(rows) > args.max_rows
    rows = rows[: args.max_rows]
    print_rows(df.columns, rows, args.format)
    if truncated:
        print(f"(only the first {args.max_rows} rows; see --max-rows)", file=sys.stderr)
    return 0
