"""Flags shared by the commands, each defined once, and the entry points' logging."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from mlflow_fun.config import DB_URL_ENV, DEFAULT_DATABASE

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
OUTPUT_FORMATS = ("table", "csv", "json", "jsonl")


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


def add_log_level(parser: argparse.ArgumentParser, default: str | None) -> None:
    """``--log-level``; ``default=None`` leaves the value set before the command standing."""
    parser.add_argument(
        "--log-level",
        "--log_level",
        dest="log_level",
        default=argparse.SUPPRESS if default is None else default,
        choices=LOG_LEVELS,
        help=f"logging level on stderr (default: {default or 'WARNING'})",
    )


def add_database(parser: argparse.ArgumentParser, help: str = "metastore database") -> None:
    """``--database``; None means the config file's, else ``mlflow_metrics``."""
    parser.add_argument("--database", default=None, help=f"{help} (default: {DEFAULT_DATABASE})")


def add_data_dir(
    parser: argparse.ArgumentParser,
    help: str = "home of the embedded default, as given to `mlflow-fun build`",
) -> None:
    """``--data_dir``/``--data-dir``: where the embedded warehouse and metastore live."""
    parser.add_argument("--data_dir", "--data-dir", dest="data_dir", default=None, help=help)


def add_tracking_uri(parser: argparse.ArgumentParser) -> None:
    """``--tracking_uri``/``--tracking-uri``."""
    parser.add_argument(
        "--tracking_uri",
        "--tracking-uri",
        dest="tracking_uri",
        default=None,
        help="tracking server URL or store URI (default: MLFLOW_TRACKING_URI)",
    )


def add_connection(parser: argparse.ArgumentParser, what: str) -> None:
    """``--connection``: the SQLAlchemy URL of MLflow's database."""
    parser.add_argument(
        "--connection",
        default=os.environ.get(DB_URL_ENV) or None,
        help=f"SQLAlchemy URL of MLflow's database, for {what} (default: ${DB_URL_ENV}; "
        "password from the environment)",
    )


def add_output(parser: argparse.ArgumentParser, help: str, deprecated: Sequence[str] = ()) -> None:
    """``--output table|csv|json|jsonl``; ``deprecated`` spellings work with a warning line."""
    parser.add_argument(
        "--output", *deprecated, choices=OUTPUT_FORMATS, default=None, action=_Deprecated,
        help=help,
    )  # fmt: skip


class _Deprecated(argparse.Action):
    """Store the value; an old spelling of the flag also prints one line on stderr."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        if option_string is not None and option_string != self.option_strings[0]:
            print(
                f"{parser.prog}: {option_string} is deprecated; use {self.option_strings[0]}",
                file=sys.stderr,
            )
        setattr(namespace, self.dest, values)


def add_conf(parser: argparse.ArgumentParser, help: str) -> None:
    """``--conf``: the job's YAML settings file."""
    parser.add_argument("--conf", default=None, help=help)


def entry_point_args(
    argv: Sequence[str] | None,
    prog: str,
    description: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
) -> argparse.Namespace:
    """Parse a single-command entry point's arguments (plus --log-level) and set up logging."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_arguments(parser)
    add_log_level(parser, "INFO")
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    return args
