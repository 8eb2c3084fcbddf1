"""``mlflow-fun build`` and ``spark-submit jobs/build_tables.py``: the flags, the exit codes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mlflow_fun.cli.options import (
    add_conf,
    add_connection,
    add_data_dir,
    add_database,
    add_tracking_uri,
    entry_point_args,
)
from mlflow_fun.config import FORMATS, SOURCES, JobConfig, parse_experiment_ids, resolve_config
from mlflow_fun.errors import JobFailedError, JobStoppedError, MlflowFunError, UsageError

DESCRIPTION = "Build one typed table exp_<id> per MLflow experiment in a metastore."


def add_build_arguments(parser: argparse.ArgumentParser) -> None:
    """The job's flags; each has an underscore and a dashed spelling."""
    add_database(parser)
    add_data_dir(parser, "home of the embedded default: tables and a Derby metastore under it")
    parser.add_argument(
        "--experiment_ids",
        "--experiment-ids",
        dest="experiment_ids",
        default=None,
        help="comma-separated experiment ids, e.g. 1,2,9 (default: every active experiment)",
    )
    add_tracking_uri(parser)
    parser.add_argument(
        "--format", default=None, choices=FORMATS, help="table format (default: delta)"
    )
    parser.add_argument(
        "--page_size",
        "--page-size",
        dest="page_size",
        type=int,
        default=None,
        help="runs per runs/search page (default: 5000)",
    )
    parser.add_argument(
        "--parallelism",
        type=int,
        default=None,
        help="experiments pulled from the server at once (default: 2)",
    )
    parser.add_argument(
        "--source",
        default=None,
        choices=SOURCES,
        help="where runs are read: the tracking server (default) or MLflow's database",
    )
    add_connection(parser, "--source db")
    parser.add_argument(
        "--full_refresh",
        "--full-refresh",
        dest="full_refresh",
        action="store_true",
        default=None,
        help="rebuild every table instead of merging the runs that changed",
    )
    parser.add_argument(
        "--with_history",
        "--with-history",
        dest="with_history",
        action="store_true",
        default=None,
        help="also load <database>.metric_history (every logged value of every metric)",
    )
    parser.add_argument(
        "--incremental_margin_minutes",
        "--incremental-margin-minutes",
        dest="incremental_margin_minutes",
        type=int,
        default=None,
        help="how far before the last watermark an incremental refresh looks (default: 60)",
    )
    parser.add_argument(
        "--lock_file",
        "--lock-file",
        dest="lock_file",
        default=None,
        help="file lock keeping two runs of the job apart (default: <data_dir>/.mlflow-fun.lock)",
    )
    add_conf(parser, "YAML settings file (conf/*.yaml); flags override it")
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bars (default: only on a terminal)",
    )


def config_from_args(args: argparse.Namespace) -> JobConfig:
    """The file from ``--conf`` (if any) with the flags applied over it."""
    ids = parse_experiment_ids(args.experiment_ids) if args.experiment_ids else None
    return resolve_config(
        args.conf,
        database=args.database,
        data_dir=args.data_dir,
        experiment_ids=ids,
        tracking_uri=args.tracking_uri,
        format=args.format,
        page_size=args.page_size,
        parallelism=args.parallelism,
        source=args.source,
        connection=args.connection,
        full_refresh=args.full_refresh,
        with_history=args.with_history,
        incremental_margin_minutes=args.incremental_margin_minutes,
        lock_file=args.lock_file,
    )


def execute_build(args: argparse.Namespace, prog: str) -> int:
    """Run the job from parsed arguments; print the summary; map errors to exit codes."""
    # The job loads pyarrow, Spark's writers and MLflow's client: only when it runs.
    from mlflow_fun.load.job import run_job

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
    except UsageError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except MlflowFunError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    print(result.summary())
    return 0


def run_build(args: argparse.Namespace) -> int:
    """``mlflow-fun build``."""
    return execute_build(args, "mlflow-fun")


def job_main(argv: Sequence[str] | None = None, prog: str = "build_tables.py") -> int:
    """Entry point of ``spark-submit jobs/build_tables.py``; returns the exit code."""
    return execute_build(entry_point_args(argv, prog, DESCRIPTION, add_build_arguments), prog)
