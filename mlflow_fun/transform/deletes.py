"""Deleted runs without a rewrite: when taking their rows out leaves a table equal to a
full refresh.

A full refresh has a column for a key only while some run has that key, and types each
param column from the values of the runs it holds (`mlflow_fun.transform.typing_rules`).
Deleting runs can therefore drop a column (the deleted run held the only ``_p_beta``) or
narrow a type (it held the only ``0.5`` of an otherwise integer ``alpha``). Then the table
must be rewritten; otherwise deleting the rows is enough. `rewrite_reason` tells the two
apart from the keys and distinct param values of the runs that stay.

Reading those from a subset of the runs that stay is safe: a type can only be narrower
and a key only missing, so a subset can ask for a rewrite that was not needed, never
miss one that was.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from mlflow_fun.transform.naming import PARAM, ColumnKey
from mlflow_fun.transform.typing_rules import ColumnType, infer_param_type

KeyValue = tuple[str, str, str | None]
"""``(kind, key, value)``: a metric or tag key (value None), or one distinct param value."""


def rewrite_reason(
    columns: Mapping[ColumnKey, ColumnType], remaining: Iterable[KeyValue]
) -> str | None:
    """Why deleting runs needs a rewrite of the table, or None when deleting rows is enough.

    Example:
        >>> columns = {("param", "alpha"): "int", ("metric", "rmse"): "double"}
        >>> rewrite_reason(columns, [("param", "alpha", "1"), ("metric", "rmse", None)]) is None
        True
        >>> rewrite_reason(columns, [("param", "alpha", "1")])
        "no run left has metric 'rmse': its column goes"

    Args:
        columns: ``(kind, key)`` -> type of every metric, param and tag column of the
            table once the pulled runs are merged.
        remaining: The keys and distinct param values of the runs that stay.
    """
    keys: set[ColumnKey] = set()
    values: dict[str, set[str | None]] = {}
    for kind, key, value in remaining:
        keys.add((kind, key))
        if kind == PARAM:
            values.setdefault(key, set()).add(value)
    gone = sorted(set(columns) - keys)
    if gone:
        kind, key = gone[0]
        more = f" (and {len(gone) - 1} more)" if len(gone) > 1 else ""
        return f"no run left has {kind} {key!r}{more}: its column goes"
    unknown = sorted(keys - set(columns))
    if unknown:  # the merged table has a column for every key: a stale read, so rewrite
        return f"{unknown[0][0]} {unknown[0][1]!r} has no column"
    for (kind, key), column_type in sorted(columns.items()):
        if kind == PARAM:
            typed = infer_param_type(values[key])
            if typed != column_type:
                return f"param {key!r} would be {typed}, not {column_type}"
    return None
