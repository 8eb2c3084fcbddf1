"""Planning a build: which experiments, a full rewrite or a MERGE, the merged param types.

Pure but for the lookups it is given: nothing here writes."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlflow_fun.config import check_table_format
from mlflow_fun.errors import ExperimentNotFoundError
from mlflow_fun.extract.incremental import Pull, RefreshState
from mlflow_fun.extract.source import RunSource
from mlflow_fun.model import Experiment
from mlflow_fun.transform.flatten import FlatRuns
from mlflow_fun.transform.frames import column_keys
from mlflow_fun.transform.naming import (
    HISTORY_TABLE,
    INFO,
    PARAM,
    RUNS_TABLE,
    ColumnKey,
    table_name,
)
from mlflow_fun.transform.typing_rules import ColumnType, widened_type

if TYPE_CHECKING:
    from pyspark.sql.types import StructType

logger = logging.getLogger(__name__)

# From this many ids on, the experiments are listed (a page of 1,000 a call) rather than
# asked for one by one; an id the listing lacks is still asked for (and refused) alone.
LIST_FROM_IDS = 50


@dataclass(frozen=True)
class ExperimentPlan:
    """How one experiment's table will be refreshed.

    Attributes:
        experiment: The experiment.
        state: What the last refresh saw; None before the first.
        exists: The table exists (its schema is read when the experiment is pulled).
        merge: True to MERGE the runs that changed; False to rewrite the table.
        error: Why the plan could not be made (reported as the experiment's failure).
    """

    experiment: Experiment
    state: RefreshState | None
    exists: bool
    merge: bool
    error: Exception | None = None

    @property
    def rebuild_pending(self) -> RefreshState | None:
        """The state to store before a full refresh replaces an incremental one, or None.

        A full refresh may see what an incremental one cannot; until the state that
        follows it is written, the next run must be a full one too.
        """
        if self.merge or self.state is None or self.state.watermark_ms is None:
            return None
        return self.state.pending()


@dataclass(frozen=True)
class RefreshOptions:
    """The settings that decide between a full refresh and a MERGE."""

    full_refresh: bool = False
    table_format: str = "delta"
    with_history: bool = False

    def __post_init__(self) -> None:
        check_table_format(self.table_format)


def can_merge(
    options: RefreshOptions,
    exists: bool,
    state: RefreshState | None,
    side_tables_exist: bool,
) -> bool:
    """True when an experiment can be refreshed incrementally (MERGE of what changed).

    Example:
        >>> can_merge(RefreshOptions(full_refresh=True), True, state, True)
        False
    """
    if options.full_refresh or options.table_format != "delta" or not exists or state is None:
        return False
    if state.watermark_ms is None or (options.with_history and not state.with_history):
        return False
    return side_tables_exist


def plan_experiments(
    experiments: Sequence[Experiment],
    states: Mapping[str, RefreshState],
    options: RefreshOptions,
    table_exists: Callable[[str], bool],
) -> list[ExperimentPlan]:
    """One `ExperimentPlan` per experiment, in order; a failure is kept in its plan."""
    side = [RUNS_TABLE] + ([HISTORY_TABLE] if options.with_history else [])
    plans = []
    for experiment in experiments:
        state = states.get(experiment.experiment_id)
        try:
            exists = table_exists(table_name(experiment.experiment_id))
            merge = can_merge(options, exists, state, all(table_exists(t) for t in side))
            plans.append(ExperimentPlan(experiment, state, exists, merge))
        except Exception as e:  # reported as this experiment's failure
            plans.append(ExperimentPlan(experiment, state, False, False, e))
    return plans


def full_pulls(plans: Sequence[ExperimentPlan]) -> list[str]:
    """The experiments of ``plans`` whose every run is pulled (no MERGE, no error), in
    the order given."""
    return [p.experiment.experiment_id for p in plans if not p.merge and p.error is None]


def resolve_experiments(
    source: RunSource, experiment_ids: Sequence[str] | None
) -> list[Experiment]:
    """The experiments to load: the given ids (all checked first), else every active one.

    Raises:
        ExperimentNotFoundError: Some ids do not exist; the message lists all of them.
    """
    if experiment_ids is None:
        return list(source.iter_experiments())
    listed: dict[str, Experiment] = {}
    if len(experiment_ids) >= LIST_FROM_IDS:  # one page of a listing, not a call per id
        listed = {e.experiment_id: e for e in source.iter_experiments("ALL")}
    experiments, missing = [], []
    for experiment_id in experiment_ids:
        try:
            found = listed.get(experiment_id) or source.get_experiment(experiment_id)
            experiments.append(found)
        except ExperimentNotFoundError:
            missing.append(experiment_id)
    if missing:
        raise ExperimentNotFoundError(
            f"experiment id(s) {', '.join(missing)} do not exist at {source.tracking_uri}; "
            "nothing was written"
        )
    return experiments


def names_by_key(existing: StructType | None) -> dict[ColumnKey, str]:
    """(kind, key) -> column name of an existing table."""
    if existing is None:
        return {}
    return {key: column for column, key in column_keys(existing).items()}


def merged_columns(existing: StructType | None, flat: FlatRuns) -> dict[ColumnKey, ColumnType]:
    """(kind, key) -> type of every metric, param and tag column of the table ``existing``
    once ``flat`` (runs pulled incrementally, typed by `merged_param_types`) is merged."""
    columns: dict[ColumnKey, ColumnType] = {}
    keys = column_keys(existing) if existing is not None else {}
    for field in existing.fields if existing is not None else ():
        column_type = SPARK_TO_COLUMN.get(field.dataType.simpleString())
        if field.name in keys and column_type is not None:
            columns[keys[field.name]] = column_type
    columns.update({(c.kind, c.key): c.type for c in flat.columns if c.kind != INFO})
    return columns


def merged_param_types(
    pull: Pull, existing: StructType | None, names: dict[ColumnKey, str]
) -> tuple[dict[str, ColumnType], str | None]:
    """Types of the params of ``pull.runs`` once merged into ``existing``.

    Returns:
        key -> type for the params the table has, and why the runs cannot be merged
        (a type that only a full refresh can decide), or None.
    """
    if existing is None:
        return {}, "no table"
    types = {field.name: SPARK_TO_COLUMN.get(field.dataType.simpleString()) for field in existing}
    keys = {key for run in pull.runs for key in run.params}
    merged: dict[str, ColumnType] = {}
    for key in sorted(keys):
        column = names.get((PARAM, key))
        if column is None:
            continue
        current = types.get(column)
        widened = widened_type(current, [r.params.get(key) for r in pull.runs]) if current else None
        if widened is None:
            return {}, f"param {key!r} changes type"
        merged[key] = widened
    return merged, None


SPARK_TO_COLUMN: dict[str, ColumnType] = {
    "string": "string",
    "int": "int",
    "bigint": "bigint",
    "double": "double",
    "boolean": "boolean",
}
