"""Answer one best-run query from any source, with the same answer on the same data.

Sources (where runs are read):

- ``rest``: the tracking server's REST API; ``api``: MLflow's Python client; ``db``:
  MLflow's back-end database; ``table``: the job's tables.

Engines (how the answer is computed):

- ``auto``: one metric, no condition, one run: the server (or the database) sorts and
  sends one run. Anything more: runs are pulled (status and metric conditions that MLflow's
  filter can express are sent along to shrink the pull), typed, and the query runs on
  pandas. The tables under a data dir are read with delta-rs, without a JVM.
- ``pandas``: every run pulled into a typed pandas DataFrame; ``spark``: a Spark DataFrame
  (`FastDataframeBuilder` from ``rest``, Spark's tables from ``table``).

Example:
    >>> query = BestQuery(order_by=parse_order_by("rmse"), where="_p_alpha < 0.5", top=3)
    >>> answer_query("rest", ["1"], query, tracking_uri="http://127.0.0.1:5000")
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Sequence
from functools import reduce
from typing import TYPE_CHECKING, Any

from mlflow_fun.errors import ConfigError, UsageError
from mlflow_fun.extract.mlflow_client import MlflowClientSource
from mlflow_fun.extract.open import open_source, resolve_tracking_uri
from mlflow_fun.query.builders import FastDataframeBuilder
from mlflow_fun.query.engine import best_runs, pareto_front
from mlflow_fun.query.model import ENGINES, SOURCES, SPARK_SOURCES, BestQuery, OrderKey, RankedRun
from mlflow_fun.query.server import best_run_by_server, server_filter
from mlflow_fun.query.spark_tables import read_experiment_table
from mlflow_fun.query.steps import (
    check_agg,
    history_from_delta,
    history_from_spark,
    name_steps,
    no_history_message,
    ranked_metric_columns,
    runs_with_metrics,
    with_aggregate,
)
from mlflow_fun.query.tables import TableNotLocalError, UnreadableTableError, read_experiment_frame
from mlflow_fun.transform.flatten import flatten_runs
from mlflow_fun.transform.frames import to_pandas
from mlflow_fun.transform.steps import summarize

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from mlflow_fun.extract.source import RunSource
    from mlflow_fun.model import MetricPoint, RunRecord

logger = logging.getLogger(__name__)

# Where ``--agg`` reads a metric's history: (runs that have the keys, the keys) -> points.
History = Callable[[list["RunRecord"], list[str]], Iterable["MetricPoint"]]


def run_query(frame: Any, query: BestQuery) -> list[RankedRun]:
    """Answer ``query`` on a Spark or pandas run table."""
    if query.pareto:
        return pareto_front(frame, query.pareto, query.where)
    return best_runs(frame, query.order_by, query.where, query.top)


def open_named_source(
    source: str, *, tracking_uri: str | None = None, connection: str | None = None
) -> RunSource:
    """The `RunSource` behind ``rest``, ``api`` or ``db``.

    Raises:
        UsageError: ``db`` without ``connection``.
    """
    if source == "db":
        _check_connection(connection)
        # SQLAlchemy and the database drivers: only for --source db.
        from mlflow_fun.extract.database.source import DatabaseSource

        return DatabaseSource(str(connection))
    if source == "api":
        return MlflowClientSource(resolve_tracking_uri(tracking_uri))
    return open_source(tracking_uri)


def best_single_metric(
    source: str,
    experiment_id: str,
    key: OrderKey,
    *,
    tracking_uri: str | None = None,
    connection: str | None = None,
) -> RankedRun:
    """The best run of one experiment by one metric, sorted by the server or the database.

    ``source`` is ``rest``, ``api`` or ``db``: one call, one run sent back.

    Raises:
        UsageError: ``db`` without ``connection``.
        ExperimentNotFoundError, MetricNotFoundError, TrackingServerError, DatabaseError.
    """
    if source == "db":
        _check_connection(connection)
        # SQLAlchemy and the database drivers: only for --source db.
        from mlflow_fun.query.sql import get_best_run as sql_best_run

        run_id, value = sql_best_run(str(connection), experiment_id, key.name, key.ascending)
    else:
        run_source = open_named_source(source, tracking_uri=tracking_uri)
        run_id, value = best_run_by_server(run_source, experiment_id, key.name, key.ascending)
    return RankedRun(run_id, experiment_id, {key.name: value})


def answer_query(
    source: str,
    experiment_ids: Sequence[str],
    query: BestQuery,
    *,
    engine: str = "auto",
    tracking_uri: str | None = None,
    connection: str | None = None,
    spark: SparkSession | None = None,
    database: str = "mlflow_metrics",
    data_dir: str | None = None,
    agg: str | None = None,
) -> list[RankedRun]:
    """Answer ``query`` over ``experiment_ids`` from ``source`` (`SOURCES`) by ``engine``.

    ``agg`` (``last``, ``min``, ``max``; `mlflow_fun.query.steps`) ranks by each ranked
    metric's value over its whole history, and adds the step of each value.

    ``table`` without ``spark`` reads the Delta tables under ``data_dir`` with delta-rs
    and answers on pandas (`delta_tables`): no JVM. ``table`` with ``spark`` reads them
    through Spark's metastore.

    Raises:
        TableNotLocalError: ``table`` without ``spark``, and a table is not under ``data_dir``
            (or is, but delta-rs does not read it: `UnreadableTableError`).
        UsageError: Unknown source or engine, a pair that does not go together, or a
            setting the source needs is missing.
        ConfigError: ``agg`` with a query that ranks no metric, or ``table`` without history.
        ExperimentNotFoundError, MetricNotFoundError, QueryError, TrackingServerError.
    """
    check_pair(source, engine)
    check_agg(agg)
    ids = list(experiment_ids)
    if source == "table" and spark is None and data_dir is not None:
        frame = _concat([read_experiment_frame(data_dir, database, e) for e in ids])
        return _rank(
            frame, query, agg, lambda runs, keys: _delta_history(data_dir, database, ids, keys)
        )
    if source == "table" or engine == "spark":
        if spark is None:
            raise ConfigError(f"--source {source} --engine {engine} needs a SparkSession")
        frame = _spark_frame(source, ids, spark, tracking_uri, database)
        if source == "table":
            return _rank(
                frame, query, agg, lambda runs, keys: history_from_spark(spark, database, ids, keys)
            )
        run_source = open_named_source(source, tracking_uri=tracking_uri)
        return _rank(frame, query, agg, lambda runs, keys: run_source.iter_metric_history(runs))
    run_source = open_named_source(source, tracking_uri=tracking_uri, connection=connection)
    for experiment_id in ids:
        run_source.get_experiment(experiment_id)
    # With --agg, a condition on a ranked metric is about its aggregate: none is sent along.
    pushed = engine == "auto" and source in ("rest", "api") and agg is None
    frame = _pandas_frame(run_source, ids, query, pushed)
    return _rank(frame, query, agg, lambda runs, keys: run_source.iter_metric_history(runs))


def _rank(frame: Any, query: BestQuery, agg: str | None, history: History) -> list[RankedRun]:
    """`run_query`; with ``agg``, on the ranked metrics' aggregates from ``history``, with steps.

    Raises:
        ConfigError: ``agg`` is given and the query ranks no metric.
    """
    if agg is None:
        return run_query(frame, query)
    columns = ranked_metric_columns(frame, query)
    if not columns:
        names = ", ".join(key.name for key in query.order_by or query.pareto)
        raise ConfigError(f"--agg {agg} ranks runs by a metric's history; {names} is no metric")
    runs = runs_with_metrics(frame, columns)
    summaries = summarize(history(runs, sorted(set(columns.values()))))
    rows = run_query(with_aggregate(frame, summaries, columns, agg), query)
    return name_steps(rows, summaries, columns, agg)


def _delta_history(
    data_dir: str, database: str, ids: Sequence[str], keys: Sequence[str]
) -> list[MetricPoint]:
    try:
        return list(history_from_delta(data_dir, database, ids, keys))
    except UnreadableTableError:
        raise  # there, but for Spark to read
    except TableNotLocalError as e:
        raise ConfigError(no_history_message(database)) from e


def check_pair(source: str, engine: str) -> None:
    """Check that ``engine`` can answer from ``source``.

    Raises:
        UsageError: Either is unknown, or ``spark`` with a source it cannot read.
    """
    if source not in SOURCES:
        raise UsageError(f"--source {source!r} is not one of: {', '.join(SOURCES)}")
    if engine not in ENGINES:
        raise UsageError(f"--engine {engine!r} is not one of: {', '.join(ENGINES)}")
    if engine == "spark" and source not in SPARK_SOURCES:
        raise UsageError(
            f"--engine spark reads --source {' or '.join(SPARK_SOURCES)}, not {source}: "
            "use --engine pandas (or auto)"
        )


def _check_connection(connection: str | None) -> None:
    if not connection:
        raise UsageError("--source db needs --connection (an SQLAlchemy URL) or MLFLOW_FUN_DB_URL")


def _pandas_frame(
    run_source: RunSource, experiment_ids: Sequence[str], query: BestQuery, pushed: bool
) -> Any:
    filters = server_filter(query.where) if pushed else ""

    def pull(filter_string: str) -> Any:
        return flatten_runs(
            run
            for experiment_id in experiment_ids
            for run in run_source.iter_runs(experiment_id, filter_string=filter_string)
        )

    flat = pull(filters)
    if filters and not _filter_columns_match(flat, query.where):
        logger.info("pushed-down filter named a renamed column; pulling again without it")
        flat = pull("")
    return to_pandas(flat)


def _spark_frame(
    source: str,
    experiment_ids: Sequence[str],
    spark: SparkSession,
    tracking_uri: str | None,
    database: str,
) -> Any:
    if source == "table":
        frames = [read_experiment_table(spark, database, e) for e in experiment_ids]
    else:
        builder = FastDataframeBuilder(spark, tracking_uri)
        frames = [builder.build_dataframe(e) for e in experiment_ids]
    return reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), frames)


def _concat(frames: Sequence[Any]) -> Any:
    """One pandas run table of several experiments' (columns missing in one are NULL)."""
    import pandas as pd

    if len(frames) == 1:
        return frames[0]
    df = pd.concat(frames, ignore_index=True)
    df.attrs["mlflow_keys"] = {k: v for f in frames for k, v in f.attrs["mlflow_keys"].items()}
    return df


def _filter_columns_match(flat: Any, where: str | None) -> bool:
    """True when every ``_m_<key>`` the pushed filter used is the column of metric <key>.

    Not so when a case collision renamed the column, or when no pulled run has the key
    (then the column the condition names may exist under another key, or not at all).
    """
    names = flat.names_by_key()
    keys = re.findall(r"metrics\.`([^`]+)`", server_filter(where))
    return all(names.get(("metric", key)) == f"_m_{key}" for key in keys)
