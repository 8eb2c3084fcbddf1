"""The ``mlflow-fun`` command: parse arguments, call a library function, map errors.

Exit codes: 0 success, 1 a failure the message explains, 2 bad usage, 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from mlflow_fun.errors import MlflowFunError

logger = logging.getLogger(__name__)

BEST_SOURCES = ("rest", "api", "pandas", "spark")


def configure_logging(level: str) -> None:
    """Configure the root logger once, for entry points."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )


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
            "client; pandas or spark: a typed DataFrame of every run"
        ),
    )
    _add_tracking_uri(best)
    best.set_defaults(handler=_run_best)
    return parser


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

    uri = resolve_tracking_uri(args.tracking_uri)
    source = MlflowClientSource(uri) if args.source == "api" else open_source(uri)
    if args.experiment_name is not None:
        experiment_id = source.get_experiment_by_name(args.experiment_name).experiment_id
    else:
        experiment_id = args.experiment_id
    ascending = args.order == "asc"
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
