"""Flatten runs into one typed, column-oriented table: pure logic, no I/O, no Spark.

One row per run, sorted by ``start_time`` then ``run_id``. Columns: the info columns,
then ``_m_<key>`` (DOUBLE, latest value), ``_p_<key>`` (typed by
`mlflow_fun.transform.typing_rules`), ``_t_<key>`` (STRING), each group ordered by column name.
A run without a key has NULL there. Column names follow `mlflow_fun.transform.naming`.

The table converts to Arrow (`to_arrow`), from which the Spark and pandas builders are made
without a per-row Python loop.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from mlflow_fun.errors import MetricNotFoundError
from mlflow_fun.model import RunRecord
from mlflow_fun.transform.naming import (
    INFO,
    INFO_COLUMN_NAMES,
    METRIC,
    PARAM,
    TAG,
    ColumnKey,
    assign_column_names,
)
from mlflow_fun.transform.typing_rules import ColumnType, convert_param, infer_param_type

INFO_TYPES: dict[str, ColumnType] = {
    name: ("timestamp" if name in ("start_time", "end_time") else "string")
    for name in INFO_COLUMN_NAMES
}
ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int": pa.int32(),
    "bigint": pa.int64(),
    "double": pa.float64(),
    "boolean": pa.bool_(),
    "timestamp": pa.timestamp("ms", tz="UTC"),
}
METADATA_KEY = "mlflow_key"
METADATA_KIND = "mlflow_kind"


@dataclass(frozen=True)
class Column:
    """One column of a flattened experiment.

    Attributes:
        name: The column name.
        kind: ``info``, ``metric``, ``param`` or ``tag``.
        key: The MLflow key (for info columns, the info field).
        type: The column type.
    """

    name: str
    kind: str
    key: str
    type: ColumnType


@dataclass(frozen=True)
class FlatRuns:
    """Runs flattened to columns. Timestamps are epoch milliseconds until `to_arrow`.

    Attributes:
        columns: The columns, in table order.
        data: column name -> one value per run, in row order.
    """

    columns: tuple[Column, ...]
    data: Mapping[str, Sequence[Any]]

    @property
    def num_rows(self) -> int:
        """Number of runs."""
        return len(self.data["run_id"])

    def column(self, name: str) -> Column:
        """Return the column called ``name`` (exact name)."""
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    def names_by_key(self) -> dict[ColumnKey, str]:
        """``(kind, key)`` -> column name, for metric, param and tag columns."""
        return {(c.kind, c.key): c.name for c in self.columns if c.kind != INFO}


def flatten_runs(
    runs: Iterable[RunRecord],
    previous_names: Mapping[ColumnKey, str] | None = None,
    *,
    reserve_previous: bool = False,
    param_types: Mapping[str, ColumnType] | None = None,
) -> FlatRuns:
    """Flatten runs into typed columns.

    Example:
        >>> flat = flatten_runs(source.iter_runs("1"))
        >>> flat.column("_p_alpha").type
        'double'

    Args:
        runs: The runs, e.g. a generator over ``runs/search`` pages.
        previous_names: Column names of an earlier load, kept where the key is present.
        reserve_previous: Keep every name of ``previous_names`` taken, even for keys
            absent from ``runs`` (for runs merged into an existing table).
        param_types: Types to use for these param keys instead of inferring them.

    Returns:
        The flattened table.
    """
    ordered = sorted(
        runs,
        key=lambda r: (r.info.get("start_time") is None, r.info.get("start_time") or 0, r.run_id),
    )
    metric_keys = {key for run in ordered for key in run.metrics}
    param_keys = {key for run in ordered for key in run.params}
    tag_keys = {key for run in ordered for key in run.tags}
    wanted = (
        [(METRIC, k) for k in metric_keys]
        + [(PARAM, k) for k in param_keys]
        + [(TAG, k) for k in tag_keys]
    )
    if reserve_previous and previous_names:
        wanted += list(previous_names)
    names = assign_column_names(wanted, previous_names)
    columns = [Column(name, INFO, name, INFO_TYPES[name]) for name in INFO_COLUMN_NAMES]
    data: dict[str, Sequence[Any]] = {
        "run_id": [r.run_id for r in ordered],
        "run_uuid": [r.run_id for r in ordered],
        "run_name": [r.info.get("run_name") or r.tags.get("mlflow.runName") for r in ordered],
    }
    for name in INFO_COLUMN_NAMES[3:]:
        data[name] = [r.info.get(name) for r in ordered]

    for kind, keys in ((METRIC, metric_keys), (PARAM, param_keys), (TAG, tag_keys)):
        group = sorted(((names[(kind, k)], k) for k in keys), key=lambda nk: nk[0].lower())
        for name, key in group:
            if kind == METRIC:
                data[name] = [r.metrics.get(key) for r in ordered]
                columns.append(Column(name, kind, key, "double"))
            elif kind == PARAM:
                raw = [r.params.get(key) for r in ordered]
                param_type = (param_types or {}).get(key) or infer_param_type(raw)
                data[name] = [convert_param(v, param_type) for v in raw]
                columns.append(Column(name, kind, key, param_type))
            else:
                data[name] = [r.tags.get(key) for r in ordered]
                columns.append(Column(name, kind, key, "string"))
    return FlatRuns(tuple(columns), data)


def keep_column_order(flat: FlatRuns, existing: Sequence[str]) -> FlatRuns:
    """Reorder ``flat``: the columns named in ``existing`` first, in that order, then the
    others in their own order (new keys go after the columns a table already has)."""
    by_name = {c.name: c for c in flat.columns}
    first = [by_name[name] for name in existing if name in by_name]
    placed = {c.name for c in first}
    rest = [c for c in flat.columns if c.name not in placed]
    return FlatRuns(tuple(first + rest), flat.data)


def to_arrow(flat: FlatRuns) -> pa.Table:
    """Convert to an Arrow table; each field carries ``mlflow_key`` and ``mlflow_kind``, and
    the key as its ``comment`` (what a table written from it shows, as `spark_schema`)."""
    fields = [
        pa.field(
            c.name,
            ARROW_TYPES[c.type],
            metadata={"comment": c.key, METADATA_KEY: c.key, METADATA_KIND: c.kind},
        )
        for c in flat.columns
    ]
    arrays = [pa.array(flat.data[c.name], type=ARROW_TYPES[c.type]) for c in flat.columns]
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def resolve_metric(columns: Iterable[Column], metric: str, experiment_id: str) -> Column:
    """Find the column of ``metric``, given as a key (``rmse``) or a column (``_m_rmse``).

    Raises:
        MetricNotFoundError: No metric column matches; the message lists the metrics.
    """
    metrics = [c for c in columns if c.kind == METRIC]
    for column in metrics:
        if column.key == metric:
            return column
    for column in metrics:
        if column.name == metric:
            return column
    known = ", ".join(sorted(c.key for c in metrics)) or "none"
    raise MetricNotFoundError(
        f"metric {metric!r} not found in experiment {experiment_id}; its metrics: {known}"
    )
