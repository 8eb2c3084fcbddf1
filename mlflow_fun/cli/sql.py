"""``mlflow-fun sql``: one Spark SQL statement over the job's tables."""

from __future__ import annotations

import argparse
import sys

from mlflow_fun.cli.options import add_conf, add_data_dir, add_database, add_output
from mlflow_fun.cli.output import print_rows
from mlflow_fun.config import resolve_config
from mlflow_fun.errors import ConfigError, QueryError

# pyspark: the optional [spark] extra, imported inside the functions that use it.


def add_sql_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``mlflow-fun sql``."""
    parser.add_argument("query", help="the SQL statement")
    add_data_dir(parser)
    add_database(parser)
    add_conf(
        parser, "the job's YAML settings file (data_dir, database, metastore); flags override it"
    )
    add_output(
        parser,
        "table (default), csv, json (one document) or jsonl (one object a line)",
        deprecated=["--format"],
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
    from mlflow_fun.query.spark_tables import table_session

    config = resolve_config(args.conf, database=args.database, data_dir=args.data_dir)
    database = config.database
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
    truncated = len(rows) > args.max_rows
    rows = rows[: args.max_rows]
    print_rows(df.columns, rows, args.output or "table")
    if truncated:
        print(f"(only the first {args.max_rows} rows; see --max-rows)", file=sys.stderr)
    return 0
