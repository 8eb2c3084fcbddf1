"""``mlflow-fun serve`` and ``python -m mlflow_fun.serve``: the SQL endpoint for BI tools."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mlflow_fun.cli.options import add_conf, add_data_dir, add_database, entry_point_args
from mlflow_fun.config import resolve_config
from mlflow_fun.errors import MlflowFunError
from mlflow_fun.serve.endpoint import serve_until_stopped
from mlflow_fun.serve.settings import DEFAULT_HOST, DEFAULT_PORT, EndpointConfig

DESCRIPTION = (
    "Serve the tables built by `mlflow-fun build` over JDBC/ODBC "
    "(HiveServer2 protocol) until SIGTERM or Ctrl-C."
)


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``mlflow-fun serve``; each multi-word flag has both spellings."""
    parser.add_argument(
        "--host", default=None, help=f"address to bind (default: {DEFAULT_HOST}, this machine only)"
    )
    parser.add_argument(
        "--port", type=int, default=None, help=f"TCP port (default: {DEFAULT_PORT})"
    )
    add_database(parser, "database clients start in")
    add_data_dir(parser)
    add_conf(
        parser,
        "the job's YAML settings file (database, data_dir, spark_conf), e.g. "
        "conf/metastore-postgres.yaml; flags override it",
    )


def endpoint_config(args: argparse.Namespace) -> EndpointConfig:
    """The file from ``--conf`` (if any) with the flags applied over it.

    Raises:
        ConfigError, InvalidIdentifierError: The file or a flag is invalid.
    """
    tables = resolve_config(args.conf, database=args.database, data_dir=args.data_dir)
    return EndpointConfig(
        host=args.host if args.host is not None else DEFAULT_HOST,
        port=args.port if args.port is not None else DEFAULT_PORT,
        database=tables.database,
        data_dir=tables.data_dir,
        spark_conf=dict(tables.spark_conf),
    )


def run_serve(args: argparse.Namespace) -> int:
    """Serve until stopped; print where, and that it stopped."""

    def announce(jdbc_url: str) -> None:
        print(f"SQL endpoint ready: {jdbc_url}", flush=True)
        print("Stop with Ctrl-C or SIGTERM.", flush=True)

    serve_until_stopped(endpoint_config(args), announce)
    print("SQL endpoint stopped.", flush=True)
    return 0


def serve_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m mlflow_fun.serve``; returns the exit code."""
    args = entry_point_args(argv, "python -m mlflow_fun.serve", DESCRIPTION, add_serve_arguments)
    try:
        return run_serve(args)
    except MlflowFunError as e:
        print(f"mlflow-fun serve: error: {e}", file=sys.stderr)
        return 1
