"""Runs straight from MLflow's own database: the tables behind a tracking server.

`DatabaseSource` reads ``runs``, ``latest_metrics``, ``params``, ``tags``, ``metrics``,
``experiments`` and ``experiment_tags`` with SQLAlchemy Core and yields the same
`RunRecord`, `MetricPoint` and `Experiment` objects as `RestSource` does for the server on
top of that database. It reads ``runs`` in keyset queries of up to 50,000 rows and asks
one query per child table per batch of runs, instead of serialising every run to JSON,
which makes it much faster than REST on big stores::

    # the password from MLFLOW_FUN_DB_PASSWORD, not from the command line
    source = DatabaseSource("postgresql+psycopg2://mlflow@db-host/mlflow")
    for run in source.iter_runs("1"):
        ...

The module also holds what `mlflow_fun.metrics.sql.sql_best` shares with it: opening an
engine from a URL (`open_engine`), a URL safe to show (`safe_url`), the schema check
(`check_schema`) and the table definitions.

Read-only: nothing here writes to the database. Values always reach SQL as bound
parameters; table and column names are fixed in this module.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import logging
import math
import os
import re
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine, make_url

from mlflow_fun.client.records import Experiment, MetricPoint, RunRecord
from mlflow_fun.client.sources import DEFAULT_PAGE_SIZE, EXPERIMENTS_PAGE_SIZE, MAX_PAGE_SIZE
from mlflow_fun.errors import (
    ConfigError,
    DatabaseError,
    ExperimentNotFoundError,
    SchemaMismatchError,
)

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 10
VIEW_STAGES = {
    "ACTIVE_ONLY": ("active",),
    "DELETED_ONLY": ("deleted",),
    "ALL": ("active", "deleted"),
}
RUN_NAME_TAG = "mlflow.runName"
# Rows of ``runs`` read by one keyset query: each query sorts the selected runs again
# (MLflow has no index for this order), so fewer, longer queries (make bench, 100k runs
# on sqlite: 22 queries of 46 ms at the default page size) while memory stays bounded.
RUN_ROWS_PER_QUERY = 50_000
# Run ids in one IN list; sqlite before 3.32 binds at most 999 values per statement.
RUN_IDS_PER_QUERY = 5_000
OLD_SQLITE_IDS_PER_QUERY = 900
PASSWORD_ENV = "MLFLOW_FUN_DB_PASSWORD"

# Sorts rows whose time is NULL after every real time in a descending order.
_NO_TIME = -(2**63)
_DIGITS = re.compile(r"[0-9]{1,18}")
_RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # as `mlflow_fun.client.sources.run_id_filters`
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
        raise ConfigError(f"{safe_url(url)}: {_first_line(e, url)}") from e
    return engine, True


def _check_sqlite_file(url: URL) -> None:
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return
    if not Path(database).is_file():
        raise DatabaseError(
            f"cannot open database {safe_url(url)}: the sqlite file {database} does not exist"
        )


@contextmanager
def connect(engine: Engine) -> Iterator[Connection]:
    """A connection of ``engine``; driver errors become `DatabaseError` without the password.

    Example:
        >>> with connect(engine) as conn:
        ...     conn.execute(sa.text("select 1")).scalar()

    Raises:
        DatabaseError: The database is unreachable, refused the login, or a query failed.
    """
    try:
        conn = engine.connect()
    except sa.exc.SQLAlchemyError as e:
        raise DatabaseError(
            f"cannot connect to database {safe_url(engine)}: {_first_line(e, engine.url)}"
        ) from e
    try:
        with conn:
            yield conn
    except sa.exc.SQLAlchemyError as e:
        raise DatabaseError(
            f"query on database {safe_url(engine)} failed: {_first_line(e, engine.url)}"
        ) from e


def _first_line(error: Exception, url: URL) -> str:
    cause = getattr(error, "orig", None) or error
    text = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
    if url.password:
        text = text.replace(str(url.password), "***")
    return text


@functools.lru_cache(maxsize=1)
def mlflow_schema_revisions() -> tuple[frozenset[str], frozenset[str], str]:
    """Alembic heads and all revisions of the installed MLflow, and its version.

    Read from ``mlflow/store/db_migrations`` without importing ``mlflow``: from the
    ``revision``/``down_revision`` lines of the migration files (milliseconds), or through
    alembic's `ScriptDirectory` (which imports every migration, ~1.5 s) when a file has
    another shape.

    Example:
        >>> heads, known, version = mlflow_schema_revisions()
    """
    spec = importlib.util.find_spec("mlflow")
    if spec is None or not spec.submodule_search_locations:
        raise SchemaMismatchError("mlflow is not installed: cannot tell which schema to expect")
    migrations = Path(next(iter(spec.submodule_search_locations))) / "store" / "db_migrations"
    graph = _revisions_from_text(migrations / "versions") or _revisions_from_alembic(migrations)
    return graph[0], graph[1], importlib.metadata.version("mlflow")


_REVISION_LINE = re.compile(r"^(revision|down_revision)\s*(?::[^=\n]*)?=\s*(.*?)\s*$", re.MULTILINE)
_QUOTED_REVISION = re.compile(r"""["']([0-9A-Za-z_]+)["']""")


def _revisions_from_text(versions: Path) -> tuple[frozenset[str], frozenset[str]] | None:
    """(heads, every revision) of a linear or branching history of single parents, read
    from the files' text; None when a file has no plain ``revision = "..."`` and
    ``down_revision = "..."`` (or ``None``) line, e.g. a merge of two heads."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in sorted(versions.glob("*.py")):
        if path.name == "__init__.py":
            continue
        fields = dict(_REVISION_LINE.findall(path.read_text(encoding="utf-8")))
        revision = _QUOTED_REVISION.fullmatch(fields.get("revision", ""))
        down = fields.get("down_revision")
        parent = _QUOTED_REVISION.fullmatch(down or "")
        if revision is None or (down != "None" and parent is None):
            return None
        revisions.add(revision.group(1))
        if parent is not None:
            parents.add(parent.group(1))
    if not revisions:
        return None
    return frozenset(revisions - parents), frozenset(revisions)


def _revisions_from_alembic(migrations: Path) -> tuple[frozenset[str], frozenset[str]]:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(migrations))
    heads = frozenset(script.get_heads())
    return heads, frozenset(revision.revision for revision in script.walk_revisions())


def check_schema(engine: Engine, tables: Sequence[sa.TableClause] = ALL_TABLES) -> None:
    """Check that ``engine`` holds MLflow's tables at the revision the installed MLflow knows.

    Example:
        >>> check_schema(engine, [RUNS, LATEST_METRICS, EXPERIMENTS])

    Args:
        engine: The database.
        tables: The tables (and their columns) that must be present.

    Raises:
        SchemaMismatchError: A table or column is missing, or the ``alembic_version`` of
            the database is older or newer than the installed MLflow's.
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
                f"database {url} is not an MLflow tracking store of the expected schema: "
                f"missing {', '.join(missing)}. Point at the database of `mlflow server "
                "--backend-store-uri`, or create its schema with `mlflow db upgrade <url>`"
            )
        if "alembic_version" not in present:
            raise SchemaMismatchError(
                f"database {url} has MLflow's tables but no alembic_version table: it was not "
                "created by MLflow's migrations; run `mlflow db upgrade <url>`"
            )
        found = {row[0] for row in conn.execute(sa.text("SELECT version_num FROM alembic_version"))}
    heads, known, version = mlflow_schema_revisions()
    if found == heads:
        return
    shown = ", ".join(sorted(found)) or "none"
    expected = ", ".join(sorted(heads))
    if found and found <= known:
        raise SchemaMismatchError(
            f"database {url} has an older MLflow schema (revision {shown}) than the installed "
            f"mlflow {version} reads (revision {expected}): back it up and run "
            "`mlflow db upgrade <url>`, or install the mlflow version that wrote it"
        )
    raise SchemaMismatchError(
        f"database {url} has MLflow schema revision {shown}, unknown to the installed "
        f"mlflow {version} (expects {expected}): it was written by a newer mlflow; "
        "upgrade mlflow here (`pip install -U mlflow`)"
    )


