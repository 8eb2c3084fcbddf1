"""The ``mlflow-fun`` command: parse arguments, call a library function, map errors.

Exit codes: 0 success, 1 a failure the message explains, 2 bad usage, 130 interrupted.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from mlflow_fun.errors import ConfigError, JobFailedError, MlflowFunError, QueryError

logger = logging.getLogger(__name__)

BEST_SOURCES = ("rest", "api", "pandas", "spark", "table")
SQL_FORMATS = ("table", "csv", "json")


def configure_logging(level: str) -> None:
    """Configure the root logger once, for entry points."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    # PySpark logs every failed query as JSON with a Java stack; the CLI says it in one line.
    logging.getLogger("SQLQueryContextLogger").setLevel(logging.CRITICAL)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``mlflow-fun`` and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="mlflow-fun",
        description=(
            "Turn MLflow runs into typed tables and DataFrames, and find the best run. "
            "The tracking server comes from --tracking-uri or MLFLOW_TRACKING_URI; "
            "credentials from MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME/PASSWORD."
        ),
    )
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="logging level on stderr (default: WARNING)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    best = commands.add_parser(
        "best",
        help="print the best run of an experiment by one metric",
        description=(
            "Print ('<run_id>', <value>) of the run with the lowest (or highest) metric. "
            "Runs without the metric or with NaN are skipped; ties go to the earliest "
            "start_time, then the smallest run_id."
        ),
    )
    which = best.add_mutually_exclusive_group(required=True)
    which.add_argument("--experiment-id", "--experiment_id", help="experiment id")
    which.add_argument("--experiment-name", "--experiment_name", help="experiment name")
    best.add_argument("--metric", required=True, help="metric key, e.g. rmse or _m_rmse")
    best.add_argument(
        "--order", choices=("asc", "desc"), default="asc", help="asc: lowest wins (default)"
    )
    best.add_argument(
        "--source",
        choices=BEST_SOURCES,
        default="rest",
        help=(
            "rest: one REST search sorted by the server (default); api: MLflow's Python "
            "client; pandas or spark: a typed DataFrame of every run; table: the tables "
            "built by `mlflow-fun build` (needs --data_dir or Spark metastore settings)"
        ),
    )
    _add_tracking_uri(best)
    _add_table_location(best)
    best.set_defaults(handler=_run_best)

    from mlflow_fun.job import add_build_arguments

    build = commands.add_parser(
        "build",
        help="build one typed table exp_<id> per experiment (the job, on a local Spark)",
        description=(
            "Pull experiments and runs from the tracking server and write one typed Delta "
            "table <database>.exp_<id> per experiment, plus <database>.mlflow_status. "
            "Same code and flags as `spark-submit jobs/build_tables.py`."
        ),
    )
    add_build_arguments(build)
    build.set_defaults(handler=_run_build)

    sql = commands.add_parser(
        "sql",
        help="run Spark SQL against the tables built by `mlflow-fun build`",
        description=(
            "Run one Spark SQL statement with --database selected, e.g. "
            '"select run_uuid, _m_rmse from exp_1 order by _m_rmse".'
        ),
    )
    sql.add_argument("query", help="the SQL statement")
    _add_table_location(sql)
    sql.add_argument(
        "--format", choices=SQL_FORMATS, default="table", help="output format (default: table)"
    )
    sql.add_argument(
        "--max-rows",
        "--max_rows",
        dest="max_rows",
        type=int,
        default=1000,
        help="print at most this many rows (default: 1000)",
    )
    sql.set_defaults(handler=_run_sql)
    return parser


def _add_table_location(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data_dir",
        "--data-dir",
        dest="data_dir",
        default=None,
        help="home of the embedded default (as given to `mlflow-fun build`)",
    )
    parser.add_argument(
        "--database", default="mlflow_metrics", help="database (default: mlflow_metrics)"
    )


def _add_tracking_uri(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tracking-uri",
        "--tracking_uri",
        default=None,
        help="tracking server URL or store URI (default: MLFLOW_TRACKING_URI)",
    )


