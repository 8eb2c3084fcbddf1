"""``mlflow-fun best``: the best run(s) of experiments, from any source."""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

from mlflow_fun.cli.options import (
    add_conf,
    add_connection,
    add_data_dir,
    add_database,
    add_output,
    add_tracking_uri,
)
from mlflow_fun.cli.output import print_rows
from mlflow_fun.config import parse_experiment_ids, resolve_config
from mlflow_fun.errors import MetricNotFoundError, QueryError, UsageError
from mlflow_fun.query.condition import check_syntax
from mlflow_fun.query.model import SOURCES, BestQuery, OrderKey, parse_order_by

logger = logging.getLogger(__name__)

DESCRIPTION = (
    "Find the best run(s) of one or more experiments. With --metric and one run "
    "it prints ('<run_id>', <value>). Runs without an ordering metric or with NaN "
    "are skipped; ties go to the earliest start_time, then the smallest run_id. "
    "Every --source gives the same answer on the same data."
)


def add_best_arguments(best: argparse.ArgumentParser) -> None:
    """The flags of ``mlflow-fun best``."""
    which = best.add_mutually_exclusive_group()  # or MLflow's variables: `_from_env`
    which.add_argument(
        "--experiment-id", "--experiment_id", help="experiment id (default: $MLFLOW_EXPERIMENT_ID)"
    )
    which.add_argument(
        "--experiment-name",
        "--experiment_name",
        help="experiment name (default: $MLFLOW_EXPERIMENT_NAME)",
    )
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
        "status = 'FAILED')\"; MLflow's words work too: \"metrics.rmse < 0.8 and "
        "params.alpha = '0.5'\"",
    )
    best.add_argument("--top", type=int, default=1, help="how many runs (default: 1)")
    add_output(
        best,
        "table, csv, json (one document) or jsonl (one object a line); default: "
        "('<run_id>', <value>) for one run, else table",
    )
    best.add_argument(
        "--source",
        choices=SOURCES,
        default="rest",
        help=(
            "rest: the REST API (default); api: MLflow's Python client; sql: MLflow's "
            "database (--connection); pandas or spark: a typed DataFrame of every run; "
            "table: the tables built by `mlflow-fun build`"
        ),
    )
    add_connection(best, "--source sql")
    add_tracking_uri(best)
    add_data_dir(best)
    add_database(best)
    add_conf(best, "--source table: the job's YAML settings (data_dir, database, metastore)")


def run_best(args: argparse.Namespace) -> int:
    """Answer the question the flags ask and print it."""
    _experiment_from_env(args)
    if args.where:
        try:  # a typo is one line, exit 2, before any pull or Spark start-up
            check_syntax(args.where)
        except QueryError as e:
            raise UsageError(str(e)) from e
    if args.metric is not None:
        key = OrderKey(args.metric, args.order == "asc")
        query = BestQuery(order_by=(key,), where=args.where, top=args.top)
    elif args.order_by is not None:
        query = BestQuery(order_by=parse_order_by(args.order_by), where=args.where, top=args.top)
    else:
        query = BestQuery(
            pareto=parse_order_by(args.pareto, ("min", "max")), where=args.where, top=args.top
        )
    # The engines load pandas, SQLAlchemy, delta-rs or Spark: only the one asked for.
    from mlflow_fun.query import spark_tables, tables

    config = resolve_config(args.conf, database=args.database, data_dir=args.data_dir)
    args.database, args.data_dir = config.database, config.data_dir
    if args.source == "table" and args.data_dir is not None:
        try:
            return _answer_best(args, query, None)
        except tables.TableNotLocalError as e:
            logger.info("asking Spark's metastore: %s", e)
    if args.source == "spark":
        spark = spark_tables.spark_session(args.data_dir)
    elif args.source == "table":
        spark = spark_tables.table_session(config)
    else:
        spark = None
    return _answer_best(args, query, spark)


def _experiment_from_env(args: argparse.Namespace) -> None:
    """No experiment flag: MLflow's ``MLFLOW_EXPERIMENT_ID`` or ``MLFLOW_EXPERIMENT_NAME``.

    Raises:
        UsageError: Neither a flag nor a variable names the experiments, or both variables.
    """
    if args.experiment_id or args.experiment_name or args.experiment_ids or args.all_experiments:
        return
    by_id = os.environ.get("MLFLOW_EXPERIMENT_ID") or None
    by_name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or None
    if by_id and by_name:
        raise UsageError(
            "MLFLOW_EXPERIMENT_ID and MLFLOW_EXPERIMENT_NAME are both set: unset one, or give "
            "--experiment-id or --experiment-name"
        )
    if not (by_id or by_name):
        raise UsageError(
            "which experiments? give --experiment-id, --experiment-name, --experiment-ids or "
            "--all-experiments (or set MLFLOW_EXPERIMENT_ID or MLFLOW_EXPERIMENT_NAME)"
        )
    args.experiment_id, args.experiment_name = by_id, by_name


def _answer_best(args: argparse.Namespace, query: BestQuery, spark: Any) -> int:
    """Answer and print ``query``; ``--source table`` without ``spark`` reads Delta directly."""
    from mlflow_fun.query.answer import answer_query, best_single_metric

    experiment_ids = _experiment_ids(args, spark)
    if (
        query.is_single_metric
        and len(experiment_ids) == 1
        and args.source in ("rest", "api", "sql")
    ):
        rows = [
            best_single_metric(
                args.source,
                experiment_ids[0],
                query.order_by[0],
                tracking_uri=args.tracking_uri,
                connection=args.connection,
            )
        ]
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
    print_rows(header, [[r.experiment_id, r.run_id, *r.values.values()] for r in rows], output)
    return 0


def _experiment_ids(args: argparse.Namespace, spark: Any) -> list[str]:
    from mlflow_fun.query import spark_tables, tables
    from mlflow_fun.query.answer import open_named_source

    if args.experiment_id is not None:
        return [args.experiment_id]
    if args.experiment_ids is not None:
        return list(parse_experiment_ids(args.experiment_ids))
    if args.source == "table" and spark is None:
        if args.experiment_name is not None:
            return [
                tables.experiment_id_by_name(args.data_dir, args.database, args.experiment_name)
            ]
        return tables.loaded_experiment_ids(args.data_dir, args.database)
    if args.source == "table":
        if args.experiment_name is not None:
            return [spark_tables.experiment_id_by_name(spark, args.database, args.experiment_name)]
        return spark_tables.loaded_experiment_ids(spark, args.database)
    source_name = args.source if args.source in ("api", "sql") else "rest"
    source = open_named_source(
        source_name, tracking_uri=args.tracking_uri, connection=args.connection
    )
    if args.experiment_name is not None:
        return [source.get_experiment_by_name(args.experiment_name).experiment_id]
    return [e.experiment_id for e in source.iter_experiments()]