def parse_experiment_id(experiment_id: str | int) -> int | None:
    """MLflow's experiment id as the integer the database keeps, or None if it cannot be one.

    Example:
        >>> parse_experiment_id("12")
        12
    """
    text = str(experiment_id).strip()
    return int(text) if _DIGITS.fullmatch(text) else None


_Cursor = tuple[int, Any]
"""Where a keyset page ended: (sort key, tie-breaking id) of its last row."""


@dataclass(frozen=True)
class _Keyset:
    """A descending sort key (NULLs last) with an ascending id to break ties."""

    key: sa.ColumnElement[Any]
    tie: sa.ColumnElement[Any]

    @classmethod
    def of(cls, key: sa.ColumnClause[Any], tie: sa.ColumnClause[Any]) -> _Keyset:
        return cls(sa.func.coalesce(key, sa.literal(_NO_TIME, sa.BigInteger)), tie)

    def order_by(self) -> tuple[sa.UnaryExpression[Any], sa.ColumnElement[Any]]:
        return self.key.desc(), self.tie

    def after(self, cursor: _Cursor) -> sa.ColumnElement[bool]:
        key, tie = cursor
        return sa.or_(self.key < key, sa.and_(self.key == key, self.tie > tie))

    def up_to(self, cursor: _Cursor) -> sa.ColumnElement[bool]:
        key, tie = cursor
        return sa.or_(self.key > key, sa.and_(self.key == key, self.tie <= tie))

    def between(self, previous: _Cursor | None, last: _Cursor) -> list[sa.ColumnElement[bool]]:
        return ([self.after(previous)] if previous else []) + [self.up_to(last)]


