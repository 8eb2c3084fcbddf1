"""Runs straight from MLflow's own database: the tables behind a tracking server.

`DatabaseSource` reads ``runs``, ``latest_metrics``, ``params``, ``tags``, ``metrics``,
``experiments`` and ``experiment_tags`` with SQLAlchemy Core and yields the same
`RunRecord`, `MetricPoint` and `Experiment` objects as `RestSource` does for the server on
top of that database. It reads ``runs`` in keyset queries of up to 50,000 rows and asks
one query per child table per batch of runs (`mlflow_fun.extract.database.queries`),
instead of serialising every run to JSON, which makes it much faster than REST on big
stores::

    # the password from MLFLOW_FUN_DB_PASSWORD, not from the command line
    source = DatabaseSource("postgresql+psycopg2://mlflow@db-host/mlflow")
    for run in source.iter_runs("1"):
        ...

Read-only: nothing here writes to the database. Values always reach SQL as bound
parameters; table and column names are fixed in `mlflow_fun.extract.database.schema`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from mlflow_fun.errors import ConfigError, ExperimentNotFoundError
from mlflow_fun.extract.database.experiments import DatabaseExperiments
from mlflow_fun.extract.database.groups import GroupedRuns, run_groups
from mlflow_fun.extract.database.queries import (
    RUN_ROWS_PER_QUERY,
    Cursor,
    checked_run_ids,
    child_rows,
    fetch_rows,
    history_points,
    ids_per_query,
    parse_experiment_id,
    run_keys_after,
    runs_by_id,
    to_records,
    view_stages,
)
from mlflow_fun.extract.database.reader import Reader
from mlflow_fun.extract.database.run_index import INDEX_FROM_EXPERIMENTS, RunIndex, read_run_index
from mlflow_fun.extract.database.schema import RUNS, open_engine, safe_url
from mlflow_fun.extract.http import RetrySettings
from mlflow_fun.extract.source import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from mlflow_fun.model import MetricPoint, RunRecord

logger = logging.getLogger(__name__)


class DatabaseSource(DatabaseExperiments):
    """Runs and experiments read from MLflow's back-end database, in batches.

    A `RunSource`: yields exactly what `RestSource` yields for the tracking server on top
    of the same database (metrics are the latest values, NaN as ``nan``; MLflow stores
    +-inf as +-1.7976931348623157e308 and so does this source). Runs come in MLflow's
    default order (``start_time`` descending, then ``run_id``; runs without a start time
    last); experiments newest first, then by id.

    Consistent and patient: a batch of runs is read in one snapshot of the database (its
    ``runs`` rows and all their metrics, params, tags and inputs), so a run being logged
    while the source reads is seen whole as it was at one moment, never half old and half
    new. A read that fails because the database is restarting or dropped the connection
    is read again, with the HTTP client's budget (`RetrySettings`).

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
        retry: How reads are retried when the database is unavailable; by default
            MLflow's ``MLFLOW_HTTP_REQUEST_*`` variables in ``env``.

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
        retry: RetrySettings | None = None,
    ) -> None:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ConfigError(f"page_size={page_size} must be between 1 and {MAX_PAGE_SIZE}")
        if run_rows_per_query is not None and run_rows_per_query < 1:
            raise ConfigError(f"run_rows_per_query={run_rows_per_query} must be at least 1")
        self._index: RunIndex | None = None
        self._groups: GroupedRuns | None = None
        self.engine, self._owns_engine = open_engine(connection, env=env)
        self.page_size = page_size
        self.run_rows_per_query = run_rows_per_query or max(page_size, RUN_ROWS_PER_QUERY)
        self.tracking_uri = safe_url(self.engine)
        self._reader = Reader(self.engine, retry or RetrySettings.from_env(env))

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
        stages = view_stages(run_view_type)
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
        if self._index is not None and len(parsed) == 1 and parsed[0] is not None:
            grouped = self._grouped(parsed[0], stages) if max_results is None else None
            if grouped is not None:
                yield from grouped
                return
            ids = self._index.run_ids(parsed[0], stages)
            yield from self._read_ids(selection, ids if max_results is None else ids[:max_results])
            return
        yield from self._iter_batches(selection, max_results)

    def iter_changed_runs(
        self, experiment_id: str, since_ms: int, settled: Mapping[str, int] | None = None
    ) -> Iterator[RunRecord]:
        """Yield the active runs that started or ended at or after ``since_ms``, each once.

        One keyset-paginated query (``start_time >= since_ms OR end_time >= since_ms``);
        the same runs as `RestSource.iter_changed_runs`, in MLflow's default order. Within
        `indexed`, those of ``settled`` (id -> end time) still so finished are left out.

        Raises:
            ExperimentNotFoundError: An experiment id that is not a number.
        """
        since, number = int(since_ms), self._experiment_number(experiment_id)
        selection = (
            RUNS.c.experiment_id == number,
            RUNS.c.lifecycle_stage == "active",
            sa.or_(RUNS.c.start_time >= since, RUNS.c.end_time >= since),
        )
        if self._index is not None:
            named = self._index.run_ids(number, ("active",), since, settled)
            yield from self._read_ids(selection, named)
            return
        yield from self._iter_batches(selection, None)

    def iter_runs_by_id(
        self, experiment_id: str, run_ids: Iterable[str], run_view_type: str = "ACTIVE_ONLY"
    ) -> Iterator[RunRecord]:
        """Yield the runs among ``run_ids`` that belong to the experiment and the view type.

        Ids are de-duplicated and asked for up to `RUN_IDS_PER_QUERY` at a time, in the order
        given, each chunk in one snapshot; ids that do not exist, belong to another experiment
        or have another lifecycle stage are skipped, as `RestSource.iter_runs_by_id` does.

        Example:
            >>> [r.run_id for r in source.iter_runs_by_id("1", ids, "DELETED_ONLY")]

        Raises:
            ConfigError: An id that is not a run id, or a bad view type.
            ExperimentNotFoundError: An experiment id that is not a number.
        """
        stages = view_stages(run_view_type)
        number = self._experiment_number(experiment_id)
        ids = checked_run_ids(run_ids)
        selection = (RUNS.c.experiment_id == number, RUNS.c.lifecycle_stage.in_(stages))
        yield from self._read_ids(selection, ids, ids_per_query(self.engine))

    def _read_ids(
        self,
        selection: tuple[sa.ColumnElement[bool], ...],
        ids: Sequence[str],
        chunk: int | None = None,
    ) -> Iterator[RunRecord]:
        """The runs ``ids`` matching ``selection``, in order, ``chunk`` ids to a snapshot."""
        per_query = ids_per_query(self.engine)
        chunk = chunk or self.page_size
        for start in range(0, len(ids), chunk):
            part = list(ids[start : start + chunk])
            read = partial(self._batch, selection=selection, ids=part, per_query=per_query)
            yield from self._reader.read(read, snapshot=True)

    @contextmanager
    def indexed(self, experiments: int, full_pulls: Sequence[str] = ()) -> Iterator[None]:
        """Within it, one experiment's runs are named by a `RunIndex` read at its start,
        when at least `INDEX_FROM_EXPERIMENTS` ``experiments`` are to be read; the small
        ones of ``full_pulls`` (read whole, in that order) are read in groups (`groups`)."""
        if experiments < INDEX_FROM_EXPERIMENTS or self._index is not None:
            yield
            return
        started = time.monotonic()
        self._index = index = self._reader.read(read_run_index, snapshot=True)
        seconds = time.monotonic() - started
        logger.info("run index read runs=%d seconds=%.2f", index.count, seconds)
        numbers = [n for n in map(parse_experiment_id, full_pulls) if n is not None]
        self._groups = GroupedRuns(run_groups(numbers, index.size), self._read_group)
        try:
            yield
        finally:
            self._index = self._groups = None

    def _grouped(self, experiment: int, stages: Sequence[str]) -> list[RunRecord] | None:
        return None if self._groups is None else self._groups.runs(experiment, stages)

    def _read_group(self, group: tuple[int, ...]) -> list[RunRecord]:
        """Every run, active or deleted, of the experiments of ``group``, in one snapshot."""
        assert self._index is not None
        stages = view_stages("ALL")
        ids = [i for e in group for i in self._index.run_ids(e, stages)]
        selection = (RUNS.c.lifecycle_stage.in_(stages),)
        runs = list(self._read_ids(selection, ids, chunk=max(len(ids), 1)))
        logger.debug("run group read experiments=%d runs=%d", len(group), len(runs))
        return runs

    def page_search(self) -> None:
        """None: this source is read by one stream per experiment."""

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
        per_query = ids_per_query(self.engine)
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
        return self._reader.read(lambda conn: history_points(conn, wanted))

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
        """Runs matching ``selection`` in MLflow's order.

        A keyset query names the next ``run_rows_per_query`` runs (id and sort key); then
        each ``page_size`` of them is read whole in one snapshot: their ``runs`` rows again
        (a run deleted since the keyset query is skipped) and their children.
        """
        cursor: Cursor | None = None
        remaining = max_results
        per_query = ids_per_query(self.engine)
        while remaining is None or remaining > 0:
            size = self.run_rows_per_query
            size = size if remaining is None else min(size, remaining)
            query = run_keys_after(selection, cursor, size)
            keys: list[Any] = self._reader.read(partial(fetch_rows, query=query))
            for start in range(0, len(keys), self.page_size):
                began = time.monotonic()
                ids = [key[0] for key in keys[start : start + self.page_size]]
                read = partial(self._batch, selection=selection, ids=ids, per_query=per_query)
                batch = self._reader.read(read, snapshot=True)
                logger.debug("run batch runs=%d seconds=%.3f", len(batch), time.monotonic() - began)
                yield from batch
            if len(keys) < size:
                return
            cursor = (keys[-1][1], keys[-1][0])
            if remaining is not None:
                remaining -= len(keys)

    def _batch(
        self,
        conn: Connection,
        selection: tuple[sa.ColumnElement[bool], ...],
        ids: list[str],
        per_query: int,
    ) -> list[RunRecord]:
        """The runs ``ids`` that still match ``selection``, in the order of ``ids``
        (``per_query`` ids to an IN list, as the children are asked for)."""
        found = {
            row[0]: row
            for start in range(0, len(ids), per_query)
            for row in fetch_rows(conn, runs_by_id(selection, ids[start : start + per_query]))
        }
        rows = [found[run_id] for run_id in ids if run_id in found]
        return to_records(rows, *child_rows(conn, list(found), per_query, self._reader.has_inputs))
