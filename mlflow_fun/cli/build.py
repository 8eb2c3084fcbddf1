"""``mlflow-fun build`` and ``spark-submit jobs/build_tables.py``: the flags, the exit codes."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import click

from mlflow_fun.cli.options import (
    Command,
    Words,
    conf_option,
    connection_option,
    dashed_option,
    data_dir_option,
    database_option,
    experiment_ids_option,
    merge_renamed,
    renamed_flag,
    tracking_uri_option,
)
from mlflow_fun.config import (
    OLD_SOURCES,
    SOURCES,
    TABLE_FORMATS,
    JobConfig,
    parse_experiment_ids,
    resolve_config,
)
from mlflow_fun.errors import JobFailedError, JobStoppedError

DESCRIPTION = "Build one typed table exp_<id> per MLflow experiment in a metastore."


@click.command(
    "build",
    cls=Command,
    short_help="Build one typed table exp_<id> per experiment (the job, on a local Spark).",
    help="Pull experiments and runs from the tracking server (or MLflow's database) and "
    "write one typed Delta table <database>.exp_<id> per experiment, plus the runs, "
    "experiments and mlflow_status tables and the analyst views. The same command as "
    "`spark-submit jobs/build_tables.py`.",
)
@database_option()
@data_dir_option("Home of the embedded default: tables and a Derby metastore under it.")
@experiment_ids_option("Comma-separated experiment ids, e.g. 1,2,9 (default: every active one).")
@tracking_uri_option()
@click.option(
    "--source",
    type=Words(SOURCES, old=OLD_SOURCES),
    default=None,
    help="Where runs are read: rest, the tracking server's REST API (default), or db, "
    "MLflow's database (--connection).",
)
@connection_option("--source db")
@dashed_option(
    "table_format",
    type=click.Choice(TABLE_FORMATS),
    default=None,
    help="Format of the tables written (default: delta).",
)
@renamed_flag("--format", "--table-format", type=click.Choice(TABLE_FORMATS))
@dashed_option(
    "page_size",
    type=int,
    default=None,
    help="Runs per runs/search page (default: 5000).",
)
@click.option(
    "--parallelism",
    type=int,
    default=None,
    help="Experiments pulled from the server at once (default: 2).",
)
@dashed_option(
    "full_refresh",
    is_flag=True,
    default=None,
    help="Rebuild every table instead of merging the runs that changed.",
)
@dashed_option(
    "with_history",
    is_flag=True,
    default=None,
    help="Also load <database>.metric_history (every logged value of every metric).",
)
@dashed_option(
    "with_registry",
    is_flag=True,
    default=None,
    help="Also load <database>.model_versions (the model registry; REST sources only).",
)
@dashed_option(
    "with_models",
    is_flag=True,
    default=None,
    help="Also load <database>.logged_models and model_metrics (MLflow 3's logged models of "
    "the loaded experiments).",
)
@dashed_option(
    "incremental_margin_minutes",
    type=int,
    default=None,
    help="How far before the last watermark an incremental refresh looks (default: 60).",
)
@dashed_option(
    "lock_file",
    default=None,
    help="File lock keeping two runs of the job apart (default: <data-dir>/.mlflow-fun.lock).",
)
@conf_option("YAML settings file (conf/*.yaml); flags override it.")
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bars (default: only on a terminal).",
)
def build(**params: Any) -> int:
    """``mlflow-fun build``."""
    prog = click.get_current_context().find_root().info_name or "mlflow-fun"
    return execute_build(_namespace(params), prog)


def parse_build_args(argv: Sequence[str]) -> SimpleNamespace:
    """The flags in ``argv`` as ``mlflow-fun build`` sees them (for tests and tools)."""
    with build.make_context("build", list(argv)) as ctx:
        params = dict(ctx.params)
    params.pop("log_level", None)
    return _namespace(params)


def _namespace(params: dict[str, Any]) -> SimpleNamespace:
    merge_renamed(params, "--format", "table_format")
    return SimpleNamespace(**params)


def config_from_args(args: SimpleNamespace) -> JobConfig:
    """The file from ``--conf`` (if any) with the flags applied over it."""
    ids = parse_experiment_ids(args.experiment_ids) if args.experiment_ids else None
    return resolve_config(
        args.conf,
        database=args.database,
        data_dir=args.data_dir,
        experiment_ids=ids,
        tracking_uri=args.tracking_uri,
        table_format=args.table_format,
        page_size=args.page_size,
        parallelism=args.parallelism,
        source=args.source,
        connection=args.connection,
        full_refresh=args.full_refresh,
        with_history=args.with_history,
        with_registry=args.with_registry,
        with_models=args.with_models,
        incremental_margin_minutes=args.incremental_margin_minutes,
        lock_file=args.lock_file,
    )


def execute_build(args: SimpleNamespace, prog: str) -> int:
    """Run the job; print the summary. A stop is exit 143; failed experiments are named.

    Other errors reach `mlflow_fun.cli.main.main`, which says them in one line.
    """
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
    print(result.summary())
    return 0