_RUN_ORDER = _Keyset.of(RUNS.c.start_time, RUNS.c.run_uuid)
# The columns `_records` unpacks, in its order (the sort key follows them in a query).
_RUN_COLUMNS = (
    RUNS.c.run_uuid,
    RUNS.c.name,
    RUNS.c.experiment_id,
    RUNS.c.user_id,
    RUNS.c.status,
    RUNS.c.start_time,
    RUNS.c.end_time,
    RUNS.c.lifecycle_stage,
    RUNS.c.artifact_uri,
)
_RUN_IDS: sa.BindParameter[list[str]] = sa.bindparam("run_ids", expanding=True)
_LATEST_METRICS_OF = sa.select(
    LATEST_METRICS.c.run_uuid, LATEST_METRICS.c.key, LATEST_METRICS.c.value, LATEST_METRICS.c.is_nan
).where(LATEST_METRICS.c.run_uuid.in_(_RUN_IDS))
_PARAMS_OF = sa.select(PARAMS.c.run_uuid, PARAMS.c.key, PARAMS.c.value).where(
    PARAMS.c.run_uuid.in_(_RUN_IDS)
)
_TAGS_OF = sa.select(TAGS.c.run_uuid, TAGS.c.key, TAGS.c.value).where(TAGS.c.run_uuid.in_(_RUN_IDS))
_HISTORY_OF = sa.select(
    METRICS.c.run_uuid,
    METRICS.c.key,
    METRICS.c.value,
    METRICS.c.step,
    METRICS.c.timestamp,
    METRICS.c.is_nan,
).where(METRICS.c.run_uuid.in_(_RUN_IDS))
_EXPERIMENT_ORDER = _Keyset.of(EXPERIMENTS.c.creation_time, EXPERIMENTS.c.experiment_id)


