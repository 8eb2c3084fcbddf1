"""A plain SELECT over the job's tables without a JVM: delta-rs reads, DuckDB answers.

``mlflow-fun sql`` starts Spark (10-30 s) for a query that takes milliseconds. Under the
embedded default (``--data-dir DIR``) the tables are Delta folders the job wrote, so a
plain ``SELECT`` can be answered without Spark: the statement is parsed as Spark SQL and
written in DuckDB's dialect by sqlglot (which also keeps Spark's NULL ordering), each
table is read by delta-rs as an Arrow dataset, and DuckDB runs the query.

Anything that may answer differently is left to Spark (`TableNotLocalError`, one INFO
line by the caller): a statement that is not one SELECT, a table that is not a Delta
folder under the data dir (the analyst views, Parquet tables, another database), a
function sqlglot cannot write for DuckDB, a result column that is neither a column nor
named with ``AS`` (Spark and DuckDB name ``count(*)`` differently), a STRUCT result
(Spark gives Rows), or any error DuckDB raises (Spark's error message is the one users
know). The values come back as Spark's ``collect()`` gives them: timestamps naive in
local time.

Example:
    >>> columns, rows = select_locally(".demo/data", "mlflow_metrics",
    ...     "select run_uuid, _m_rmse from exp_1 order by _m_rmse limit 3", 1000)
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from mlflow_fun.query.tables import TableNotLocalError, delta_rs_reading, open_delta, table_path


def select_locally(
    data_dir: str, database: str, query: str, max_rows: int
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The column names and at most ``max_rows + 1`` rows of ``query``.

    Raises:
        TableNotLocalError: Spark has to answer this one (the reason in the message).
    """
    import duckdb  # DuckDB and sqlglot: loaded only for a query
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import ErrorLevel, SqlglotError

    try:
        statements = sqlglot.parse(query, read="spark")
    except SqlglotError as e:
        raise TableNotLocalError(f"not parsed as Spark SQL here: {_first_line(e)}") from e
    if len(statements) != 1 or not isinstance(statements[0], exp.Query):
        raise TableNotLocalError("not a single SELECT")
    tree = statements[0]
    _check_named_columns(tree)
    connection = duckdb.connect()
    try:
        _register_tables(connection, tree, data_dir, database)
        try:
            text = tree.sql(dialect="duckdb", unsupported_level=ErrorLevel.RAISE)
        except SqlglotError as e:
            raise TableNotLocalError(f"not written for DuckDB: {_first_line(e)}") from e
        try:
            result = connection.execute(text)
            description = result.description or []
            rows = result.fetchmany(max_rows + 1)
        except duckdb.Error as e:
            raise TableNotLocalError(f"DuckDB: {_first_line(e)}") from e
        if any("STRUCT" in str(column[1]) for column in description):
            raise TableNotLocalError("a STRUCT column (Spark answers with Rows)")
        columns = [str(column[0]) for column in description]
    finally:
        connection.close()
    return columns, [tuple(_as_spark(value) for value in row) for row in rows]


def _check_named_columns(tree: Any) -> None:
    """Every output column of the outermost SELECT is a column, a star or has an alias."""
    from sqlglot import exp

    select = tree if isinstance(tree, exp.Select) else tree.find(exp.Select)
    for projection in select.expressions if select is not None else ():
        if not isinstance(projection, (exp.Column, exp.Alias, exp.Star)):
            raise TableNotLocalError(
                f"the column {projection.sql(dialect='spark')!r} has no name (add AS)"
            )


def _register_tables(connection: Any, tree: Any, data_dir: str, database: str) -> None:
    """Point every table of ``tree`` at its Delta folder, read by delta-rs."""
    from sqlglot import exp

    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    registered: dict[str, str] = {}
    for table in list(tree.find_all(exp.Table)):
        name = table.name.lower()
        if not table.db and name in ctes:
            continue
        if table.catalog or (table.db and table.db.lower() != database.lower()):
            raise TableNotLocalError(f"{table.sql(dialect='spark')} is not in {database}")
        if name not in registered:
            registered[name] = f"__mlflow_fun_{len(registered)}"
            path = table_path(data_dir, database, name)
            delta = open_delta(path)
            with delta_rs_reading(path):
                dataset = delta.to_pyarrow_dataset()
            connection.register(registered[name], dataset)
        alias = table.alias or table.name
        table.replace(exp.to_table(registered[name]).as_(alias))


def _as_spark(value: Any) -> Any:
    """A DuckDB value as Spark's ``collect()`` gives it."""
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone().replace(tzinfo=None)
    if isinstance(value, list):
        return [_as_spark(v) for v in value]
    if isinstance(value, dict):
        return {k: _as_spark(v) for k, v in value.items()}
    return value


def _first_line(error: BaseException) -> str:
    return (str(error).strip() or type(error).__name__).splitlines()[0]
