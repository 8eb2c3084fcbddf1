"""One query model for every source: filter, order by one or more columns, top K, Pareto.

Works on the run tables mlflow-fun builds, as Spark or pandas DataFrames, with the same
answers on both:

    >>> best_runs(df, order_by="rmse asc, mae asc", where="_p_alpha < 0.5", top=3)
    [RankedRun(run_id='…', experiment_id='1', values={'_m_rmse': 0.74, '_m_mae': 0.58}), …]
    >>> pareto_front(df, {"rmse": "min", "r2": "max"})

Rules: a metric is named by its key (``rmse``) or column (``_m_rmse``), any other column
by its column name. A run with NULL or NaN in any ordering or Pareto column is skipped.
Ties go to the earliest ``start_time``, then the smallest ``run_id`` (for a table of logged
models, `MODELS`: the earliest ``creation_time``, then the smallest ``model_id``). The
Pareto front is every run that no other run beats on every listed metric (at least as good
on all, strictly better on one); it is listed in the order of the first metric.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlflow_fun.errors import ConfigError, MetricNotFoundError
from mlflow_fun.query.condition import (
    BOOLEAN,
    NUMBER,
    STRING,
    TIMESTAMP,
    parse_condition,
    to_pandas_mask,
    to_spark,
)
from mlflow_fun.query.mlflow_words import ATTRIBUTES, mlflow_reference
from mlflow_fun.query.model import OrderKey, RankedRun, parse_order_by
from mlflow_fun.transform.frames import column_keys
from mlflow_fun.transform.naming import INFO, quote_identifier

# pyspark: the optional [spark] extra, imported inside the functions that use it.
if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame as SparkDataFrame


@dataclass(frozen=True)
class Entity:
    """What a table's rows are: the column naming each row and the column that breaks ties
    (earliest first, before the id)."""

    id_column: str
    time_column: str


RUNS = Entity("run_id", "start_time")
MODELS = Entity("model_id", "creation_time")


def best_runs(
    df: Any,
    order_by: str | Sequence[OrderKey],
    where: str | None = None,
    top: int = 1,
    entity: Entity = RUNS,
) -> list[RankedRun]:
    """The ``top`` best runs of a Spark or pandas run table.

    Example:
        >>> best_runs(df, "rmse asc, mae asc", where="_p_alpha < 0.5 or _m_r2 > 0.3", top=3)

    Args:
        df: A table built by mlflow-fun (Spark or pandas DataFrame).
        order_by: ``"rmse asc, mae asc"`` or `OrderKey` items, most important first.
        where: A condition (see `mlflow_fun.query.condition`), or None.
        top: How many runs.
        entity: `RUNS`, or `MODELS` for a table of logged models (its ``model_id`` in
            `RankedRun.run_id`).

    Raises:
        MetricNotFoundError: An ordering name is not a column of ``df``.
        QueryError: The condition is wrong.
    """
    keys = parse_order_by(order_by) if isinstance(order_by, str) else tuple(order_by)
    if not keys:
        raise ConfigError("order_by names no column")
    if top < 1:
        raise ConfigError(f"top={top} must be at least 1")
    table = _Table.of(df, entity)
    columns = [table.resolve(key.name) for key in keys]
    rows = table.ranked(columns, [k.ascending for k in keys], where, top)
    return [RankedRun(r[0], r[1], dict(zip(columns, r[3:], strict=True))) for r in rows]


def pareto_front(
    df: Any,
    objectives: Mapping[str, str] | str | Sequence[OrderKey],
    where: str | None = None,
    entity: Entity = RUNS,
) -> list[RankedRun]:
    """The runs that no other run beats on every objective.

    Example:
        >>> pareto_front(df, {"rmse": "min", "r2": "max"})

    Args:
        df: A table built by mlflow-fun (Spark or pandas DataFrame).
        objectives: metric -> ``min``/``max``, or ``"rmse min, r2 max"``.
        where: A condition, or None.
        entity: `RUNS` or `MODELS`, as in `best_runs`.
    """
    if isinstance(objectives, str):
        keys = parse_order_by(objectives, ("min", "max"))
    elif isinstance(objectives, Mapping):
        keys = tuple(
            parse_order_by(f"{name} {direction}", ("min", "max"))[0]
            for name, direction in objectives.items()
        )
    else:
        keys = tuple(objectives)
    if not keys:
        raise ConfigError("a Pareto front needs at least one metric")
    table = _Table.of(df, entity)
    columns = [table.resolve(key.name) for key in keys]
    directions = [k.ascending for k in keys]
    rows = table.ranked(columns, directions, where, None)
    front = pareto_rows(rows, directions)
    return [RankedRun(r[0], r[1], dict(zip(columns, r[3:], strict=True))) for r in front]


def metric_columns(df: Any, names: Sequence[str]) -> dict[str, str]:
    """Column -> MLflow key of the metrics among ``names`` (keys or columns) in ``df``.

    Raises:
        MetricNotFoundError: A name is not a column of ``df``.
    """
    table = _Table.of(df)
    columns = {}
    for name in names:
        column = table.resolve(name)
        kind, key = table.keys.get(column, ("", ""))
        if kind == "metric":
            columns[column] = key
    return columns


def pareto_rows(
    rows: Sequence[tuple[Any, ...]], ascending: Sequence[bool]
) -> list[tuple[Any, ...]]:
    """The non-dominated rows of ``rows`` (already sorted best-first, values from index 3).

    Every dominator of a row sorts before it, so one pass against the front so far is
    enough.
    """
    signs = [1.0 if a else -1.0 for a in ascending]
    front: list[tuple[Any, ...]] = []
    vectors: list[list[float]] = []
    for row in rows:
        vector = [s * float(v) for s, v in zip(signs, row[3:], strict=True)]
        dominated = any(
            all(q <= p for q, p in zip(other, vector, strict=True)) and other != vector
            for other in vectors
        )
        if not dominated:
            front.append(row)
            vectors.append(vector)
    return front


class _Table(abc.ABC):
    """A Spark or pandas run table behind one small interface."""

    def __init__(self, df: Any, columns: Mapping[str, str], keys: Mapping[str, tuple[str, str]]):
        self.df = df
        self.columns = columns  # column name -> family
        self.keys = keys  # column name -> (kind, MLflow key)
        self.entity = RUNS

    @staticmethod
    def of(df: Any, entity: Entity = RUNS) -> _Table:
        import pandas as pd

        table: _Table = (
            _PandasTable.wrap(df) if isinstance(df, pd.DataFrame) else _SparkTable.wrap(df)
        )
        table.entity = entity
        return table

    def resolve(self, name: str) -> str:
        for column in self.columns:
            if column == name:
                return column
        reference = mlflow_reference(name)
        if reference is not None:
            for column, kind_key in self.keys.items():
                if kind_key == reference:
                    return column
            if reference[0] == INFO and ATTRIBUTES.get(reference[1].lower()) in self.columns:
                return ATTRIBUTES[reference[1].lower()]
        for column, (kind, key) in self.keys.items():
            if kind == "metric" and key == name:
                return column
        lowered = {c.lower(): c for c in self.columns}
        if name.lower() in lowered:
            return lowered[name.lower()]
        metrics = sorted(key for kind, key in self.keys.values() if kind == "metric")
        raise MetricNotFoundError(
            f"{name!r} is neither a metric nor a column; metrics: {', '.join(metrics) or 'none'}"
        )

    @abc.abstractmethod
    def ranked(
        self, columns: list[str], ascending: list[bool], where: str | None, top: int | None
    ) -> list[tuple[Any, ...]]:
        """Rows ``(id, experiment_id, time, *values)`` best first (`Entity`'s columns)."""


class _PandasTable(_Table):
    @staticmethod
    def wrap(df: pd.DataFrame) -> _PandasTable:
        import pandas as pd

        families = {}
        for name, dtype in df.dtypes.items():
            if pd.api.types.is_bool_dtype(dtype):
                families[str(name)] = BOOLEAN
            elif pd.api.types.is_numeric_dtype(dtype):
                families[str(name)] = NUMBER
            elif pd.api.types.is_datetime64_any_dtype(dtype):
                families[str(name)] = TIMESTAMP
            else:
                families[str(name)] = STRING
        return _PandasTable(df, families, dict(df.attrs.get("mlflow_keys", {})))

    def ranked(
        self, columns: list[str], ascending: list[bool], where: str | None, top: int | None
    ) -> list[tuple[Any, ...]]:
        df = self.df
        if where:
            df = df[to_pandas_mask(parse_condition(where, self.columns, self.keys), df)]
        present = df[columns].apply(
            lambda s: s.astype("Float64") if self.columns[s.name] == NUMBER else s
        )
        df = df[present.notna().all(axis=1)]
        id_column, time_column = self.entity.id_column, self.entity.time_column
        ordered = df.sort_values(
            [*columns, time_column, id_column],
            ascending=[*ascending, True, True],
            na_position="last",
            kind="mergesort",
        )
        if top is not None:
            ordered = ordered.head(top)
        return [
            (str(row[id_column]), str(row["experiment_id"]), row[time_column])
            + tuple(_plain(row[c]) for c in columns)
            for _, row in ordered.iterrows()
        ]


class _SparkTable(_Table):
    @staticmethod
    def wrap(df: SparkDataFrame) -> _SparkTable:
        from pyspark.sql import types as T

        families = {}
        for field in df.schema.fields:
            data_type = field.dataType
            if isinstance(data_type, T.BooleanType):
                families[field.name] = BOOLEAN
            elif isinstance(data_type, T.NumericType):
                families[field.name] = NUMBER
            elif isinstance(data_type, (T.TimestampType, T.TimestampNTZType)):
                families[field.name] = TIMESTAMP
            else:
                families[field.name] = STRING
        return _SparkTable(df, families, column_keys(df.schema))

    def ranked(
        self, columns: list[str], ascending: list[bool], where: str | None, top: int | None
    ) -> list[tuple[Any, ...]]:
        from pyspark.sql import functions as F
        from pyspark.sql import types as T

        df = self.df
        doubles = frozenset(
            f.name for f in df.schema.fields if isinstance(f.dataType, (T.DoubleType, T.FloatType))
        )
        if where:
            df = df.where(to_spark(parse_condition(where, self.columns, self.keys), doubles))
        for column in columns:
            value = F.col(quote_identifier(column))
            present = value.isNotNull()
            if column in doubles:
                present = present & ~F.isnan(value)
            df = df.where(present)
        order = [
            F.col(quote_identifier(c)).asc() if a else F.col(quote_identifier(c)).desc()
            for c, a in zip(columns, ascending, strict=True)
        ]
        id_column, time_column = self.entity.id_column, self.entity.time_column
        df = df.orderBy(*order, F.col(time_column).asc_nulls_last(), F.col(id_column).asc())
        if top is not None:
            df = df.limit(top)
        selected = df.select(
            id_column, "experiment_id", time_column, *[quote_identifier(c) for c in columns]
        )
        return [(r[0], r[1], r[2], *(_plain(v) for v in r[3:])) for r in selected.collect()]


def _plain(value: Any) -> Any:
    """Python scalars for answers: numpy and pandas values become int/float/str/bool."""
    if value is None:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def best_run_of(df: Any, column: str, ascending: bool = True) -> tuple[str, float] | None:
    """``(run_id, value)`` of the best non-NaN ``column`` of a Spark or pandas run table.

    The rules of `best_runs` (NULL and NaN skipped, ties to the earliest ``start_time``,
    then the smallest ``run_id``); None when no run has a value.

    Example:
        >>> best_run_of(df, "_m_rmse")
        ('5f0c…', 0.7223)
    """
    rows = _Table.of(df).ranked([column], [ascending], None, 1)
    return (str(rows[0][0]), float(rows[0][3])) if rows else None
