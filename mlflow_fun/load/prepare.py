"""Pull one experiment (all of it, or what changed) and flatten it for its table."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlflow_fun.extract.incremental import Pull, RefreshState, pull_all, pull_changes
from mlflow_fun.extract.source import RunSource
from mlflow_fun.load.deleted_runs import rewrite_for_deletes
from mlflow_fun.load.plan import merged_columns, merged_param_types, names_by_key
from mlflow_fun.model import MetricPoint, RunRecord
from mlflow_fun.transform.flatten import FlatRuns, flatten_runs, keep_column_order
from mlflow_fun.transform.typing_rules import ColumnType

if TYPE_CHECKING:
    from pyspark.sql.types import StructType

    from mlflow_fun.load.writer import TableWriter

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prepared:
    """One experiment pulled and flattened, ready to be written.

    Attributes:
        pull: The runs pulled.
        flat: ``pull.runs`` flattened with the table's names and types.
        existing: The table's schema before this refresh; None if there is no table (or
            an incremental pull found nothing to merge: then it is not read).
        history: Metric values of ``pull.runs`` (with history only).
        fallback: Why an incremental pull cannot be merged (a full refresh is needed).
        seconds: Time spent pulling and flattening.
    """

    pull: Pull
    flat: FlatRuns
    existing: StructType | None
    history: tuple[MetricPoint, ...] | None
    fallback: str | None
    seconds: float


def prepare_experiment(
    source: RunSource,
    experiment_id: str,
    existing: Callable[[], StructType | None],
    state: RefreshState | None,
    *,
    margin_ms: int,
    with_history: bool,
    active_runs: Callable[[], list[RunRecord]] | None = None,
    on_pulled: Callable[[], None] = lambda: None,
) -> Prepared:
    """Pull (incrementally when ``state`` is given) and flatten one experiment.

    A full pull keeps the column names of ``existing`` (and their order); an incremental
    one keeps every name taken and the param types the table can hold, or says in
    `Prepared.fallback` why only a full refresh can decide.

    Args:
        source: Where the runs come from.
        experiment_id: The experiment.
        existing: Reads the table's schema (None if there is no table); an incremental
            pull that finds nothing to merge does not call it.
        state: The last refresh's state; None for a full pull.
        margin_ms: How far before the watermark an incremental pull looks.
        with_history: Also pull the metric history (not when falling back).
        active_runs: Pulls the active runs of a full pull (`TwoEndedPull.run`).
        on_pulled: Called once a full pull's runs are in (or it failed).
    """
    started = time.monotonic()
    schema, fallback = None, None
    if state is None:
        try:
            pull = pull_all(source, experiment_id, margin_ms, active_runs)
        finally:
            on_pulled()
        schema = existing()
        flat = flatten_runs(pull.runs, names_by_key(schema))
        if schema is not None:
            flat = keep_column_order(flat, schema.fieldNames())
    else:
        pull = pull_changes(source, experiment_id, state, margin_ms)
        param_types: dict[str, ColumnType] = {}
        if pull.runs or pull.newly_deleted:  # else nothing to merge: no schema to read
            schema = existing()
            param_types, fallback = merged_param_types(pull, schema, names_by_key(schema))
        previous = names_by_key(schema)
        flat = flatten_runs(pull.runs, previous, reserve_previous=True, param_types=param_types)
    history = None
    if with_history and fallback is None:
        history = tuple(source.iter_metric_history(pull.runs))
    logger.info(
        "pulled experiment_id=%s mode=%s runs=%d seconds=%.2f",
        experiment_id,
        pull.mode,
        len(pull.runs),
        time.monotonic() - started,
    )
    return Prepared(pull, flat, schema, history, fallback, time.monotonic() - started)


def rewrite_reason_of(writer: TableWriter, name: str, prepared: Prepared) -> str | None:
    """Why an incremental pull must become a full refresh of table ``name``: its
    `Prepared.fallback`, or runs deleted from the table in a way only a rewrite shows
    (`rewrite_for_deletes`, reading by delta-rs the tables the ``writer`` has locally);
    None to merge it."""
    return prepared.fallback or rewrite_for_deletes(
        writer.spark,
        writer.database,
        name,
        prepared.pull,
        merged_columns(prepared.existing, prepared.flat),
        writer.delete_paths(name),
    )