class DatabaseSource:
    """Runs and experiments read from MLflow's back-end database, in batches.

    A `RunSource`: yields exactly what `RestSource` yields for the tracking server on top
    of the same database (metrics are the latest values, NaN as ``nan``; MLflow stores
    +-inf as +-1.7976931348623157e308 and so does this source). Runs come in MLflow's
    default order (``start_time`` descending, then ``run_id``; runs without a start time
    last); experiments newest first, then by id.

    Limits: ``filter_string`` and ``order_by`` must be empty (MLflow's search grammar is
    not re-implemented; use `RestSource` for them). Experiments of every workspace are read.

    The password: keep it off the command line and out of config files. A URL with a user
    and no password (``postgresql+psycopg2://mlflow@db-host/mlflow``) takes the password
    from the environment variable ``MLFLOW_FUN_DB_PASSWORD`` (`PASSWORD_ENV`); a password
    in the URL wins. Neither `tracking_uri` nor any error message shows it.

    Example:
        >>> source = DatabaseSource("sqlite:////tmp/mlruns.db", page_size=10_000)
        >>> sum(1 for _ in source.iter_runs(["1", "2"]))
        20000

    Args:
        connection: An SQLAlchemy URL (``sqlite:///…``, ``postgresql+psycopg2://…``,
            ``mysql+pymysql://…``) or an `Engine`.
        page_size: Runs per batch (1 to 50,000): one query per child table.
        env: Where ``MLFLOW_FUN_DB_PASSWORD`` is read; ``os.environ`` by default.
        run_rows_per_query: Rows of ``runs`` one keyset query reads (default: the larger
            of ``page_size`` and `RUN_ROWS_PER_QUERY`).

    Raises:
        ConfigError: A bad URL, a missing driver or a page size out of range.
    """

    def __init__(
        self,
        connection: str | Engine,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        env: Mapping[str, str] | None = None,
        run_rows_per_query: int | None = None,
    ) -> None:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ConfigError(f"page_size={page_size} must be between 1 and {MAX_PAGE_SIZE}")
        if run_rows_per_query is not None and run_rows_per_query < 1:
            raise ConfigError(f"run_rows_per_query={run_rows_per_query} must be at least 1")
        self.engine, self._owns_engine = open_engine(connection, env=env)
        self.page_size = page_size
        self.run_rows_per_query = run_rows_per_query or max(page_size, RUN_ROWS_PER_QUERY)
        self.tracking_uri = safe_url(self.engine)
        self._schema_checked = False

    def __repr__(self) -> str:
        return f"DatabaseSource({self.tracking_uri!r}, page_size={self.page_size})"

    def close(self) -> None:
        """Close the connections of an engine this source opened (not one it was given)."""
        if self._owns_engine:
            self.engine.dispose()

    def __enter__(self) -> DatabaseSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connect(self) -> AbstractContextManager[Connection]:
        if not self._schema_checked:
            check_schema(self.engine)
            self._schema_checked = True
        return connect(self.engine)

    def get_experiment(self, experiment_id: str) -> Experiment:
        """Return one experiment; raise `ExperimentNotFoundError` if there is none.

        Example:
            >>> source.get_experiment("1").name
            'wine-quality'
        """
        eid = parse_experiment_id(experiment_id)
        found = [] if eid is None else self._experiments(EXPERIMENTS.c.experiment_id == eid)[0]
        if not found:
            raise ExperimentNotFoundError(
                f"experiment id {str(experiment_id)!r} does not exist at {self.tracking_uri}"
            )
        return found[0]

    def get_experiment_by_name(self, name: str) -> Experiment:
        """Return the experiment named ``name``; raise `ExperimentNotFoundError` if none.

        Example:
            >>> source.get_experiment_by_name("wine-quality").experiment_id
            '1'
        """
        found, _ = self._experiments(EXPERIMENTS.c.name == name)
        if not found:
            raise ExperimentNotFoundError(f"no experiment named {name!r} at {self.tracking_uri}")
        return found[0]

    def iter_experiments(self, view_type: str = "ACTIVE_ONLY") -> Iterator[Experiment]:
        """Yield every experiment of ``view_type``, newest first, in batches.

        Example:
            >>> [e.name for e in source.iter_experiments("ALL")]
        """
        stages = _stages(view_type)
        cursor: _Cursor | None = None
        while True:
            batch, cursor = self._experiments(
                EXPERIMENTS.c.lifecycle_stage.in_(stages),
                *([_EXPERIMENT_ORDER.after(cursor)] if cursor else []),
                limit=EXPERIMENTS_PAGE_SIZE,
            )
            yield from batch
            if len(batch) < EXPERIMENTS_PAGE_SIZE:
                return

    def _experiments(
        self, *where: sa.ColumnElement[bool], limit: int | None = None
    ) -> tuple[list[Experiment], _Cursor | None]:
        """Experiments matching ``where`` in MLflow's order, and the cursor of the last."""
        query = (
            sa.select(EXPERIMENTS, _EXPERIMENT_ORDER.key.label("sort_key"))
            .where(*where)
            .order_by(*_EXPERIMENT_ORDER.order_by())
        )
        if limit is not None:
            query = query.limit(limit)
        with self._connect() as conn:
            rows = conn.execute(query).all()
            if not rows:
                return [], None
            ids = [row.experiment_id for row in rows]
            tag_rows = conn.execute(
                sa.select(EXPERIMENT_TAGS).where(EXPERIMENT_TAGS.c.experiment_id.in_(ids))
            ).all()
        tags: dict[int, dict[str, str]] = defaultdict(dict)
        for tag in tag_rows:
            tags[tag.experiment_id][tag.key] = "" if tag.value is None else str(tag.value)
        experiments = [
            Experiment(
                experiment_id=str(row.experiment_id),
                name=row.name,
                lifecycle_stage=row.lifecycle_stage,
                artifact_location=row.artifact_location,
                creation_time=row.creation_time or None,
                last_update_time=row.last_update_time or None,
                tags=tags[row.experiment_id],
            )
            for row in rows
        ]
        return experiments, (rows[-1].sort_key, rows[-1].experiment_id)

    def iter_runs(
        self,
        experiment_ids: str | Sequence[str],
        *,
        run_view_type: str = "ACTIVE_ONLY",
        filter_string: str = "",
        order_by: Sequence[str] = (),
        max_results: int | None = None,
    ) -> Iterator[RunRecord]:
        """Yield runs batch by batch: one query per table per batch, keyset-paginated.

        Example:
            >>> next(source.iter_runs("1")).metrics["rmse"]
            0.7223

        Args:
            experiment_ids: One id or several.
            run_view_type: ``ACTIVE_ONLY`` (default), ``DELETED_ONLY`` or ``ALL``.
            filter_string: Must be empty.
            order_by: Must be empty: runs come in MLflow's default order.
            max_results: Stop after this many runs; None for all.

        Raises:
            ConfigError: A filter, an order, or a bad view type.
            ExperimentNotFoundError: An experiment id that is not a number.
        """
        stages = _stages(run_view_type)
        if filter_string.strip() or list(order_by):
            raise ConfigError(
                "DatabaseSource supports neither filter_string nor order_by; "
                "use the REST source (open_source(<tracking server URL>)) for them"
            )
        ids = [experiment_ids] if isinstance(experiment_ids, str) else list(experiment_ids)
        parsed = [parse_experiment_id(i) for i in ids]
        bad = [str(i) for i, p in zip(ids, parsed, strict=True) if p is None]
        if bad:
            raise ExperimentNotFoundError(
                f"experiment id {bad[0]!r} does not exist at {self.tracking_uri}: "
                "ids are whole numbers"
            )
        if not parsed:
            return
        selection = (RUNS.c.experiment_id.in_(parsed), RUNS.c.lifecycle_stage.in_(stages))
        yield from self._iter_batches(selection, max_results)

    def iter_changed_runs(self, experiment_id: str, since_ms: int) -> Iterator[RunRecord]:
        """Yield the active runs that started or ended at or after ``since_ms``, each once.

        One keyset-paginated query (``start_time >= since_ms OR end_time >= since_ms``);
        the same runs as `RestSource.iter_changed_runs`, in MLflow's default order.

        Example:
            >>> [r.run_id for r in source.iter_changed_runs("1", 1_700_000_000_000)]

        Raises:
            ExperimentNotFoundError: An experiment id that is not a number.
        """
        since = int(since_ms)
        selection = (
            RUNS.c.experiment_id == self._experiment_number(experiment_id),
            RUNS.c.lifecycle_stage == "active",
            sa.or_(RUNS.c.start_time >= since, RUNS.c.end_time >= since),
        )
        yield from self._iter_batches(selection, None)

    def iter_runs_by_id(
        self, experiment_id: str, run_ids: Iterable[str], run_view_type: str = "ACTIVE_ONLY"
    ) -> Iterator[RunRecord]:
        """Yield the runs among ``run_ids`` that belong to the experiment and the view type.

        Ids are de-duplicated and asked for up to `RUN_IDS_PER_QUERY` at a time; ids that do not
        exist, belong to another experiment or have another lifecycle stage are skipped,
        as `RestSource.iter_runs_by_id` does.

        Example:
            >>> [r.run_id for r in source.iter_runs_by_id("1", ids, "DELETED_ONLY")]

        Raises:
            ConfigError: An id that is not a run id, or a bad view type.
            ExperimentNotFoundError: An experiment id that is not a number.
        """
        stages = _stages(run_view_type)
        number = self._experiment_number(experiment_id)
        ids = _checked_run_ids(run_ids)
        per_query = _ids_per_query(self.engine)
        for start in range(0, len(ids), per_query):
            query = (
                sa.select(*_RUN_COLUMNS, _RUN_ORDER.key)
                .where(
                    RUNS.c.run_uuid.in_(ids[start : start + per_query]),
                    RUNS.c.experiment_id == number,
                    RUNS.c.lifecycle_stage.in_(stages),
                )
                .order_by(*_RUN_ORDER.order_by())
            )
            with self._connect() as conn:
                rows = conn.execute(query).all()
                children = _children(conn, [row[0] for row in rows], per_query)
            yield from _records(rows, *children)

    def iter_metric_history(self, runs: Iterable[RunRecord]) -> Iterator[MetricPoint]:
        """Yield every logged value (MLflow's ``metrics`` table) of every metric of ``runs``.

        Only the keys each record has in ``metrics`` are read, as
        `RestSource.iter_metric_history` does; NaN comes back as ``nan``, +-inf as
        MLflow stores it (+-1.7976931348623157e308). Runs are read up to
        `RUN_IDS_PER_QUERY` at a time; points come in no particular order.

        Example:
            >>> points = list(source.iter_metric_history(source.iter_runs("1")))
            >>> {(p.key, p.step) for p in points if p.run_id == points[0].run_id}
        """
        per_query = _ids_per_query(self.engine)
        wanted: dict[str, frozenset[str]] = {}
        for run in runs:
            if run.metrics:
                keys = wanted.get(run.run_id, frozenset())
                wanted[run.run_id] = keys | frozenset(run.metrics)
            if len(wanted) >= per_query:
                yield from self._history(wanted)
                wanted = {}
        if wanted:
            yield from self._history(wanted)

    def _history(self, wanted: Mapping[str, frozenset[str]]) -> list[MetricPoint]:
        """The logged values of the keys ``wanted`` (run id -> metric keys)."""
        with self._connect() as conn:
            rows = _fetch_all(conn, _HISTORY_OF, list(wanted))
        nan = math.nan
        return [
            MetricPoint(run_uuid, key, nan if is_nan else float(value), int(step), int(timestamp))
            for run_uuid, key, value, step, timestamp, is_nan in rows
            if key in wanted[run_uuid]
        ]

    def _experiment_number(self, experiment_id: str) -> int:
        number = parse_experiment_id(experiment_id)
        if number is None:
            raise ExperimentNotFoundError(
                f"experiment id {str(experiment_id)!r} does not exist at {self.tracking_uri}: "
                "ids are whole numbers"
            )
        return number

    def _iter_batches(
        self, selection: tuple[sa.ColumnElement[bool], ...], max_results: int | None
    ) -> Iterator[RunRecord]:
        """Runs matching ``selection`` in MLflow's order: ``run_rows_per_query`` rows of
        ``runs`` per keyset query, their children ``page_size`` runs at a time."""
        cursor: _Cursor | None = None
        remaining = max_results
        per_query = _ids_per_query(self.engine)
        while remaining is None or remaining > 0:
            size = self.run_rows_per_query
            size = size if remaining is None else min(size, remaining)
            rows = self._run_rows(selection, cursor, size)
            for start in range(0, len(rows), self.page_size):
                began = time.monotonic()
                chunk = rows[start : start + self.page_size]
                with self._connect() as conn:
                    children = _children(conn, [row[0] for row in chunk], per_query)
                batch = _records(chunk, *children)
                logger.debug("run batch runs=%d seconds=%.3f", len(batch), time.monotonic() - began)
                yield from batch
            if len(rows) < size:
                return
            cursor = (rows[-1][-1], rows[-1][0])
            if remaining is not None:
                remaining -= len(rows)

    def _run_rows(
        self,
        selection: tuple[sa.ColumnElement[bool], ...],
        cursor: _Cursor | None,
        size: int,
    ) -> list[Any]:
        """The next ``size`` rows of ``runs`` after ``cursor`` (columns of `_RUN_COLUMNS`,
        then the sort key)."""
        page = (
            sa.select(*_RUN_COLUMNS, _RUN_ORDER.key)
            .where(*selection, *([_RUN_ORDER.after(cursor)] if cursor else []))
            .order_by(*_RUN_ORDER.order_by())
            .limit(size)
        )
        with self._connect() as conn:
            return _rows(conn, page)


