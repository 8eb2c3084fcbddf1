"""Compare a job table with what MLflow's ``search_runs`` returned, value for value."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from mlflow_fun.transform.frames import column_keys
from mlflow_fun.transform.typing_rules import convert_param

_KINDS = {"metric": "metrics", "param": "params", "tag": "tags"}
_PARAM_TYPES = {"int": "int", "bigint": "bigint", "double": "double", "boolean": "boolean"}


def assert_table_equals_runs(table: Any, runs: Sequence[Mapping[str, Any]]) -> int:
    """Assert that the Spark table ``table`` holds exactly ``runs``; return the cells checked.

    ``runs``: one mapping per run with ``run_id`` and ``metrics``, ``params``, ``tags``
    (key -> value, as MLflow's client returns them). Every key is a column; a run without
    a key has NULL there; metrics equal (NaN as NaN), params equal once typed by the
    column's type (`convert_param`), tags equal as strings.
    """
    keys = column_keys(table.schema)
    types = {f.name: f.dataType.simpleString() for f in table.schema.fields}
    rows = {r["run_id"]: r.asDict() for r in table.collect()}
    assert sorted(rows) == sorted(run["run_id"] for run in runs)
    expected_keys = {(kind, key) for run in runs for kind in _KINDS for key in run[_KINDS[kind]]}
    assert set(keys.values()) == expected_keys
    checked = 0
    for run in runs:
        row = rows[run["run_id"]]
        for column, (kind, key) in keys.items():
            ours, theirs = row[column], run[_KINDS[kind]].get(key)
            if kind == "metric":
                if theirs is None:
                    assert ours is None, (column, ours)
                elif math.isnan(theirs):
                    assert ours is not None and math.isnan(ours), (column, ours)
                else:
                    assert ours == theirs, (column, ours, theirs)
            elif kind == "param":
                kind_of_column = _PARAM_TYPES.get(types[column], "string")
                typed = None if theirs is None else convert_param(theirs, kind_of_column)  # type: ignore[arg-type]
                same = ours == typed or (
                    isinstance(ours, float) and isinstance(typed, float) and math.isnan(ours)
                    and math.isnan(typed)
                )  # fmt: skip
                assert same, (column, ours, theirs)
            else:
                assert ours == theirs, (column, ours, theirs)
            checked += 1
    return checked
