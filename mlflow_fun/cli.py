"""The ``mlflow-fun`` command: parse arguments, call a library function, map errors.

Exit codes: 0 success, 1 a failure the message explains, 2 bad usage, 130 interrupted,
143 the job stopped on SIGTERM between experiments.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from mlflow_fun import __version__
from mlflow_fun.errors import (
    ConfigError,
    JobFailedError,
    JobStoppedError,
    MetricNotFoundError,
    MlflowFunError,
    QueryError,
)

logger = logging.getLogger(__name__)

BEST_SOURCES = ("rest", "api", "sql", "pandas", "spark", "table")
SQL_FORMATS = ("table", "csv", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def configure_logging(level: str) -> None:
    """Configure the root logger once, for entry points."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    # PySpark logs every failed query as JSON with a Java stack; the CLI says it in one line.
    logging.getLogger("SQLQueryContextLogger").setLevel(logging.CRITICAL)
    # py4j logs every call into the JVM at DEBUG: noise, not diagnosis.
    logging.getLogger("py4j").setLevel(logging.WARNING)


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
        "--log_level",
        dest="log_level",
        default="WARNING",
        choices=LOG_LEVELS,
        help="logging level on stderr (default: WARNING); also accepted after the command",
    )
    parser.add_argument("--version", action="version", version=f"mlflow-fun {__version__}")
    # The same flag after the command; without it, the value before the command stands.
    after = argparse.ArgumentParser(add_help=False)
    after.add_argument(
        "--log-level",
        "--log_level",
        dest="log_level",
        default=argparse.SUPPRESS,
        choices=LOG_LEVELS,
        help="logging level on stderr (default: WARNING)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    best = commands.add_parser(
        "best",
        parents=[after],
        help="print the best run(s): one metric, several, a condition, top K, Pareto",
        description=(
            "Find the best run(s) of one or more experiments. With --metric and one run "
            "it prints ('<run_id>', <value>). Runs without an ordering metric or with NaN "
            "are skipped; ties go to the earliest start_time, then the smallest run_id. "
            "Every --source gives the same answer on the same data."
        ),
    )
    which = best.add_mutually_exclusive_group(required=True)
    which.add_argument("--experiment-id", "--experiment_id", help="experiment id")
    which.add_argument("--experiment-name", "--experiment_name", help="experiment name")
    which.add_argument(
        "--experiment-ids", "--experiment_ids", help="comma-separated ids: best across them"
    )
    which.add_argument(
        "--all-experiments", action="store_true", help="best across every active experiment"
    )
    rank = best.add_mutually_exclusive_group(required=True)
    rank.add_argument("--metric", help="one metric key, e.g. rmse (or its column, _m_rmse)")
    rank.add_argument(
        "--order-by", "--order_by", dest="order_by", help='several keys: "rmse asc, mae asc"'
    )
    rank.add_argument(
        "--pareto", help='the runs no other run beats on every metric: "rmse min, r2 max"'
    )
    best.add_argument(
        "--order", choices=("asc", "desc"), default="asc", help="with --metric: asc (default)"
    )
    best.add_argument(
        "--where",
        help='a condition on columns, e.g. "_p_alpha < 0.5 and (_m_r2 > 0.1 or '
        "status = 'FAILED')\"",
    )
    best.add_argument("--top", type=int, default=1, help="how many runs (default: 1)")
    best.add_argument(
        "--output",
        choices=SQL_FORMATS,
        default=None,
        help="table, json or csv (default: ('<run_id>', <value>) for one run, else table)",
    )
    best.add_argument(
        "--source",
        choices=BEST_SOURCES,
        default="rest",
        help=(
            "rest: the REST API (default); api: MLflow's Python client; sql: MLflow's "
            "database (--connection); pandas or spark: a typed DataFrame of every run; "
            "table: the tables built by `mlflow-fun build`"
        ),
    )
    best.add_argument("--connection", help="SQLAlchemy URL of MLflow's database, for --source sql")
    _add_tracking_uri(best)
    _add_table_location(best)
    best.set_defaults(handler=_run_best)

    from mlflow_fun.job import add_build_arguments

    build = commands.add_parser(
        "build",
        parents=[after],
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
        parents=[after],
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

    from mlflow_fun.serve import add_serve_arguments

    serve = commands.add_parser(
        "serve", parents=[after], help="serve the tables to BI tools over JDBC/ODBC"
    )
    add_serve_arguments(serve)
    serve.set_defaults(handler=_run_serve)
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
    from mlflow_fun.metrics.best import BestQuery
    from mlflow_fun.metrics.query import OrderKey, parse_order_by

    if args.metric is not None:
        key = OrderKey(args.metric, args.order == "asc")
        query = BestQuery(order_by=(key,), where=args.where, top=args.top)
    elif args.order_by is not None:
        query = BestQuery(order_by=parse_order_by(args.order_by), where=args.where, top=args.top)
    else:
        query = BestQuery(
            pareto=parse_order_by(args.pareto, ("min", "max")), where=args.where, top=args.top
        )
    if args.source == "table" and args.data_dir is not None:
        from mlflow_fun.metrics.delta_tables import TableNotLocalError

        try:
            return _answer_best(args, query, None)
        except TableNotLocalError as e:
            logger.info("asking Spark's metastore: %s", e)
    spark = _table_spark(args) if args.source in ("spark", "table") else None
    return _answer_best(args, query, spark)


def _answer_best(args: argparse.Namespace, query: Any, spark: Any) -> int:
    """Answer and print ``query``; ``--source table`` without ``spark`` reads Delta directly."""
    from mlflow_fun.metrics.best import answer_query
    from mlflow_fun.metrics.query import RankedRun

    experiment_ids = _experiment_ids(args, spark)
    if (
        query.is_single_metric
        and len(experiment_ids) == 1
        and args.source in ("rest", "api", "sql")
    ):
        key = query.order_by[0]
        run_id, value = _server_best(args, experiment_ids[0], key.name, key.ascending)
        rows = [RankedRun(run_id, experiment_ids[0], {key.name: value})]
    else:
        rows = answer_query(
            args.source,
            experiment_ids,
            query,
            tracking_uri=args.tracking_uri,
            connection=args.connection,
            spark=spark,
            database=args.database,
            data_dir=args.data_dir,
        )
    names = [k.name for k in (query.order_by or query.pareto)]
    output = args.output or ("tuple" if query.top == 1 and not query.pareto else "table")
    if output == "tuple":
        if not rows:
            where = f" matching {args.where!r}" if args.where else ""
            raise MetricNotFoundError(
                f"no run{where} of experiment(s) {', '.join(experiment_ids)} has a value of "
                f"{', '.join(names)} that is not NaN"
            )
        print((rows[0].run_id, next(iter(rows[0].values.values()))))
        return 0
    header = ["experiment_id", "run_id", *names]
    records = [[r.experiment_id, r.run_id, *r.values.values()] for r in rows]
    _print_rows(header, records, output)
    return 0


def _server_best(
    args: argparse.Namespace, experiment_id: str, metric: str, ascending: bool
) -> tuple[str, float]:
    if args.source == "sql":
        from mlflow_fun.metrics.sql.sql_best import get_best_run

        if not args.connection:
            raise ConfigError("--source sql needs --connection (an SQLAlchemy URL)")
        return get_best_run(args.connection, experiment_id, metric, ascending)
    from mlflow_fun.metrics.api.best_run import best_run_by_server
    from mlflow_fun.metrics.best import open_named_source

    source = open_named_source(args.source, tracking_uri=args.tracking_uri)
    return best_run_by_server(source, experiment_id, metric, ascending)


def _experiment_ids(args: argparse.Namespace, spark: Any) -> list[str]:
    from mlflow_fun.config import parse_experiment_ids

    if args.experiment_id is not None:
        return [args.experiment_id]
    if args.experiment_ids is not None:
        return list(parse_experiment_ids(args.experiment_ids))
    if args.source == "table" and spark is None:
        from mlflow_fun.metrics import delta_tables

        if args.experiment_name is not None:
            return [
                delta_tables.experiment_id_by_name(
                    args.data_dir, args.database, args.experiment_name
                )
            ]
        return delta_tables.loaded_experiment_ids(args.data_dir, args.database)
    if args.source == "table":
        from mlflow_fun.metrics.spark import table_queries

        if args.experiment_name is not None:
            return [table_queries.experiment_id_by_name(spark, args.database, args.experiment_name)]
        return table_queries.loaded_experiment_ids(spark, args.database)
    from mlflow_fun.metrics.best import open_named_source

    source_name = args.source if args.source in ("api", "sql") else "rest"
    source = open_named_source(
        source_name, tracking_uri=args.tracking_uri, connection=args.connection
    )
    if args.experiment_name is not None:
        return [source.get_experiment_by_name(args.experiment_name).experiment_id]
    return [e.experiment_id for e in source.iter_experiments()]


def _print_rows(header: Sequence[str], rows: Sequence[Sequence[Any]], output: str) -> None:
    if output == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(header)
        writer.writerows([_plain(v) for v in row] for row in rows)
    elif output == "json":
        for row in rows:
            record = dict(zip(header, map(_json_value, row), strict=True))
            print(json.dumps(record, default=str, allow_nan=False))
    else:
        print(format_table(header, rows))


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


def _entry_point_args(
    argv: Sequence[str] | None,
    prog: str,
    description: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
) -> argparse.Namespace:
    """Parse a single-command entry point's arguments (plus --log-level) and set up logging."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_arguments(parser)
    parser.add_argument(
        "--log-level",
        "--log_level",
        dest="log_level",
        default="INFO",
        choices=LOG_LEVELS,
    )
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    return args


def job_main(argv: Sequence[str] | None = None, prog: str = "build_tables.py") -> int:
    """Entry point of ``spark-submit jobs/build_tables.py``; returns the exit code."""
    from mlflow_fun.job import add_build_arguments

    args = _entry_point_args(
        argv,
        prog,
        "Build one typed table exp_<id> per MLflow experiment in a metastore.",
        add_build_arguments,
    )
    return execute_build(args, prog)


def serve_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m mlflow_fun.serve``; returns the exit code."""
    from mlflow_fun.serve import add_serve_arguments

    args = _entry_point_args(
        argv,
        "python -m mlflow_fun.serve",
        "Serve the tables built by `mlflow-fun build` over JDBC/ODBC "
        "(HiveServer2 protocol) until SIGTERM or Ctrl-C.",
        add_serve_arguments,
    )
    try:
        return _run_serve(args)
    except MlflowFunError as e:
        print(f"mlflow-fun serve: error: {e}", file=sys.stderr)
        return 1


def _run_serve(args: argparse.Namespace) -> int:
    from mlflow_fun.serve import serve_until_stopped

    def announce(jdbc_url: str) -> None:
        print(f"SQL endpoint ready: {jdbc_url}", flush=True)
        print("Stop with Ctrl-C or SIGTERM.", flush=True)

    serve_until_stopped(args, announce)
    print("SQL endpoint stopped.", flush=True)
    return 0


def execute_build(args: argparse.Namespace, prog: str) -> int:
    """Run the job from parsed arguments; print the summary; map errors to exit codes."""
    from mlflow_fun.job import config_from_args, run_job

    try:
        result = run_job(config_from_args(args), progress=args.progress, stop_on_sigterm=True)
    except JobStoppedError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 143
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
    _print_rows(df.columns, rows, args.format)
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


def _json_value(value: Any) -> Any:
    """``value`` as strict JSON holds it: NaN and infinities as the strings ``"NaN"``,
    ``"Infinity"`` and ``"-Infinity"`` (proto3's JSON mapping, as MLflow's REST API writes
    them), so `jq` and ``JSON.parse`` read every line."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    return _plain(value)


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
