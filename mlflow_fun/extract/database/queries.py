"""The queries `DatabaseSource` runs on MLflow's tables, and rows to records."""

from __future__ import annotations

import functools
import logging
import math
import re
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from mlflow_fun.errors import ConfigError
from mlflow_fun.extract.database.schema import (
    DATASETS,
    EXPERIMENTS,
    INPUT_TAGS,
    INPUTS,
    LATEST_METRICS,
    METRICS,
    PARAMS,
    RUNS,
    TAGS,
    database_error,
)
from mlflow_fun.model import CONTEXT_TAG, DatasetInput, MetricPoint, RunRecord, sorted_inputs

logger = logging.getLogger(__name__)


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


# Sorts rows whose time is NULL after every real time in a descending order.
NO_TIME = -(2**63)


DIGITS = re.compile(r"[0-9]{1,18}")


RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # as `mlflow_fun.extract.source.run_id_filters`


def parse_experiment_id(experiment_id: str | int) -> int | None:
    """MLflow's experiment id as the integer the database keeps, or None if it cannot be one.

    Example:
        >>> parse_experiment_id("12")
        12
    """
    text = str(experiment_id).strip()
    return int(text) if DIGITS.fullmatch(text) else None


Cursor = tuple[int, Any]


"""Where a keyset page ended: (sort key, tie-breaking id) of its last row."""


@dataclass(frozen=True)
class _Keyset:
    """A descending sort key (NULLs last) with an ascending id to break ties."""

    key: sa.ColumnElement[Any]
    tie: sa.ColumnElement[Any]

    @classmethod
    def of(cls, key: sa.ColumnClause[Any], tie: sa.ColumnClause[Any]) -> _Keyset:
        return cls(sa.func.coalesce(key, sa.literal(NO_TIME, sa.BigInteger)), tie)

    def order_by(self) -> tuple[sa.UnaryExpression[Any], sa.ColumnElement[Any]]:
        return self.key.desc(), self.tie

    def after(self, cursor: Cursor) -> sa.ColumnElement[bool]:
        key, tie = cursor
        return sa.or_(self.key < key, sa.and_(self.key == key, self.tie > tie))

    def up_to(self, cursor: Cursor) -> sa.ColumnElement[bool]:
        key, tie = cursor
        return sa.or_(self.key > key, sa.and_(self.key == key, self.tie <= tie))

    def between(self, previous: Cursor | None, last: Cursor) -> list[sa.ColumnElement[bool]]:
        return ([self.after(previous)] if previous else []) + [self.up_to(last)]


RUN_ORDER = _Keyset.of(RUNS.c.start_time, RUNS.c.run_uuid)