def _run_best(args: argparse.Namespace) -> int:
    from mlflow_fun.client.sources import MlflowClientSource, open_source, resolve_tracking_uri
    from mlflow_fun.metrics.api.best_run import best_run_by_server

    ascending = args.order == "asc"
    if args.source == "table":
        from mlflow_fun.metrics.spark import table_queries

        spark = _table_spark(args)
        experiment_id = args.experiment_id or table_queries.experiment_id_by_name(
            spark, args.database, args.experiment_name
        )
        print(
            table_queries.best_run_from_table(
                spark, args.database, experiment_id, args.metric, ascending
            )
        )
        return 0
    uri = resolve_tracking_uri(args.tracking_uri)
    source = MlflowClientSource(uri) if args.source == "api" else open_source(uri)
    if args.experiment_name is not None:
        experiment_id = source.get_experiment_by_name(args.experiment_name).experiment_id
    else:
        experiment_id = args.experiment_id
    if args.source in ("rest", "api"):
        best = best_run_by_server(source, experiment_id, args.metric, ascending)
    elif args.source == "pandas":
        from mlflow_fun.metrics.pandas.dataframe_builder import PandasDataframeBuilder

        best = PandasDataframeBuilder(source=source).get_best_run(
            experiment_id, args.metric, ascending
        )
    else:
        from mlflow_fun.metrics.spark.dataframe_builder import FastDataframeBuilder

        best = FastDataframeBuilder(source=source).get_best_run(
            experiment_id, args.metric, ascending
        )
    print(best)
    return 0


def _table_spark(args: argparse.Namespace) -> Any:
    from pyspark.sql import SparkSession

    from mlflow_fun.naming import validate_identifier
    from mlflow_fun.spark_session import build_spark_session

    validate_identifier(args.database, "database")
    if args.data_dir is not None and not os.path.isdir(args.data_dir):
        raise ConfigError(
            f"data_dir {args.data_dir!r} does not exist; run `mlflow-fun build --data_dir "
            f"{args.data_dir}` first"
        )
    return SparkSession.getActiveSession() or build_spark_session(
        data_dir=args.data_dir, app_name="mlflow-fun-sql"
    )


def _run_build(args: argparse.Namespace) -> int:
    return execute_build(args, "mlflow-fun")


def job_main(argv: Sequence[str] | None = None, prog: str = "build_tables.py") -> int:
    """Entry point of ``spark-submit jobs/build_tables.py``; returns the exit code."""
    from mlflow_fun.job import add_build_arguments

    parser = argparse.ArgumentParser(
        prog=prog,
        description="Build one typed table exp_<id> per MLflow experiment in a metastore.",
    )
    add_build_arguments(parser)
    parser.add_argument(
        "--log-level",
        "--log_level",
        dest="log_level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
    )
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    return execute_build(args, prog)


def execute_build(args: argparse.Namespace, prog: str) -> int:
    """Run the job from parsed arguments; print the summary; map errors to exit codes."""
    from mlflow_fun.job import config_from_args, run_job

    try:
        result = run_job(config_from_args(args), progress=args.progress)
    except JobFailedError as e:
        for experiment_id, error in sorted(e.failed.items()):
            print(f"{prog}: experiment {experiment_id} failed: {error}", file=sys.stderr)
        print(f"{prog}: error: {e}; their tables are unchanged", file=sys.stderr)
        return 1
    except MlflowFunError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    print(result.summary())
    return 0


def _run_sql(args: argparse.Namespace) -> int:
    from pyspark.errors import PySparkException

    spark = _table_spark(args)
    if not spark.catalog.databaseExists(args.database):
        raise ConfigError(
            f"database {args.database!r} does not exist; run `mlflow-fun build` first"
        )
    spark.catalog.setCurrentDatabase(args.database)
    try:
        df = spark.sql(args.query)
        rows = df.limit(args.max_rows + 1).collect()
    except PySparkException as e:
        raise QueryError(_first_line(str(e))) from e
    truncated = len(rows) > args.max_rows
    rows = rows[: args.max_rows]
    columns = df.columns
    if args.format == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([_plain(v) for v in row] for row in rows)
    elif args.format == "json":
        for row in rows:
            print(json.dumps(dict(zip(columns, map(_plain, row), strict=True)), default=str))
    else:
        print(format_table(columns, rows))
    if truncated:
        print(f"(only the first {args.max_rows} rows; see --max-rows)", file=sys.stderr)
    return 0


def format_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Rows as a text table in Spark's ``show()`` style, nothing truncated."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    rule = "+" + "+".join("-" * w for w in widths) + "+"
    lines = [rule, "|" + "|".join(c.rjust(w) for c, w in zip(columns, widths, strict=True)) + "|"]
    lines.append(rule)
    lines += [
        "|" + "|".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) + "|" for r in cells
    ]
    lines.append(rule)
    return "\n".join(lines)


def _plain(value: Any) -> Any:
    return value.isoformat(sep=" ") if hasattr(value, "isoformat") else value


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    return str(_plain(value))


def _first_line(text: str) -> str:
    stripped = text.strip()
    return stripped.splitlines()[0] if stripped else "query failed"


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mlflow-fun``; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except MlflowFunError as e:
        print(f"mlflow-fun: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("mlflow-fun: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
