"""Small experiments read together: one snapshot of many experiments' runs.

A read of one experiment's runs costs a round of queries (the ``runs`` rows, then their
latest metrics, params, tags and inputs) whatever its size. A job over hundreds of small
experiments paid that round per experiment: pulling 200 experiments of 100 runs one by
one took 2.5 s (sqlite, run index read), in groups of up to 1,000 runs 1.9 s. Within
`DatabaseSource.indexed`, the experiments a job pulls whole are grouped in the order it
pulls them (`run_groups`), and the first pull of a group reads every run of the group,
active and deleted, in one snapshot (`GroupedRuns`); the group's other experiments are
then served from what was read.

Example:
    >>> run_groups([1, 2, 3, 4], {1: 300, 2: 600, 3: 5000, 4: 10}.__getitem__, limit=1000)
    [(1, 2), (3,), (4,)]
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from mlflow_fun.model import RunRecord

# The runs (active and deleted) a group of experiments holds at most.
GROUP_RUNS = 1_000


def run_groups(
    experiments: Sequence[int], runs_of: Callable[[int], int], limit: int = GROUP_RUNS
) -> list[tuple[int, ...]]:
    """Consecutive ``experiments`` grouped while their runs (``runs_of``) add up to at
    most ``limit``, in the order given; an experiment of more runs is a group alone.

    Example:
        >>> run_groups([7, 8, 9], {7: 1, 8: 1, 9: 1}.__getitem__, limit=2)
        [(7, 8), (9,)]
    """
    groups: list[tuple[int, ...]] = []
    group: list[int] = []
    held = 0
    for experiment in experiments:
        runs = runs_of(experiment)
        if group and held + runs > limit:
            groups.append(tuple(group))
            group, held = [], 0
        group.append(experiment)
        held += runs
    if group:
        groups.append(tuple(group))
    return groups


class GroupedRuns:
    """The runs of grouped experiments: read once per group, handed out per experiment.

    An experiment's runs are served in the order read (MLflow's order, as
    `RunIndex.run_ids` names them), filtered to the stages asked for; its records are
    dropped once its active runs have been served, so the driver holds at most the
    groups being pulled. A second ask, an experiment alone in its group and one not
    grouped get None: the caller reads them itself. Safe from several threads: the first
    pull of a group reads it, the others of that group wait for that read.

    Example:
        >>> grouped = GroupedRuns([(1, 2)], read_group)
        >>> deleted = grouped.runs(2, ("deleted",))  # reads experiments 1 and 2
        >>> active = grouped.runs(2, ("active",))  # served from that read, then dropped
        >>> grouped.runs(2, ("active",)) is None
        True

    Args:
        groups: From `run_groups`.
        read: Reads every run, active and deleted, of a group's experiments (one snapshot).
    """

    def __init__(
        self, groups: Sequence[tuple[int, ...]], read: Callable[[tuple[int, ...]], list[RunRecord]]
    ) -> None:
        shared = [group for group in groups if len(group) > 1]
        self._group_of = {experiment: group for group in shared for experiment in group}
        self._locks = {group: threading.Lock() for group in shared}
        self._read = read
        self._done: set[tuple[int, ...]] = set()
        self._records: dict[int, list[RunRecord]] = {}

    def runs(self, experiment: int, stages: Sequence[str]) -> list[RunRecord] | None:
        """The experiment's runs in ``stages``, or None when this experiment is not served
        from a group (any more)."""
        group = self._group_of.get(experiment)
        if group is None:
            return None
        with self._locks[group]:
            if group not in self._done:
                by_experiment: dict[int, list[RunRecord]] = {e: [] for e in group}
                for record in self._read(group):
                    by_experiment.get(int(record.info["experiment_id"]), []).append(record)
                self._records.update(by_experiment)
                self._done.add(group)
            held = self._records.get(experiment)
            if held is None:
                return None
            if "active" in stages:
                del self._records[experiment]
            return [run for run in held if run.info["lifecycle_stage"] in stages]