# The columns `to_records` unpacks, in its order (the sort key follows them in a query).
RUN_COLUMNS = (
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


RUN_IDS: sa.BindParameter[list[str]] = sa.bindparam("run_ids", expanding=True)


LATEST_METRICS_OF = sa.select(
    LATEST_METRICS.c.run_uuid, LATEST_METRICS.c.key, LATEST_METRICS.c.value, LATEST_METRICS.c.is_nan
).where(LATEST_METRICS.c.run_uuid.in_(RUN_IDS))


PARAMS_OF = sa.select(PARAMS.c.run_uuid, PARAMS.c.key, PARAMS.c.value).where(
    PARAMS.c.run_uuid.in_(RUN_IDS)
)


TAGS_OF = sa.select(TAGS.c.run_uuid, TAGS.c.key, TAGS.c.value).where(TAGS.c.run_uuid.in_(RUN_IDS))


HISTORY_OF = sa.select(
    METRICS.c.run_uuid,
    METRICS.c.key,
    METRICS.c.value,
    METRICS.c.step,
    METRICS.c.timestamp,
    METRICS.c.is_nan,
).where(METRICS.c.run_uuid.in_(RUN_IDS))


def _constant(text: str) -> sa.ColumnElement[str]:
    """A string constant written into the SQL: `fetch_all` binds the run ids only."""
    if not re.fullmatch(r"[\w.]+", text):
        raise ValueError(f"not a plain constant: {text!r}")
    return sa.literal_column(f"'{text}'")


INPUTS_OF = (
    sa.select(
        INPUTS.c.destination_id,
        DATASETS.c.name,
        DATASETS.c.digest,
        DATASETS.c.dataset_source_type,
        INPUT_TAGS.c.value,
    )
    .select_from(
        INPUTS.join(DATASETS, DATASETS.c.dataset_uuid == INPUTS.c.source_id).outerjoin(
            INPUT_TAGS,
            sa.and_(
                INPUT_TAGS.c.input_uuid == INPUTS.c.input_uuid,
                INPUT_TAGS.c.name == _constant(CONTEXT_TAG),
            ),
        )
    )
    .where(
        INPUTS.c.source_type == _constant("DATASET"),
        INPUTS.c.destination_type == _constant("RUN"),
        INPUTS.c.destination_id.in_(RUN_IDS),
    )
)


EXPERIMENT_ORDER = _Keyset.of(EXPERIMENTS.c.creation_time, EXPERIMENTS.c.experiment_id)


ChildRows = tuple[Sequence[Any], Sequence[Any], Sequence[Any], Sequence[Any]]


"""Rows of ``latest_metrics``, ``params`` and ``tags``: (run_uuid, key, value[, is_nan]);
of run inputs: (run_uuid, name, digest, source type, context)."""


def child_rows(
    conn: Connection, run_ids: Sequence[str], per_query: int, with_inputs: bool = False
) -> ChildRows:
    """The latest metrics, params, tags (and dataset inputs) of ``run_ids``: one query per
    table per chunk.

    Looked up by ``run_uuid`` (each table has an index on it), ``per_query`` ids at a
    time: one query per table for a batch of the default size.
    """
    metrics: list[Any] = []
    params: list[Any] = []
    tags: list[Any] = []
    inputs: list[Any] = []
    for start in range(0, len(run_ids), per_query):
        chunk = run_ids[start : start + per_query]
        metrics += fetch_all(conn, LATEST_METRICS_OF, chunk)
        params += fetch_all(conn, PARAMS_OF, chunk)
        tags += fetch_all(conn, TAGS_OF, chunk)
        if with_inputs:
            inputs += fetch_all(conn, INPUTS_OF, chunk)
    return metrics, params, tags, inputs


def fetch_rows(conn: Connection, query: sa.Select[Any]) -> list[Any]:
    """The rows of ``query`` as the driver's own tuples (see `fetch_all`)."""
    compiled = query.compile(dialect=conn.dialect)
    state = compiled.construct_expanded_state({})
    args = state.positional_parameters if compiled.positional else state.parameters
    return execute_raw(conn, state.statement, args)


def fetch_all(conn: Connection, query: sa.Select[Any], run_ids: Sequence[str]) -> list[Any]:
    """The rows of ``query`` for ``run_ids``, as the driver's own tuples, on the
    connection's DBAPI cursor.

    A batch holds about 16 child rows per run: skipping SQLAlchemy's `Row` (and its result
    processing) halves the objects made per row and the garbage collector's work. The
    queries select only strings and numbers, which every driver returns as Python's own
    (``is_nan`` as 0/1 or a bool). SQLAlchemy still renders the SQL for the dialect.

    Raises:
        DatabaseError: The driver refused the query (the message without the password).
    """
    statement, names = expanded(query, conn.dialect, len(run_ids))
    args: Any = dict(zip(names, run_ids, strict=True)) if names is not None else list(run_ids)
    return execute_raw(conn, statement, args)


def execute_raw(conn: Connection, statement: str, args: Any) -> list[Any]:
    cursor = conn.connection.cursor()
    try:
        cursor.execute(statement, args)
        return list(cursor.fetchall())
    except conn.dialect.loaded_dbapi.Error as e:
        raise database_error(e, conn.engine, "query on database", "failed", cursor=cursor) from e
    finally:
        cursor.close()


@functools.lru_cache(maxsize=32)
def expanded(query: sa.Select[Any], dialect: Any, count: int) -> tuple[str, tuple[str, ...] | None]:
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


def ids_per_query(engine: Engine) -> int:
    """How many run ids one IN list may hold on ``engine``."""
    if engine.dialect.name == "sqlite":
        import sqlite3

        if sqlite3.sqlite_version_info < (3, 32, 0):
            return OLD_SQLITE_IDS_PER_QUERY
    return RUN_IDS_PER_QUERY


def to_records(
    rows: Sequence[Any],
    metrics: Sequence[Any],
    params: Sequence[Any],
    tags: Sequence[Any],
    inputs: Sequence[Any] = (),
) -> list[RunRecord]:
    """`RunRecord`s of the ``runs`` rows (columns of `RUN_COLUMNS`) and their children.

    The hot loop of `DatabaseSource`: rows are unpacked as tuples, no call per row.
    """
    nan, shared = math.nan, sys.intern  # one copy of each key for all the runs held
    one: Any = {}.setdefault  # one copy of each param and tag value a batch: 2,029 -> 1,616 B/run
    metrics_by_run: defaultdict[str, dict[str, float]] = defaultdict(dict)
    for run_uuid, key, value, is_nan in metrics:
        metrics_by_run[run_uuid][shared(key)] = nan if is_nan else float(value)
    params_by_run: defaultdict[str, dict[str, str]] = defaultdict(dict)
    for run_uuid, key, value in params:
        params_by_run[run_uuid][shared(key)] = one(text := as_text(value), text)
    tags_by_run: defaultdict[str, dict[str, str]] = defaultdict(dict)
    for run_uuid, key, value in tags:
        tags_by_run[run_uuid][shared(key)] = one(text := as_text(value), text)
    inputs_by_run: defaultdict[str, list[DatasetInput]] = defaultdict(list)
    for run_uuid, name, digest, source_type, context in inputs:
        inputs_by_run[run_uuid].append(DatasetInput(name, digest, source_type, context))
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
                    "run_name": name and one(name, name) or run_tags.get(RUN_NAME_TAG) or name,
                    "experiment_id": experiment,
                    "user_id": user_id and shared(user_id),
                    "status": status and shared(status),
                    "lifecycle_stage": lifecycle_stage and shared(lifecycle_stage),
                    "start_time": start_time,
                    "end_time": end_time or None,
                    "artifact_uri": artifact_uri or None,
                },
                metrics=metrics_by_run.get(run_uuid) or {},
                params=params_by_run.get(run_uuid) or {},
                tags=run_tags,
                inputs=sorted_inputs(inputs_by_run.get(run_uuid, ())),
            )
        )
    return records


