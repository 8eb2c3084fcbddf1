"""Every experiment's run ids, from one scan of MLflow's ``runs`` table.

MLflow's schema has no index on ``runs.experiment_id`` (sqlite, PostgreSQL): each query
for one experiment's runs reads the whole table, 0.15 s a query on a store of 1.2 million
runs. A job over 10,000 experiments asked two or three of them per experiment: hours. A
`RunIndex` is read once (experiment, lifecycle stage, id, start and end time of every
run, about 100 bytes a run) and names each experiment's runs in MLflow's order; the runs
themselves are then read by id, through the primary key.

It is a snapshot of the moment it was read: a run deleted since is skipped when read by
id; a run created since is not named, and the next refresh pulls it (its start is after
the watermark this one records, less the margin).

Example:
    >>> index = RunIndex.from_rows(
    ...     [(1, "active", "r1", "FINISHED", 10, 20), (1, "active", "r2", "RUNNING", 30, None)]
    ... )
    >>> index.run_ids(1, ("active",))
    ['r2', 'r1']
    >>> index.run_ids(1, ("active",), since_ms=20)
    ['r2', 'r1']
    >>> index.run_ids(1, ("active",), since_ms=25)
    ['r2']
    >>> index.run_ids(1, ("active",), since_ms=20, settled={"r1": 20})
    ['r2']
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mlflow_fun.extract.database.queries import NO_TIME
from mlflow_fun.extract.database.schema import RUNS

# From this many experiments on, a job reads one `RunIndex` instead of a query each.
INDEX_FROM_EXPERIMENTS = 50

_ROWS_PER_FETCH = 50_000

# lifecycle stage, status <-> one byte
_STAGES = ("active", "deleted")
_STATUSES = ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED")
_FINISHED = frozenset(_STATUSES.index(s) for s in ("FINISHED", "FAILED", "KILLED"))


@dataclass
class _Runs:
    """One experiment's runs, column by column (compact: arrays, not tuples)."""

    ids: list[str] = field(default_factory=list)
    starts: array[int] = field(default_factory=lambda: array("q"))
    ends: array[int] = field(default_factory=lambda: array("q"))
    stages: bytearray = field(default_factory=bytearray)
    statuses: bytearray = field(default_factory=bytearray)


@dataclass
class RunIndex:
    """Run ids by experiment, with what MLflow orders and filters them by."""

    runs: dict[int, _Runs] = field(default_factory=dict)
    count: int = 0

    @classmethod
    def from_rows(cls, rows: Iterable[Sequence[object]]) -> RunIndex:
        """An index of ``(experiment_id, lifecycle_stage, run_uuid, status, start_time,
        end_time)`` rows (times in ms, or None)."""
        index = cls()
        index.add(rows)
        return index

    def add(self, rows: Iterable[Sequence[object]]) -> None:
        """Add rows (see `from_rows`)."""
        for experiment_id, stage, run_id, status, start, end in rows:
            runs = self.runs.get(experiment_id)  # type: ignore[call-overload]
            if runs is None:
                runs = self.runs[experiment_id] = _Runs()  # type: ignore[index]
            runs.ids.append(str(run_id))
            runs.starts.append(NO_TIME if start is None else int(start))  # type: ignore[call-overload]
            runs.ends.append(NO_TIME if end is None else int(end))  # type: ignore[call-overload]
            runs.stages.append(_STAGES.index(stage) if stage in _STAGES else 255)
            runs.statuses.append(_STATUSES.index(status) if status in _STATUSES else 255)
            self.count += 1

    def size(self, experiment_id: int) -> int:
        """How many runs, of every stage, the experiment has."""
        runs = self.runs.get(experiment_id)
        return 0 if runs is None else len(runs.ids)

    def run_ids(
        self,
        experiment_id: int,
        stages: Sequence[str],
        since_ms: int | None = None,
        settled: Mapping[str, int] | None = None,
    ) -> list[str]:
        """The ids of the experiment's runs in ``stages`` (that started or ended at or
        after ``since_ms``, when given), in MLflow's order: start time descending (runs
        without one last), then id. Runs of ``settled`` (id -> end time) still finished
        with that end time are left out."""
        runs = self.runs.get(experiment_id)
        if runs is None:
            return []
        wanted = {_STAGES.index(s) for s in stages if s in _STAGES}
        settled = settled or {}
        chosen = [
            (-runs.starts[i], runs.ids[i])
            for i in range(len(runs.ids))
            if runs.stages[i] in wanted
            and (since_ms is None or runs.starts[i] >= since_ms or runs.ends[i] >= since_ms)
            and not (runs.statuses[i] in _FINISHED and settled.get(runs.ids[i]) == runs.ends[i])
        ]
        chosen.sort()
        return [run_id for _, run_id in chosen]


def read_run_index(conn: Connection) -> RunIndex:
    """Every run's experiment, stage, id, status and times, streamed into a `RunIndex`."""
    query = sa.select(
        RUNS.c.experiment_id,
        RUNS.c.lifecycle_stage,
        RUNS.c.run_uuid,
        RUNS.c.status,
        RUNS.c.start_time,
        RUNS.c.end_time,
    )
    index = RunIndex()
    for rows in conn.execution_options(yield_per=_ROWS_PER_FETCH).execute(query).partitions():
        index.add(rows)
    return index
