"""The ``mlflow-fun`` command: parse arguments, call a library function, map errors.

Exit codes: 0 success, 1 a failure the message explains, 2 bad usage, 130 interrupted,
143 the job stopped on SIGTERM between experiments.

Each command lives in its own module (`best`, `build`, `sql`, `serve`) and imports the
library it calls when it runs, so ``mlflow-fun --help`` and a query that needs no Spark
never load Spark, SQLAlchemy or the writers.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from mlflow_fun import __version__
from mlflow_fun.cli.best import DESCRIPTION as BEST_DESCRIPTION
from mlflow_fun.cli.best import add_best_arguments, run_best
from mlflow_fun.cli.build import add_build_arguments, run_build
from mlflow_fun.cli.options import add_log_level, configure_logging
from mlflow_fun.cli.serve import DESCRIPTION as SERVE_DESCRIPTION
from mlflow_fun.cli.serve import add_serve_arguments, run_serve
from mlflow_fun.cli.sql import add_sql_arguments, run_sql
from mlflow_fun.errors import MlflowFunError, UsageError


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
    add_log_level(parser, "WARNING")
    parser.add_argument("--version", action="version", version=f"mlflow-fun {__version__}")
    # The same flag after the command; without it, the value before the command stands.
    after = argparse.ArgumentParser(add_help=False)
    add_log_level(after, None)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help, description, add_arguments, handler in (
        (
            "best",
            "print the best run(s): one metric, several, a condition, top K, Pareto",
            BEST_DESCRIPTION,
            add_best_arguments,
            run_best,
        ),
        (
            "build",
            "build one typed table exp_<id> per experiment (the job, on a local Spark)",
            "Pull experiments and runs from the tracking server and write one typed Delta "
            "table <database>.exp_<id> per experiment, plus <database>.mlflow_status. "
            "Same code and flags as `spark-submit jobs/build_tables.py`.",
            add_build_arguments,
            run_build,
        ),
        (
            "sql",
            "run Spark SQL against the tables built by `mlflow-fun build`",
            "Run one Spark SQL statement with --database selected, e.g. "
            '"select run_uuid, _m_rmse from exp_1 order by _m_rmse".',
            add_sql_arguments,
            run_sql,
        ),
        (
            "serve",
            "serve the tables to BI tools over JDBC/ODBC",
            SERVE_DESCRIPTION,
            add_serve_arguments,
            run_serve,
        ),
    ):
        command = commands.add_parser(name, parents=[after], help=help, description=description)
        add_arguments(command)
        command.set_defaults(handler=handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mlflow-fun``; return the exit code."""
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except UsageError as e:  # found before any work: like argparse's usage errors, exit 2
        print(f"mlflow-fun: error: {e}", file=sys.stderr)
        return 2
    except MlflowFunError as e:
        print(f"mlflow-fun: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("mlflow-fun: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