def as_text(value: Any) -> str:
    return value if value.__class__ is str else "" if value is None else str(value)


def checked_run_ids(run_ids: Iterable[str]) -> list[str]:
    """``run_ids`` de-duplicated and sorted, each checked as `run_id_filters` checks it.

    Raises:
        ConfigError: An id that is not a run id.
    """
    ids = sorted(set(run_ids))
    for run_id in ids:
        if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
            raise ConfigError(f"{run_id!r} is not a run id")
    return ids


def view_stages(view_type: str) -> tuple[str, ...]:
    stages = VIEW_STAGES.get(view_type)
    if stages is None:
        raise ConfigError(f"view type {view_type!r} is not one of {', '.join(VIEW_STAGES)}")
    return stages


def run_keys_after(
    selection: tuple[sa.ColumnElement[bool], ...], cursor: Cursor | None, size: int
) -> sa.Select[Any]:
    """The next ``size`` runs matching ``selection`` after ``cursor``, in MLflow's order:
    ``(run_uuid, sort key)`` rows."""
    return (
        sa.select(RUNS.c.run_uuid, RUN_ORDER.key)
        .where(*selection, *([RUN_ORDER.after(cursor)] if cursor else []))
        .order_by(*RUN_ORDER.order_by())
        .limit(size)
    )


def runs_by_id(selection: tuple[sa.ColumnElement[bool], ...], ids: Sequence[str]) -> sa.Select[Any]:
    """The ``runs`` rows (`RUN_COLUMNS`, the sort key) of ``ids`` that match ``selection``."""
    return sa.select(*RUN_COLUMNS, RUN_ORDER.key).where(RUNS.c.run_uuid.in_(list(ids)), *selection)


def history_points(conn: Connection, wanted: Mapping[str, frozenset[str]]) -> list[MetricPoint]:
    """The logged values of the keys ``wanted`` (run id -> metric keys)."""
    rows = fetch_all(conn, HISTORY_OF, list(wanted))
    nan = math.nan
    return [
        MetricPoint(run_uuid, key, nan if is_nan else float(value), int(step), int(timestamp))
        for run_uuid, key, value, step, timestamp, is_nan in rows
        if key in wanted[run_uuid]
    ]
