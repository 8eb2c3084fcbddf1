"""``mlflow-fun best``: the best run(s) of experiments, from any source, by any engine."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import click

from mlflow_fun.cli.options import (
    Command,
    conf_option,
    connection_option,
    dashed_option,
    data_dir_option,
    database_option,
    deprecated,
    experiment_ids_option,
    given_on_the_command_line,
    output_option,
    tracking_uri_option,
)
from mlflow_fun.cli.output import print_rows
from mlflow_fun.config import parse_experiment_ids, resolve_config
from mlflow_fun.errors import MetricNotFoundError, QueryError, UsageError
from mlflow_fun.query.condition import check_syntax
from mlflow_fun.query.model import ENGINES, SOURCES, BestQuery, OrderKey, parse_order_by

logger = logging.getLogger(__name__)

# The words of the last release: `--source sql|pandas|spark` -> (source, engine).
OLD_SOURCES = {"sql": ("db", "auto"), "pandas": ("rest", "pandas"), "spark": ("rest", "spark")}
_WHICH = ("experiment_id", "experiment_name", "experiment_ids", "all_experiments")
_RANK = ("metric", "order_by", "pareto")


def _source(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """``--source``; an old word is mapped (with its engine) and warned about."""
    if value not in OLD_SOURCES:
        return value
    source, engine = OLD_SOURCES[value]
    deprecated(
        f"--source {value}",
        f"--source {source}" + (f" --engine {engine}" if engine != "auto" else ""),
    )
    ctx.meta["engine of the old source"] = engine
    return source


@click.command(
    "best",
    cls=Command,
    short_help="Print the best run(s): one metric, several, a condition, top K, Pareto.",
    help="Find the best run(s) of one or more experiments. With --metric and one run it "
    "prints ('<run_id>', <value>). Runs without an ordering metric or with NaN are skipped; "
    "ties go to the earliest start_time, then the smallest run_id. Every --source and "
    "--engine gives the same answer on the same data.",
)
@dashed_option(
    "experiment_id",
    envvar="MLFLOW_EXPERIMENT_ID",
    show_envvar=True,
    default=None,
    help="Experiment id.",
)
@dashed_option(
    "experiment_name",
    envvar="MLFLOW_EXPERIMENT_NAME",
    show_envvar=True,
    default=None,
    help="Experiment name.",
)
@experiment_ids_option("Comma-separated experiment ids: the best across them.")
@dashed_option(
    "all_experiments",
    is_flag=True,
    default=False,
    help="The best across every active experiment.",
)
@click.option("--metric", default=None, help="One metric key, e.g. rmse (or its column, _m_rmse).")
@dashed_option(
    "order_by",
    default=None,
    help='Several keys: "rmse asc, mae asc" (metrics.rmse works too).',
)
@click.option(
    "--pareto",
    default=None,
    help='The runs no other run beats on every metric: "rmse min, r2 max".',
)
@click.option(
    "--order",
    type=click.Choice(("asc", "desc")),
    default="asc",
    show_default=True,
    help="With --metric: the lowest (asc) or the highest (desc) value wins.",
)
@click.option(
    "--where",
    default=None,
    help='A condition on columns, e.g. "_p_alpha < 0.5 and (_m_r2 > 0.1 or status = '
    "'FAILED')\"; MLflow's words work too: \"metrics.rmse < 0.8 and params.alpha = '0.5'\".",
)
@click.option(
    "--agg",
    type=click.Choice(("last", "min", "max")),
    default=None,
    help="Rank by each ranked metric's value over its whole history: last (MLflow's latest "
    "value), min or max at any step; the answer names the step. Without it: MLflow's latest "
    "value, no history read. --source table needs a job run with --with-history.",
)
@click.option(
    "--models",
    is_flag=True,
    default=False,
    help="Rank MLflow 3's logged models instead of runs, with the same grammar: a model's "
    "rmse is its latest value (on --dataset when given), its params are _p_<key> and its "
    "columns model_id, name, source_run_id, status, creation_time. --source table needs a "
    "job run with --with-models.",
)
@click.option(
    "--dataset",
    default=None,
    help="With --models: the metrics measured on this dataset (its name), e.g. wine-test.",
)
@click.option("--top", type=int, default=1, show_default=True, help="How many runs.")
@output_option(
    "table, csv, json (one document) or jsonl (one object a line); default: "
    "('<run_id>', <value>) for one run, else table."
)
@click.option(
    "--source",
    type=click.Choice(SOURCES + tuple(OLD_SOURCES)),
    metavar="[" + "|".join(SOURCES) + "]",
    default="rest",
    show_default=True,
    callback=_source,
    help="Where runs are read: rest, the tracking server's REST API; api, MLflow's Python "
    "client; db, MLflow's database (--connection); table, the tables of `mlflow-fun build`.",
)
@click.option(
    "--engine",
    type=click.Choice(ENGINES),
    default=None,
    help="How the answer is computed: auto (default) lets the server or the database sort "
    "and filter what it can; pandas or spark compute on a typed DataFrame of every run "
    "(spark reads --source rest or table).",
)
@connection_option("--source db")
@tracking_uri_option()
@data_dir_option()
@database_option()
@conf_option("--source table: the job's YAML settings (data_dir, database, metastore).")
def best(**params: Any) -> int:
    """``mlflow-fun best``."""
    ctx = click.get_current_context()
    _one_of(ctx, _WHICH, required=False)
    _one_of(ctx, _RANK, required=True)
    if any(given_on_the_command_line(ctx, name) for name in _WHICH):
        for name in ("experiment_id", "experiment_name"):  # a flag wins over MLflow's variables
            if not given_on_the_command_line(ctx, name):
                params[name] = None
    if params["engine"] is None:
        params["engine"] = ctx.meta.get("engine of the old source", "auto")
    return run_best(SimpleNamespace(**params))


def _one_of(ctx: click.Context, names: tuple[str, ...], required: bool) -> None:
    """At most one (``required``: exactly one) of ``names`` given on the command line.

    Raises:
        click.UsageError: Two were given, or none where one is required.
    """
    flags = {n: "--" + n.replace("_", "-") for n in names}
    given = [n for n in names if given_on_the_command_line(ctx, n)]
    if len(given) > 1:
        raise click.UsageError(f"{flags[given[0]]} and {flags[given[1]]} cannot go together")
    if required and not given:
        raise click.UsageError(f"give one of {', '.join(flags.values())}")


def run_best(args: SimpleNamespace) -> int:
    """Answer the question the flags ask and print it."""
    _check_experiments(args)
    _check_models(args)
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
    from mlflow_fun.query.answer import check_pair

    check_pair(args.source, args.engine)
    config = resolve_config(args.conf, database=args.database, data_dir=args.data_dir)
    args.database, args.data_dir = config.database, config.data_dir
    if args.source == "table" and args.engine != "spark":
        if args.data_dir is None and args.engine == "pandas":
            raise UsageError("--source table --engine pandas reads the tables under --data-dir")
        if args.data_dir is not None:
            try:
                return _answer_best(args, query, None)
            except tables.TableNotLocalError as e:
                if args.engine == "pandas":
                    raise
                logger.info("asking Spark's metastore: %s", e)
    if args.source == "table":
        spark = spark_tables.table_session(config)
    elif args.engine == "spark":
        spark = spark_tables.spark_session(args.data_dir)
    else:
        spark = None
    return _answer_best(args, query, spark)


def _check_experiments(args: SimpleNamespace) -> None:
    """Check that one flag, or one of MLflow's variables, names the experiments.

    Raises:
        UsageError: Neither a flag nor a variable names them, or both variables do.
    """
    if args.experiment_id and args.experiment_name:  # flags exclude each other: variables
        raise UsageError(
            "MLFLOW_EXPERIMENT_ID and MLFLOW_EXPERIMENT_NAME are both set: unset one, or give "
            "--experiment-id or --experiment-name"
        )
    if not (
        args.experiment_id or args.experiment_name or args.experiment_ids or args.all_experiments
    ):
        raise UsageError(
            "which experiments? give --experiment-id, --experiment-name, --experiment-ids or "
            "--all-experiments (or set MLFLOW_EXPERIMENT_ID or MLFLOW_EXPERIMENT_NAME)"
        )


def _check_models(args: SimpleNamespace) -> None:
    """Check the flags that go with ``--models``, and ``--dataset`` without it.

    Raises:
        UsageError: ``--dataset`` without ``--models``, or ``--models`` with ``--agg`` or
            ``--engine spark``.
    """
    if not args.models:
        if args.dataset is not None:
            raise UsageError("--dataset names the dataset of logged models' metrics: add --models")
        return
    if args.agg is not None:
        raise UsageError("--agg reads runs' metric history; a logged model's metrics have no --agg")
    if args.engine == "spark":
        raise UsageError("--models is answered on pandas: use --engine auto or pandas")


def _answer_best(args: SimpleNamespace, query: BestQuery, spark: Any) -> int:
    """Answer and print ``query``; ``--source table`` without ``spark`` reads Delta directly."""
    from mlflow_fun.query.answer import answer_query, best_single_metric

    experiment_ids = _experiment_ids(args, spark)
    if args.models:
        from mlflow_fun.query.models import answer_models, read_models

        models = read_models(
            args.source,
            experiment_ids,
            tracking_uri=args.tracking_uri,
            connection=args.connection,
            spark=spark,
            database=args.database,
            data_dir=args.data_dir,
        )
        rows = answer_models(models, query, args.dataset, experiment_ids)
    elif (
        query.is_single_metric
        and args.agg is None
        and len(experiment_ids) == 1
        and args.source in ("rest", "api", "db")
        and args.engine == "auto"
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
            engine=args.engine,
            tracking_uri=args.tracking_uri,
            connection=args.connection,
            spark=spark,
            database=args.database,
            data_dir=args.data_dir,
            agg=args.agg,
        )
    names = [k.name for k in (query.order_by or query.pareto)]
    if rows and args.agg:  # the value columns, then each one's step
        names = [names[0], "step"] if len(rows[0].values) == 2 else list(rows[0].values)
    output = args.output or ("tuple" if query.top == 1 and not query.pareto else "table")
    if output == "tuple":
        if not rows:
            where = f" matching {args.where!r}" if args.where else ""
            on = f" on dataset {args.dataset!r}" if args.dataset else ""
            raise MetricNotFoundError(
                f"no {'model' if args.models else 'run'}{where} of experiment(s) "
                f"{', '.join(experiment_ids)} has a value of {', '.join(names)}{on} that is "
                "not NaN"
            )
        print((rows[0].run_id, *list(rows[0].values.values())[: 2 if args.agg else 1]))
        return 0
    header = ["experiment_id", "model_id" if args.models else "run_id", *names]
    print_rows(header, [[r.experiment_id, r.run_id, *r.values.values()] for r in rows], output)
    return 0


def _experiment_ids(args: SimpleNamespace, spark: Any) -> list[str]:
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
    source = open_named_source(
        args.source, tracking_uri=args.tracking_uri, connection=args.connection
    )
    if args.experiment_name is not None:
        return [source.get_experiment_by_name(args.experiment_name).experiment_id]
    return [e.experiment_id for e in source.iter_experiments()]
