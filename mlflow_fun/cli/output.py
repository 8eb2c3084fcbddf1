"""How the commands print rows: a text table, CSV, one strict JSON document, or JSON lines."""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Sequence
from typing import Any


def print_rows(header: Sequence[str], rows: Sequence[Sequence[Any]], output: str) -> None:
    """Print ``rows`` under ``header`` as ``table``, ``csv``, ``json`` or ``jsonl``.

    ``json`` is one RFC 8259 document, an array of objects; ``jsonl`` one object a line.
    """
    if output == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(header)
        writer.writerows([_plain(v) for v in row] for row in rows)
    elif output in ("json", "jsonl"):
        records = [dict(zip(header, map(json_value, row), strict=True)) for row in rows]
        if output == "json":
            print(json.dumps(records, default=str, allow_nan=False))
        for record in records if output == "jsonl" else ():
            print(json.dumps(record, default=str, allow_nan=False))
    else:
        print(format_table(header, rows))


def format_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Rows as a text table in Spark's ``show()`` style, nothing truncated."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    rule = "+" + "+".join("-" * w for w in widths) + "+"
    lines = [rule, "|" + "|".join(c.rjust(w) for c, w in zip(columns, widths, strict=True)) + "|"]
    lines.append(rule)
    lines += [
        "|" + "|".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) + "|" for r in cells
    ]
    lines.append(rule)
    return "\n".join(lines)


def json_value(value: Any) -> Any:
    """``value`` as strict JSON holds it: NaN and infinities as the strings ``"NaN"``,
    ``"Infinity"`` and ``"-Infinity"`` (proto3's JSON mapping, as MLflow's REST API writes
    them), so `jq` and ``JSON.parse`` read every line."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    return _plain(value)


def _plain(value: Any) -> Any:
    return value.isoformat(sep=" ") if hasattr(value, "isoformat") else value


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    return str(_plain(value))
