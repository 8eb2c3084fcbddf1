"""Typing of MLflow params, which MLflow stores as strings.

Per experiment and per key, over all values of that key:

- every value an integer -> ``int`` (``bigint`` if any falls outside 32 bits);
- every value a number (integers, decimals, exponents, ``nan``, ``inf``) -> ``double``;
  an integer too large for 64 bits makes the column ``double`` by this rule;
- every value ``true``/``false`` (any case) -> ``boolean``;
- anything else -> ``string``.

For the numeric and boolean rules the values ``""``, ``None`` and ``null`` (any case)
count as missing and load as NULL. A key with no other value is ``string``, and a
``string`` column keeps every value exactly as MLflow stores it. Numbers are matched
strictly: no surrounding spaces, no ``1_000``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Literal

ColumnType = Literal["string", "int", "bigint", "double", "boolean", "timestamp"]

MISSING_VALUES = frozenset({"", "none", "null"})
_INT = re.compile(r"[+-]?\d+")
_DOUBLE = re.compile(
    r"[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|inf|infinity)|nan",
    re.IGNORECASE,
)
_BOOLEANS = {"true": True, "false": False}
_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)


def is_missing(value: str | None) -> bool:
    """True for None and for ``""``, ``None``, ``null`` in any case."""
    return value is None or value.lower() in MISSING_VALUES


def infer_param_type(values: Iterable[str | None]) -> ColumnType:
    """Return the type of a param column from all of its values.

    Example:
        >>> infer_param_type(["1", "2", ""])
        'int'
        >>> infer_param_type(["1", "0.5", "nan"])
        'double'
        >>> infer_param_type(["1", "abc"])
        'string'
    """
    present = [v for v in values if v is not None and v.lower() not in MISSING_VALUES]
    if not present:
        return "string"
    if all(_INT.fullmatch(v) for v in present):
        numbers = [int(v) for v in present]
        low, high = min(numbers), max(numbers)
        if _INT32[0] <= low and high <= _INT32[1]:
            return "int"
        if _INT64[0] <= low and high <= _INT64[1]:
            return "bigint"
        return "double"
    if all(_DOUBLE.fullmatch(v) for v in present):
        return "double"
    if all(v.lower() in _BOOLEANS for v in present):
        return "boolean"
    return "string"


def convert_param(value: str | None, column_type: ColumnType) -> str | int | float | bool | None:
    """Convert one param value to ``column_type`` (as chosen by `infer_param_type`).

    Example:
        >>> convert_param("1e-3", "double")
        0.001
        >>> convert_param("null", "int") is None
        True
    """
    if value is None:
        return None
    if column_type == "string":
        return value
    if is_missing(value):
        return None
    if column_type in ("int", "bigint"):
        return int(value)
    if column_type == "double":
        return float(value)
    if column_type == "boolean":
        return _BOOLEANS[value.lower()]
    raise ValueError(f"params are never typed {column_type!r}")


def widened_type(existing: ColumnType, values: Iterable[str | None]) -> ColumnType | None:
    """The type of a column typed ``existing`` once ``values`` are added to it, when that
    follows from ``existing`` alone; None when only all the old values could tell.

    Used by the incremental refresh: a None means the table must be typed again from
    every run (a full refresh).

    Example:
        >>> widened_type("double", ["1", "2"])
        'double'
        >>> widened_type("int", ["0.5"]) is None
        True
    """
    present = [v for v in values if v is not None and v.lower() not in MISSING_VALUES]
    if not present:
        return existing
    new = infer_param_type(present)
    if new == existing:
        return existing
    if (existing, new) in (("bigint", "int"), ("double", "int"), ("double", "bigint")):
        return existing
    return None
