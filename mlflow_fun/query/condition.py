"""``--where`` conditions: parsed once, checked against the columns, run on Spark or pandas.

A condition is Spark SQL syntax (parsed by sqlglot, never pasted into SQL text) over the
columns of a run table: comparisons, ``AND``/``OR``/``NOT``, ``IN``, ``BETWEEN``,
``IS [NOT] NULL``, ``LIKE``, ``+ - * /`` and parentheses. Types are checked before
anything runs: a STRING param compared with a number is an error, not a silent cast.

MLflow's search words name the same columns: ``metrics.rmse``, ``params.alpha``,
``tags.team``, ``attributes.status`` (also ``metric.``, ``param.``, ``tag.``,
``attribute.``), with odd keys quoted as MLflow quotes them (``metrics.`val loss```,
``metrics."val loss"``). MLflow compares params as text; here a typed param compares with
a quoted value read as its type, so ``params.alpha = '0.5'`` is ``_p_alpha = 0.5``.

Semantics are SQL's on both engines: NULL is unknown (three-valued logic), a NaN metric
counts as NULL, division by zero gives NULL, ``LIKE`` is case-sensitive, a timestamp
compares with a string literal read as UTC (``start_time > '2024-01-01'``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlflow_fun.errors import QueryError
from mlflow_fun.query.mlflow_words import ATTRIBUTES, MLFLOW_PREFIXES
from mlflow_fun.transform.naming import INFO, PARAM, quote_identifier

# pyspark: the optional [spark] extra, imported inside the functions that use it.
if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import Column as SparkColumn


NUMBER, STRING, BOOLEAN, TIMESTAMP = "number", "string", "boolean", "timestamp"
_COMPARISONS = {"EQ": "=", "NEQ": "!=", "GT": ">", "GTE": ">=", "LT": "<", "LTE": "<="}
_ARITHMETIC = {"Add": "+", "Sub": "-", "Mul": "*", "Div": "/"}


@dataclass(frozen=True)
class Node:
    """One node of a checked condition.

    Attributes:
        op: ``col``, ``lit``, ``and``, ``or``, ``not``, ``cmp``, ``in``, ``between``,
            ``isnull``, ``arith``, ``neg`` or ``like``.
        family: ``number``, ``string``, ``boolean`` or ``timestamp`` (of the value).
        args: Child nodes.
        value: Column name, literal value, or operator symbol.
        items: Literal values of ``IN``.
        kind: For a column named in MLflow's words, the kind it was named as (``param``).
    """

    op: str
    family: str
    args: tuple[Node, ...] = ()
    value: Any = None
    items: tuple[Any, ...] = ()
    kind: str = ""


def parse_condition(
    text: str,
    columns: Mapping[str, str],
    keys: Mapping[str, tuple[str, str]] | None = None,
) -> Node:
    """Parse and check ``text`` against ``columns`` (column name -> family).

    Column names match without regard to case, as in Spark. ``keys`` (column name ->
    (kind, MLflow key)) lets MLflow's words name the columns: ``metrics.rmse``.

    Example:
        >>> parse_condition("_p_alpha < 0.5 or status = 'FINISHED'",
        ...                 {"_p_alpha": "number", "status": "string"}).op
        'or'

    Raises:
        QueryError: The text does not parse, names an unknown column, uses something
            unsupported, or mixes types.
    """
    tree = check_syntax(text)
    by_lower = {name.lower(): (name, family) for name, family in columns.items()}
    by_key = {key: name for name, key in (keys or {}).items()}
    node = _Builder(text, by_lower, by_key).build(tree)
    if node.family != BOOLEAN:
        raise QueryError(f"--where {text!r} is not a condition (it is a {node.family})")
    return node


def check_syntax(text: str) -> Any:
    """The parsed condition (sqlglot's tree): checks the syntax alone, before any data.

    Raises:
        QueryError: The text does not parse; the message quotes the parser.
    """
    import sqlglot
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(text, dialect="spark")
    except sqlglot.errors.ParseError as e:
        detail = str(e).splitlines()[0]
        raise QueryError(f"--where {text!r} does not parse: {detail}") from e
    if not isinstance(tree, exp.Expression):
        raise QueryError(f"--where {text!r} does not parse")
    for column in tree.find_all(exp.Column):
        if column.table and column.table.lower() not in MLFLOW_PREFIXES:
            raise QueryError(
                f"--where {text!r}: unknown prefix in {column.sql(dialect='spark')}; "
                "MLflow's are metrics., params., tags. and attributes."
            )
    return tree


class _Builder:
    def __init__(
        self,
        text: str,
        columns: Mapping[str, tuple[str, str]],
        keys: Mapping[tuple[str, str], str],
    ) -> None:
        self.text = text
        self.columns = columns
        self.keys = keys

    def fail(self, message: str) -> QueryError:
        return QueryError(f"--where {self.text!r}: {message}")

    def build(self, tree: Any) -> Node:
        from sqlglot import exp

        kind = type(tree).__name__
        if isinstance(tree, exp.Paren):
            return self.build(tree.this)
        if isinstance(tree, exp.Column):
            if tree.table:
                return self._mlflow_column(MLFLOW_PREFIXES[tree.table.lower()], tree.name)
            found = self.columns.get(tree.name.lower())
            if found is None:
                raise self.fail(f"unknown column {tree.name!r}; {self._suggest(tree.name)}")
            return Node("col", found[1], value=found[0])
        if isinstance(tree, exp.Literal):
            if tree.is_string:
                return Node("lit", STRING, value=tree.this)
            number = float(tree.this)
            return Node("lit", NUMBER, value=int(number) if number.is_integer() else number)
        if isinstance(tree, exp.Boolean):
            return Node("lit", BOOLEAN, value=bool(tree.this))
        if isinstance(tree, exp.Neg):
            inner = self.build(tree.this)
            self._need(inner, NUMBER, "-")
            if inner.op == "lit":
                return Node("lit", NUMBER, value=-inner.value)
            return Node("neg", NUMBER, (inner,))
        if isinstance(tree, (exp.And, exp.Or)):
            left, right = self.build(tree.this), self.build(tree.expression)
            name = "and" if isinstance(tree, exp.And) else "or"
            self._need(left, BOOLEAN, name.upper())
            self._need(right, BOOLEAN, name.upper())
            return Node(name, BOOLEAN, (left, right))
        if isinstance(tree, exp.Not):
            inner = self.build(tree.this)
            self._need(inner, BOOLEAN, "NOT")
            return Node("not", BOOLEAN, (inner,))
        if kind in _COMPARISONS:
            left, right = self._comparable(self.build(tree.this), self.build(tree.expression))
            return Node("cmp", BOOLEAN, (left, right), value=_COMPARISONS[kind])
        if kind in _ARITHMETIC:
            left, right = self.build(tree.this), self.build(tree.expression)
            self._need(left, NUMBER, _ARITHMETIC[kind])
            self._need(right, NUMBER, _ARITHMETIC[kind])
            return Node("arith", NUMBER, (left, right), value=_ARITHMETIC[kind])
        if isinstance(tree, exp.Is):
            if not isinstance(tree.expression, exp.Null):
                raise self.fail("only IS NULL and IS NOT NULL are supported")
            return Node("isnull", BOOLEAN, (self.build(tree.this),))
        if isinstance(tree, exp.In):
            subject = self.build(tree.this)
            if tree.args.get("query") or not tree.expressions:
                raise self.fail("IN takes a list of literal values")
            items = []
            for item in tree.expressions:
                literal = self.build(item)
                if literal.op != "lit":
                    raise self.fail("IN takes a list of literal values")
                items.append(self._comparable(subject, literal)[1].value)
            return Node("in", BOOLEAN, (subject,), items=tuple(items))
        if isinstance(tree, exp.Between):
            subject = self.build(tree.this)
            low = self._comparable(subject, self.build(tree.args["low"]))[1]
            high = self._comparable(subject, self.build(tree.args["high"]))[1]
            return Node("between", BOOLEAN, (subject, low, high))
        if isinstance(tree, exp.Like):
            subject, pattern = self.build(tree.this), self.build(tree.expression)
            self._need(subject, STRING, "LIKE")
            if pattern.op != "lit" or pattern.family != STRING:
                raise self.fail("LIKE takes a quoted pattern")
            return Node("like", BOOLEAN, (subject,), value=pattern.value)
        raise self.fail(f"{tree.sql(dialect='spark')!r} is not supported here")

    def _mlflow_column(self, kind: str, key: str) -> Node:
        """The column MLflow's ``<prefix>.<key>`` names."""
        if kind == INFO:
            found = self.columns.get(ATTRIBUTES.get(key.lower(), ""))
            if found is None:
                known = ", ".join(sorted(ATTRIBUTES))
                raise self.fail(f"unknown attribute {key!r}; MLflow's attributes: {known}")
            return Node("col", found[1], value=found[0])
        column = self.keys.get((kind, key))
        if column is None:
            known = ", ".join(sorted(k for c, k in self.keys if c == kind)) or "none"
            raise self.fail(f"no run has the {kind} {key!r}; the {kind}s: {known}")
        return Node("col", self.columns[column.lower()][1], value=column, kind=kind)

    def _need(self, node: Node, family: str, where: str) -> None:
        if node.family != family:
            raise self.fail(f"{where} needs a {family}, got {_describe(node)}")

    def _comparable(self, left: Node, right: Node) -> tuple[Node, Node]:
        for a, b in ((left, right), (right, left)):
            if a.kind == PARAM and a.family != STRING and b.op == "lit" and b.family == STRING:
                typed = Node("lit", a.family, value=self._param_value(a, b.value))
                return (a, typed) if a is left else (typed, a)
            if a.family == TIMESTAMP and b.op == "lit" and b.family == STRING:
                try:
                    when = dt.datetime.fromisoformat(b.value)
                except ValueError as e:
                    raise self.fail(f"{b.value!r} is not a timestamp (use 2024-01-31)") from e
                if when.tzinfo is None:
                    when = when.replace(tzinfo=dt.timezone.utc)
                stamp = Node("lit", TIMESTAMP, value=when)
                return (a, stamp) if a is left else (stamp, a)
        if left.family != right.family:
            hint = ""
            if STRING in (left.family, right.family):
                hint = "; a STRING column compares with a quoted value"
            raise self.fail(f"cannot compare {_describe(left)} with {_describe(right)}{hint}")
        return left, right

    def _param_value(self, column: Node, text: str) -> Any:
        """A quoted value compared with a typed param (MLflow's words), read as its type."""
        if column.family == BOOLEAN and text.strip().lower() in ("true", "false"):
            return text.strip().lower() == "true"
        if column.family == NUMBER:
            try:
                number = float(text)
            except ValueError:
                pass
            else:
                return int(number) if number.is_integer() else number
        raise self.fail(f"{column.value} holds {column.family}s; {text!r} is not one")

    def _suggest(self, name: str) -> str:
        import difflib

        close = difflib.get_close_matches(name.lower(), list(self.columns), n=3, cutoff=0.6)
        if close:
            return "did you mean " + ", ".join(self.columns[c][0] for c in close) + "?"
        return "see `describe table` for the columns"


def _describe(node: Node) -> str:
    if node.op == "col":
        return f"{node.value} ({node.family})"
    if node.op == "lit":
        return f"{node.value!r} ({node.family})"
    return f"an expression ({node.family})"


def columns_of(node: Node) -> set[str]:
    """The column names a condition reads."""
    found = {node.value} if node.op == "col" else set()
    for arg in node.args:
        found |= columns_of(arg)
    return found


def to_spark(node: Node, nan_as_null: frozenset[str] = frozenset()) -> SparkColumn:
    """The condition as a Spark Column; columns in ``nan_as_null`` read NaN as NULL."""
    from pyspark.sql import functions as F

    def build(n: Node) -> Any:
        if n.op == "col":
            column = F.col(quote_identifier(n.value))
            if n.value in nan_as_null:
                return F.when(~F.isnan(column), column)
            return column
        if n.op == "lit":
            return F.lit(n.value)
        args = [build(a) for a in n.args]
        if n.op == "and":
            return args[0] & args[1]
        if n.op == "or":
            return args[0] | args[1]
        if n.op == "not":
            return ~args[0]
        if n.op == "neg":
            return -args[0]
        if n.op == "isnull":
            return args[0].isNull()
        if n.op == "in":
            return args[0].isin(list(n.items))
        if n.op == "between":
            return (args[0] >= args[1]) & (args[0] <= args[2])
        if n.op == "like":
            return args[0].like(n.value)
        if n.op == "arith":
            if n.value == "/":
                return F.try_divide(args[0], args[1])
            return {"+": args[0] + args[1], "-": args[0] - args[1], "*": args[0] * args[1]}[n.value]
        left, right = args
        return {
            "=": left == right,
            "!=": left != right,
            ">": left > right,
            ">=": left >= right,
            "<": left < right,
            "<=": left <= right,
        }[n.value]

    return build(node)


def to_pandas_mask(node: Node, df: pd.DataFrame) -> pd.Series:
    """Rows of ``df`` where the condition is true (NULL counts as not true)."""
    import pandas as pd

    def column(name: str, family: str) -> pd.Series:
        series = df[name]
        if family == NUMBER:
            return series.astype("Float64")
        if family == STRING:
            return series.astype("string")
        if family == BOOLEAN:
            return series.astype("boolean")
        return series

    def nullable(result: Any, *operands: Any) -> pd.Series:
        out = pd.Series(result, index=df.index).astype("boolean")
        for operand in operands:
            if isinstance(operand, pd.Series):
                out[operand.isna()] = pd.NA
        return out

    def evaluate(n: Node) -> Any:
        if n.op == "col":
            return column(n.value, n.family)
        if n.op == "lit":
            return pd.Timestamp(n.value) if n.family == TIMESTAMP else n.value
        args = [evaluate(a) for a in n.args]
        if n.op == "and":
            return _as_bool(args[0], df) & _as_bool(args[1], df)
        if n.op == "or":
            return _as_bool(args[0], df) | _as_bool(args[1], df)
        if n.op == "not":
            return ~_as_bool(args[0], df)
        if n.op == "neg":
            return -args[0]
        if n.op == "isnull":
            return pd.Series(args[0].isna(), index=df.index).astype("boolean")
        if n.op == "in":
            return nullable(args[0].isin(list(n.items)), args[0])
        if n.op == "between":
            return nullable((args[0] >= args[1]) & (args[0] <= args[2]), *args)
        if n.op == "like":
            return nullable(args[0].fillna("").str.fullmatch(_like_regex(n.value)), args[0])
        if n.op == "arith":
            left, right = args
            if n.value == "/":
                right = pd.Series(right, index=df.index).astype("Float64")
                return left / right.mask(right == 0)
            return {"+": left + right, "-": left - right, "*": left * right}[n.value]
        left, right = args
        result = {
            "=": lambda: left == right,
            "!=": lambda: left != right,
            ">": lambda: left > right,
            ">=": lambda: left >= right,
            "<": lambda: left < right,
            "<=": lambda: left <= right,
        }[n.value]()
        return nullable(result, left, right)

    return _as_bool(evaluate(node), df).fillna(False).astype(bool)


def _as_bool(value: Any, df: pd.DataFrame) -> pd.Series:
    import pandas as pd

    if isinstance(value, pd.Series):
        return value.astype("boolean")
    return pd.Series([value] * len(df), index=df.index, dtype="boolean")


def _like_regex(pattern: str) -> str:
    return "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern)