_ChildRows = tuple[Sequence[Any], Sequence[Any], Sequence[Any]]
"""Rows of ``latest_metrics``, ``params`` and ``tags``: (run_uuid, key, value[, is_nan])."""


def _children(conn: Connection, run_ids: Sequence[str], per_query: int) -> _ChildRows:
    """The latest metrics, params and tags of ``run_ids``: one query per table per chunk.

    Looked up by ``run_uuid`` (each table has an index on it), ``per_query`` ids at a
    time: one query per table for a batch of the default size.
    """
    metrics: list[Any] = []
    params: list[Any] = []
    tags: list[Any] = []
    for start in range(0, len(run_ids), per_query):
        chunk = run_ids[start : start + per_query]
        metrics += _fetch_all(conn, _LATEST_METRICS_OF, chunk)
        params += _fetch_all(conn, _PARAMS_OF, chunk)
        tags += _fetch_all(conn, _TAGS_OF, chunk)
    return metrics, params, tags


def _rows(conn: Connection, query: sa.Select[Any]) -> list[Any]:
    """The rows of ``query`` as the driver's own tuples (see `_fetch_all`)."""
    compiled = query.compile(dialect=conn.dialect)
    state = compiled.construct_expanded_state({})
    args = state.positional_parameters if compiled.positional else state.parameters
    return _execute(conn, state.statement, args)


