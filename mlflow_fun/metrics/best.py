"""Answer one best-run query from any source, with the same answer on the same data.

Sources:

- ``rest``: the tracking server's REST API; ``api``: MLflow's Python client; ``sql``:
  MLflow's back-end database. One metric, no condition, one run: the server (or the
  database) sorts and sends one run. Anything more: runs are pulled (status and metric
  conditions that MLflow's filter can express are sent along to shrink the pull), typed,
  and the whole query runs on pandas.
- ``pandas``: `PandasDataframeBuilder`; ``spark``: `FastDataframeBuilder`; ``table``: the
  job's tables. The query runs on the DataFrame.

Example:
    >>> query = BestQuery(order_by=parse_order_by("rmse"), where="_p_alpha < 0.5", top=3)
    >>> answer_query("rest", ["1"], query, tracking_uri="http://127.0.0.1:5000")
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlflow_fun.errors import ConfigError
from mlflow_fun.metrics.query import OrderKey, RankedRun, best_runs, pareto_front

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from mlflow_fun.client.sources import RunSource

logger = logging.getLogger(__name__)

SOURCES = ("rest", "api", "sql", "pandas", "spark", "table")


@dataclass(frozen=True)
class BestQuery:
    """What "best" means: an order (or a Pareto front), a condition, how many runs."""

    order_by: tuple[OrderKey, ...] = ()
    pareto: tuple[OrderKey, ...] = ()
    where: str | None = None
    top: int = 1

    def __post_init__(self) -> None:
        if bool(self.order_by) == bool(self.pareto):
            raise ConfigError("give either an order (--metric or --order-by) or --pareto")
        if self.top < 1:
            raise ConfigError(f"--top {self.top} must be at least 1")

    @property
    def is_single_metric(self) -> bool:
        """One metric, no condition, one run: the server can answer it by itself."""
        return len(self.order_by) == 1 and self.where is None and self.top == 1


def run_query(frame: Any, query: BestQuery) -> list[RankedRun]:
    """Answer ``query`` on a Spark or pandas run table."""
    if query.pareto:
        return pareto_front(frame, query.pareto, query.where)
    return best_runs(frame, query.order_by, query.where, query.top)


def open_named_source(
    source: str, *, tracking_uri: str | None = None, connection: str | None = None
) -> RunSource:
    """The `RunSource` behind ``rest``, ``api``, ``sql`` (and ``pandas``/``spark``)."""
    from mlflow_fun.client.sources import MlflowClientSource, open_source, resolve_tracking_uri

    if source == "sql":
        if not connection:
            raise ConfigError("--source sql needs --connection (an SQLAlchemy URL)")
        from mlflow_fun.client.db_source import DatabaseSource

        return DatabaseSource(connection)
    if source == "api":
        return MlflowClientSource(resolve_tracking_uri(tracking_uri))
    return open_source(tracking_uri)


def answer_query(
    source: str,
    experiment_ids: Sequence[str],
    query: BestQuery,
    *,
    tracking_uri: str | None = None,
    connection: str | None = None,
    spark: SparkSession | None = None,
    database: str = "mlflow_metrics",
    data_dir: str | None = None,
) -> list[RankedRun]:
    """Answer ``query`` over ``experiment_ids`` from ``source`` (one of `SOURCES`).

    ``table`` without ``spark`` reads the Delta tables under ``data_dir`` with delta-rs
    and answers on pandas (`delta_tables`): no JVM.

    Raises:
        TableNotLocalError: ``table`` without ``spark``, and a table is not under ``data_dir``.
        ConfigError: Unknown source, or a setting the source needs is missing.
        ExperimentNotFoundError, MetricNotFoundError, QueryError, TrackingServerError.
    """
    if source not in SOURCES:
        raise ConfigError(f"source {source!r} is not one of: {', '.join(SOURCES)}")
    if source == "table" and spark is None and data_dir is not None:
        from mlflow_fun.metrics.delta_tables import read_experiment_frame

        frames = [read_experiment_frame(data_dir, database, e) for e in experiment_ids]
        return run_query(_concat(frames), query)
    if source in ("spark", "table"):
        if spark is None:
            raise ConfigError(f"--source {source} needs a SparkSession")
        return run_query(_spark_frame(source, experiment_ids, spark, tracking_uri, database), query)
    run_source = open_named_source(source, tracking_uri=tracking_uri, connection=connection)
    for experiment_id in experiment_ids:
        run_source.get_experiment(experiment_id)
    return run_query(_pandas_frame(run_source, experiment_ids, query, source), query)


def _pandas_frame(
    run_source: RunSource, experiment_ids: Sequence[str], query: BestQuery, source: str
) -> Any:
    from mlflow_fun.flatten import flatten_runs
    from mlflow_fun.metrics.pandas.dataframe_builder import to_pandas

    filters = server_filter(query.where) if source in ("rest", "api") else ""

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
    from functools import reduce

    if source == "table":
        from mlflow_fun.metrics.spark.table_queries import read_experiment_table

        frames = [read_experiment_table(spark, database, e) for e in experiment_ids]
    else:
        from mlflow_fun.metrics.spark.dataframe_builder import FastDataframeBuilder

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


# MLflow's filter can say: a metric compared with a number, an attribute equal to a string.
_PUSHABLE_ATTRIBUTES = {"status": "status", "run_name": "run_name", "user_id": "user_id"}


def server_filter(where: str | None) -> str:
    """The part of ``where`` that MLflow's search filter can express, or ``""``.

    Only ``AND``-ed comparisons ``_m_<key> <op> <number>`` and ``<attribute> = '<text>'``
    are sent; the whole condition still runs after typing, so this only shrinks the pull.

    Example:
        >>> server_filter("_m_r2 > 0.1 and status = 'FINISHED' and (_p_a < 1 or _m_x = 2)")
        "metrics.`r2` > 0.1 and attributes.status = 'FINISHED'"
    """
    if not where:
        return ""
    import sqlglot
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(where, dialect="spark")
    except sqlglot.errors.ParseError:
        return ""
    conjuncts = list(tree.flatten()) if isinstance(tree, exp.And) else [tree]
    symbols: dict[type, str] = {
        exp.GT: ">",
        exp.GTE: ">=",
        exp.LT: "<",
        exp.LTE: "<=",
        exp.EQ: "=",
        exp.NEQ: "!=",
    }
    parts = []
    for conjunct in conjuncts:
        symbol = symbols.get(type(conjunct))
        left, right = conjunct.this, conjunct.expression
        if symbol is None or not isinstance(left, exp.Column) or left.table:
            continue
        if not isinstance(right, (exp.Literal, exp.Neg)):
            continue
        name = left.name
        if name.startswith("_m_") and not _is_string(right) and _plain_key(name[3:]):
            parts.append(f"metrics.`{name[3:]}` {symbol} {right.sql()}")
        elif (
            name.lower() in _PUSHABLE_ATTRIBUTES
            and symbol in ("=", "!=")
            and _is_string(right)
            and "'" not in right.this
        ):
            parts.append(f"attributes.{_PUSHABLE_ATTRIBUTES[name.lower()]} {symbol} '{right.this}'")
    return " and ".join(parts)


def _is_string(node: Any) -> bool:
    from sqlglot import exp

    return isinstance(node, exp.Literal) and bool(node.is_string)


def _plain_key(key: str) -> bool:
    return bool(key) and all(ch.isascii() and (ch.isalnum() or ch == "_") for ch in key)


def _filter_columns_match(flat: Any, where: str | None) -> bool:
    """True when every ``_m_<key>`` the pushed filter used is the column of metric <key>.

    Not so when a case collision renamed the column, or when no pulled run has the key
    (then the column the condition names may exist under another key, or not at all).
    """
    import re

    names = flat.names_by_key()
    keys = re.findall(r"metrics\.`([^`]+)`", server_filter(where))
    return all(names.get(("metric", key)) == f"_m_{key}" for key in keys)
