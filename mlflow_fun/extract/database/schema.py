"""MLflow's database: the tables read, engines, connections and the schema check."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine, make_url

from mlflow_fun.errors import (
    ConfigError,
    DatabaseError,
    DatabaseUnavailableError,
    SchemaMismatchError,
)

logger = logging.getLogger(__name__)


CONNECT_TIMEOUT_SECONDS = 10


PASSWORD_ENV = "MLFLOW_FUN_DB_PASSWORD"


_SECRET_QUERY_KEY = re.compile(r"pass|secret|token|key", re.IGNORECASE)


_TIMEOUT_ARGS = {
    "psycopg2": "connect_timeout",
    "pymysql": "connect_timeout",
    "mysqldb": "connect_timeout",
}


RUNS = sa.table(
    "runs",
    sa.column("run_uuid", sa.String),
    sa.column("name", sa.String),
    sa.column("experiment_id", sa.Integer),
    sa.column("user_id", sa.String),
    sa.column("status", sa.String),
    sa.column("start_time", sa.BigInteger),
    sa.column("end_time", sa.BigInteger),
    sa.column("lifecycle_stage", sa.String),
    sa.column("artifact_uri", sa.String),
)


LATEST_METRICS = sa.table(
    "latest_metrics",
    sa.column("run_uuid", sa.String),
    sa.column("key", sa.String),
    sa.column("value", sa.Float),
    sa.column("is_nan", sa.Boolean),
)


PARAMS = sa.table(
    "params",
    sa.column("run_uuid", sa.String),
    sa.column("key", sa.String),
    sa.column("value", sa.String),
)


TAGS = sa.table(
    "tags",
    sa.column("run_uuid", sa.String),
    sa.column("key", sa.String),
    sa.column("value", sa.String),
)


METRICS = sa.table(
    "metrics",
    sa.column("run_uuid", sa.String),
    sa.column("key", sa.String),
    sa.column("value", sa.Float),
    sa.column("step", sa.BigInteger),
    sa.column("timestamp", sa.BigInteger),
    sa.column("is_nan", sa.Boolean),
)


EXPERIMENTS = sa.table(
    "experiments",
    sa.column("experiment_id", sa.Integer),
    sa.column("name", sa.String),
    sa.column("artifact_location", sa.String),
    sa.column("lifecycle_stage", sa.String),
    sa.column("creation_time", sa.BigInteger),
    sa.column("last_update_time", sa.BigInteger),
)


EXPERIMENT_TAGS = sa.table(
    "experiment_tags",
    sa.column("experiment_id", sa.Integer),
    sa.column("key", sa.String),
    sa.column("value", sa.String),
)


# Datasets logged as run inputs (MLflow 2.4+; a store without them has no run inputs).
DATASETS = sa.table(
    "datasets",
    sa.column("dataset_uuid", sa.String),
    sa.column("name", sa.String),
    sa.column("digest", sa.String),
    sa.column("dataset_source_type", sa.String),
)


INPUTS = sa.table(
    "inputs",
    sa.column("input_uuid", sa.String),
    sa.column("source_type", sa.String),
    sa.column("source_id", sa.String),
    sa.column("destination_type", sa.String),
    sa.column("destination_id", sa.String),
)


INPUT_TAGS = sa.table(
    "input_tags",
    sa.column("input_uuid", sa.String),
    sa.column("name", sa.String),
    sa.column("value", sa.String),
)


ALL_TABLES = (RUNS, LATEST_METRICS, PARAMS, TAGS, EXPERIMENTS, EXPERIMENT_TAGS, METRICS)


def safe_url(connection: str | URL | Engine) -> str:
    """The database URL without its password (and without secret-looking query keys).

    Example:
        >>> safe_url("postgresql+psycopg2://mlflow:s3cret@db:5432/mlflow")
        'postgresql+psycopg2://mlflow@db:5432/mlflow'
    """
    if isinstance(connection, Engine):
        url = connection.url
    elif isinstance(connection, URL):
        url = connection
    else:
        try:
            url = make_url(connection)
        except sa.exc.ArgumentError:
            return "<a connection that is not a database URL>"
    query = {k: v for k, v in url.query.items() if not _SECRET_QUERY_KEY.search(k)}
    # URL.set(password=None) would keep the password: None means "unchanged" there.
    shown = URL.create(
        url.drivername,
        username=url.username,
        host=url.host,
        port=url.port,
        database=url.database,
        query=query,
    )
    return shown.render_as_string(hide_password=False)


def open_engine(
    connection: str | Engine, *, env: Mapping[str, str] | None = None
) -> tuple[Engine, bool]:
    """Return an engine for ``connection`` and whether the caller owns (must dispose) it.

    A URL gets its own engine with a connect timeout; an `Engine` is used as it is. Nothing
    is connected yet. A sqlite URL must name an existing file (sqlite would create an empty
    one). A URL with a user but no password gets the password from ``MLFLOW_FUN_DB_PASSWORD``
    in ``env`` (``os.environ`` by default), if that is set.

    Example:
        >>> engine, owned = open_engine("postgresql+psycopg2://mlflow@db/mlflow")

    Raises:
        ConfigError: ``connection`` is not a database URL, or its driver is not installed.
        DatabaseError: A sqlite file that does not exist.
    """
    if isinstance(connection, Engine):
        return connection, False
    if not isinstance(connection, str) or not connection.strip():
        raise ConfigError(
            "connection must be an SQLAlchemy URL such as sqlite:////path/mlflow.db, "
            "postgresql+psycopg2://user:password@host/db or mysql+pymysql://user:password@host/db,"
            f" or an sqlalchemy Engine; got {type(connection).__name__}"
        )
    try:
        url = make_url(connection)
    except sa.exc.ArgumentError as e:
        raise ConfigError(
            "the connection is not an SQLAlchemy database URL; expected e.g. "
            "sqlite:////path/mlflow.db, postgresql+psycopg2://user:password@host/db or "
            "mysql+pymysql://user:password@host/db"
        ) from e
    password = (os.environ if env is None else env).get(PASSWORD_ENV)
    if url.username and url.password is None and password:
        url = url.set(password=password)
    connect_args: dict[str, Any] = {}
    if url.get_backend_name() == "sqlite":
        _check_sqlite_file(url)
    try:
        # Naming the driver loads the dialect: a missing one fails here, not at connect.
        timeout_arg = _TIMEOUT_ARGS.get(url.get_driver_name())
        if timeout_arg and timeout_arg not in url.query:
            connect_args[timeout_arg] = CONNECT_TIMEOUT_SECONDS
        engine = sa.create_engine(url, connect_args=connect_args, pool_pre_ping=True)
    except (sa.exc.NoSuchModuleError, ImportError) as e:
        raise ConfigError(
            f"no SQLAlchemy driver for {safe_url(url)}: {e}. Install it, e.g. "
            "`pip install psycopg2-binary` (postgresql+psycopg2) or `pip install PyMySQL` "
            "(mysql+pymysql)"
        ) from e
    except sa.exc.ArgumentError as e:
        raise ConfigError(f"{safe_url(url)}: {first_error_line(e, url)}") from e
    return engine, True


def _check_sqlite_file(url: URL) -> None:
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return
    if not Path(database).is_file():
        raise DatabaseError(
            f"cannot open database {safe_url(url)}: the sqlite file {database} does not exist"
        )


# Words of a driver's message that say the server took no connection: refused, not
# accepting yet, restarting.
_NO_CONNECTION_WORDS = (
    "connection refused",
    "could not connect",
    "can't connect",
    "starting up",
    "shutting down",
    "not yet accepting connections",
)
# ... and those that say it is not there (yet) at all, also a connection dropped or timed
# out mid-read. A wrong password or a missing table says none of them and is not retried.
_UNAVAILABLE_WORDS = (
    *_NO_CONNECTION_WORDS,
    "lost connection",
    "timed out",
    "timeout expired",
    "database is locked",
)


@contextmanager
def connect(engine: Engine, *, snapshot: bool = False) -> Iterator[Connection]:
    """A connection of ``engine``; driver errors become `DatabaseError` without the password.

    With ``snapshot``, every query on the connection sees one state of the database: a
    ``REPEATABLE READ`` transaction (PostgreSQL, MySQL), an explicit read transaction
    (sqlite), rolled back at the end. The connection must be used for reads only.

    Example:
        >>> with connect(engine, snapshot=True) as conn:
        ...     conn.execute(sa.text("select 1")).scalar()

    Raises:
        DatabaseUnavailableError: The database is unreachable or dropped the connection.
        DatabaseError: It refused the login, or a query failed.
    """
    try:
        conn = engine.connect()
    except sa.exc.SQLAlchemyError as e:
        raise database_error(e, engine, "cannot connect to database", connecting=True) from e
    try:
        with conn:
            if snapshot:
                _begin_snapshot(conn)
            yield conn
    except sa.exc.SQLAlchemyError as e:
        raise database_error(e, engine, "query on database", "failed") from e


def _begin_snapshot(conn: Connection) -> None:
    if conn.dialect.name == "sqlite":
        # pysqlite opens no transaction for a SELECT: without BEGIN each query would read
        # the store as it is at that moment.
        conn.connection.driver_connection.execute("BEGIN")  # type: ignore[union-attr]
    else:
        conn.execution_options(isolation_level="REPEATABLE READ")


def database_error(
    error: Exception,
    engine: Engine,
    before: str,
    after: str = "",
    *,
    connecting: bool = False,
    cursor: Any = None,
) -> DatabaseError:
    """The project's error for a driver's ``error``: `DatabaseUnavailableError` when the
    server is not there or dropped the connection, else `DatabaseError`; one line, no
    password (``before <url> after: <driver's first line>``)."""
    reason = first_error_line(error, engine.url)
    message = f"{before} {safe_url(engine)}{' ' + after if after else ''}: {reason}"
    orig = getattr(error, "orig", None) or error
    dropped = bool(getattr(error, "connection_invalidated", False))
    dbapi = engine.dialect.loaded_dbapi
    if not dropped and isinstance(orig, dbapi.Error):
        dropped = engine.dialect.is_disconnect(orig, None, cursor)
    lowered = reason.lower()
    named = any(word in lowered for word in _UNAVAILABLE_WORDS)
    if dropped or (named and (connecting or isinstance(orig, dbapi.OperationalError))):
        refused = any(word in lowered for word in _NO_CONNECTION_WORDS)
        return DatabaseUnavailableError(message, no_connection=connecting or refused)
    return DatabaseError(message)


def first_error_line(error: Exception, url: URL) -> str:
    cause = getattr(error, "orig", None) or error
    text = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
    if url.password:
        text = text.replace(str(url.password), "***")
    return text


def check_schema(engine: Engine, tables: Sequence[sa.TableClause] = ALL_TABLES) -> None:
    """Check that ``engine`` holds the MLflow tables and columns that mlflow-fun reads.

    The tables and columns, not the alembic revision: what is read (experiments, runs,
    latest_metrics, metrics, params, tags) has kept its shape from MLflow 2.0 to 3.x, so
    a store of any of those versions is read as it is, without `mlflow db upgrade`.

    Example:
        >>> check_schema(engine, [RUNS, LATEST_METRICS, EXPERIMENTS])

    Args:
        engine: The database.
        tables: The tables (and their columns) that must be present.

    Raises:
        SchemaMismatchError: A table or column is missing; the message names them.
        DatabaseError: The database is unreachable.
    """
    url = safe_url(engine)
    with connect(engine) as conn:
        inspector = sa.inspect(conn)
        present = set(inspector.get_table_names())
        missing = [t.name for t in tables if t.name not in present]
        for t in tables:
            if t.name in missing:
                continue
            columns = {c["name"] for c in inspector.get_columns(t.name)}
            missing += [f"{t.name}.{c.name}" for c in t.columns if c.name not in columns]
    if missing:
        raise SchemaMismatchError(
            f"database {url} is not an MLflow tracking store that mlflow-fun can read: "
            f"missing {', '.join(missing)}. Point at the database of `mlflow server "
            "--backend-store-uri` (MLflow 2.0 or newer), or create its schema with "
            "`mlflow db upgrade <url>`"
        )
