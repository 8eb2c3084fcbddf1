"""The rows of written experiments that wait to be written together: ``runs``,
``metric_history`` and the states (`mlflow_fun.load.writer.TableWriter.write_side_rows`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mlflow_fun.extract.incremental import FULL, RefreshState
from mlflow_fun.load.side_tables import history_table, runs_table
from mlflow_fun.model import MetricPoint, RunRecord

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass
class SideBatch:
    """Rows for ``runs`` and ``metric_history`` and the states of written experiments,
    kept until they are written together (`TableWriter.write_side_rows`)."""

    full: list[str] = field(default_factory=list)
    full_runs: list[pa.Table] = field(default_factory=list)
    full_history: list[pa.Table] = field(default_factory=list)
    merged_runs: list[pa.Table] = field(default_factory=list)
    merged_history: list[pa.Table] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    states: list[RefreshState] = field(default_factory=list)
    experiment_ids: list[str] = field(default_factory=list)
    rows: int = 0

    @property
    def empty(self) -> bool:
        """Nothing to write."""
        return not self.states

    def clear(self) -> None:
        """Forget every row and state (once written, or once their write failed)."""
        fresh = SideBatch()
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(fresh, name))

    def add(
        self,
        experiment_id: str,
        mode: str,
        runs: Sequence[RunRecord],
        history: Sequence[MetricPoint] | None,
        state: RefreshState,
        deleted: Iterable[str] = (),
    ) -> None:
        """Take the rows (as Arrow tables), the runs ``deleted`` since the last refresh
        (merged: their rows go) and the next state of one written experiment."""
        if mode != FULL:
            self.deleted += sorted(deleted)
        if runs or mode == FULL:
            table = runs_table(runs)
            (self.full_runs if mode == FULL else self.merged_runs).append(table)
        if history is not None and (history or mode == FULL):
            table = history_table(experiment_id, history)
            (self.full_history if mode == FULL else self.merged_history).append(table)
        if mode == FULL:
            self.full.append(experiment_id)
        self.states.append(state)
        self.experiment_ids.append(experiment_id)
        self.rows += len(runs)