def _fetch_all(conn: Connection, query: sa.Select[Any], run_ids: Sequence[str]) -> list[Any]:
    """The rows of ``query`` for ``run_ids``, as the driver's own tuples, on the
    connection's DBAPI cursor.

    A batch holds about 16 child rows per run: skipping SQLAlchemy's `Row` (and its result
    processing) halves the objects made per row and the garbage collector's work. The
    queries select only strings and numbers, which every driver returns as Python's own
    (``is_nan`` as 0/1 or a bool). SQLAlchemy still renders the SQL for the dialect.

    Raises:
        DatabaseError: The driver refused the query (the message without the password).
    """
    statement, names = _expanded(query, conn.dialect, len(run_ids))
    args: Any = dict(zip(names, run_ids, strict=True)) if names is not None else list(run_ids)
    return _execute(conn, statement, args)


def _execute(conn: Connection, statement: str, args: Any) -> list[Any]:
    cursor = conn.connection.cursor()
    try:
        cursor.execute(statement, args)
        return list(cursor.fetchall())
    except conn.dialect.loaded_dbapi.Error as e:
        raise DatabaseError(
            f"query on database {safe_url(conn.engine)} failed: {_first_line(e, conn.engine.url)}"
        ) from e
    finally:
        cursor.close()


@functools.lru_cache(maxsize=32)
def _expanded(
    query: sa.Select[Any], dialect: Any, count: int
) -> tuple[str, tuple[str, ...] | None]:
    """The SQL of ``query`` with its ``run_ids`` list expanded to ``count`` parameters,
    and the parameter names in order (None for a positional driver).

    Batches have the same size but for the last: rendering the statement once per size,
    not once per batch, saves SQLAlchemy's expansion of thousands of parameters (7% of
    `DatabaseSource.iter_runs` on sqlite).
    """
    compiled = query.compile(dialect=dialect)
    state = compiled.construct_expanded_state({"run_ids": [""] * count})
    if compiled.positional:
        return state.statement, None
    return state.statement, tuple(state.parameters)


