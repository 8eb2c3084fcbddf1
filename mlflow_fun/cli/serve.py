"""``mlflow-fun serve`` and ``python -m mlflow_fun.serve``: the SQL endpoint for BI tools."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import click

from mlflow_fun.cli.options import Command, conf_option, data_dir_option, database_option
from mlflow_fun.config import resolve_config
from mlflow_fun.serve.endpoint import serve_until_stopped
from mlflow_fun.serve.settings import DEFAULT_HOST, DEFAULT_PORT, EndpointConfig

DESCRIPTION = (
    "Serve the tables built by `mlflow-fun build` over JDBC/ODBC "
    "(HiveServer2 protocol) until SIGTERM or Ctrl-C."
)


@click.command(
    "serve",
    cls=Command,
    short_help="Serve the tables to BI tools over JDBC/ODBC.",
    help=DESCRIPTION,
)
@click.option(
    "--host", default=None, help=f"Address to bind (default: {DEFAULT_HOST}, this machine only)."
)
@click.option("--port", type=int, default=None, help=f"TCP port (default: {DEFAULT_PORT}).")
@database_option("Database clients start in")
@data_dir_option()
@conf_option(
    "The job's YAML settings file (database, data_dir, spark_conf), e.g. "
    "conf/metastore-postgres.yaml; flags override it."
)
def serve(**params: Any) -> int:
    """``mlflow-fun serve``."""
    return run_serve(SimpleNamespace(**params))


def endpoint_config(args: SimpleNamespace) -> EndpointConfig:
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


def run_serve(args: SimpleNamespace) -> int:
    """Serve until stopped; print where, and that it stopped."""

    def announce(jdbc_url: str) -> None:
        print(f"SQL endpoint ready: {jdbc_url}", flush=True)
        print("Stop with Ctrl-C or SIGTERM.", flush=True)

    serve_until_stopped(endpoint_config(args), announce)
    print("SQL endpoint stopped.", flush=True)
    return 0