def _ids_per_query(engine: Engine) -> int:
    """How many run ids one IN list may hold on ``engine``."""
    if engine.dialect.name == "sqlite":
        import sqlite3

        if sqlite3.sqlite_version_info < (3, 32, 0):
            return OLD_SQLITE_IDS_PER_QUERY
    return RUN_IDS_PER_QUERY


def _records(
    rows: Sequence[Any], metrics: Sequence[Any], params: Sequence[Any], tags: Sequence[Any]
) -> list[RunRecord]:
    """`RunRecord`s of the ``runs`` rows (columns of `_RUN_COLUMNS`) and their children.

    The hot loop of `DatabaseSource`: rows are unpacked as tuples, no call per row.
    """
    nan = math.nan
    metrics_by_run: defaultdict[str, dict[str, float]] = defaultdict(dict)
    for run_uuid, key, value, is_nan in metrics:
        metrics_by_run[run_uuid][key] = nan if is_nan else float(value)
    params_by_run: defaultdict[str, dict[str, str]] = defaultdict(dict)
    for run_uuid, key, value in params:
        params_by_run[run_uuid][key] = value if value.__class__ is str else _text(value)
    tags_by_run: defaultdict[str, dict[str, str]] = defaultdict(dict)
    for run_uuid, key, value in tags:
        tags_by_run[run_uuid][key] = value if value.__class__ is str else _text(value)
    experiment_ids: dict[Any, str] = {}
    records = []
    for (
        run_uuid,
        name,
        experiment_id,
        user_id,
        status,
        start_time,
        end_time,
        lifecycle_stage,
        artifact_uri,
        _,
    ) in rows:
        run_tags = tags_by_run.get(run_uuid) or {}
        experiment = experiment_ids.get(experiment_id)
        if experiment is None:
            experiment = experiment_ids[experiment_id] = str(experiment_id)
        records.append(
            RunRecord(
                run_id=run_uuid,
                info={
                    # As MLflow's SqlRun.to_mlflow_entity: no name falls back to the runName tag.
                    "run_name": name or run_tags.get(RUN_NAME_TAG) or name,
                    "experiment_id": experiment,
                    "user_id": user_id,
                    "status": status,
                    "lifecycle_stage": lifecycle_stage,
                    "start_time": start_time,
                    "end_time": end_time or None,
                    "artifact_uri": artifact_uri or None,
                },
                metrics=metrics_by_run.get(run_uuid) or {},
                params=params_by_run.get(run_uuid) or {},
                tags=run_tags,
            )
        )
    return records


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _checked_run_ids(run_ids: Iterable[str]) -> list[str]:
    """``run_ids`` de-duplicated and sorted, each checked as `run_id_filters` checks it.

    Raises:
        ConfigError: An id that is not a run id.
    """
    ids = sorted(set(run_ids))
    for run_id in ids:
        if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
            raise ConfigError(f"{run_id!r} is not a run id")
    return ids


def _stages(view_type: str) -> tuple[str, ...]:
    stages = VIEW_STAGES.get(view_type)
    if stages is None:
        raise ConfigError(f"view type {view_type!r} is not one of {', '.join(VIEW_STAGES)}")
    return stages
