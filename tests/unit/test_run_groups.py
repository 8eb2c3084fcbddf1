"""Small experiments read together (`run_groups`, `GroupedRuns`) and which experiments a
build pulls whole (`full_pulls`)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from mlflow_fun.extract.database.groups import GroupedRuns, run_groups
from mlflow_fun.extract.incremental import RefreshState
from mlflow_fun.load.plan import ExperimentPlan, full_pulls
from mlflow_fun.model import Experiment, RunRecord


def _run(run_id: str, experiment: int, stage: str = "active") -> RunRecord:
    info = {"experiment_id": str(experiment), "lifecycle_stage": stage}
    return RunRecord(run_id, info, {}, {}, {})


STORE = {
    1: [_run("a", 1), _run("gone", 1, "deleted"), _run("b", 1)],
    2: [_run("c", 2)],
    3: [],
}


class Reads:
    """`GroupedRuns`' read: the store's runs of a group, counted."""

    def __init__(self) -> None:
        self.groups: list[tuple[int, ...]] = []
        self.fail = False

    def __call__(self, group: tuple[int, ...]) -> list[RunRecord]:
        self.groups.append(group)
        if self.fail:
            raise ConnectionError("database restarting")
        return [run for experiment in group for run in STORE.get(experiment, [])]


@pytest.mark.parametrize(
    ("sizes", "limit", "expected"),
    [
        ({1: 300, 2: 600, 3: 5000, 4: 10}, 1000, [(1, 2), (3,), (4,)]),
        ({1: 500, 2: 500, 3: 1}, 1000, [(1, 2), (3,)]),  # exactly at the limit
        ({1: 0, 2: 0, 3: 0}, 1000, [(1, 2, 3)]),  # no runs: all in one group
        ({1: 2000, 2: 1}, 1000, [(1,), (2,)]),  # one too big: alone, the next starts anew
        ({}, 1000, []),
    ],
)
def test_groups_are_consecutive_and_hold_at_most_the_limit(
    sizes: dict[int, int], limit: int, expected: list[tuple[int, ...]]
) -> None:
    assert run_groups(list(sizes), sizes.__getitem__, limit) == expected


def test_a_group_is_read_once_and_each_experiment_served_its_runs_by_stage() -> None:
    reads = Reads()
    grouped = GroupedRuns([(1, 2, 3), (4,)], reads)
    deleted = grouped.runs(1, ("deleted",))
    assert [r.run_id for r in deleted or []] == ["gone"]
    assert [r.run_id for r in grouped.runs(1, ("active",)) or []] == ["a", "b"]
    assert [r.run_id for r in grouped.runs(2, ("active", "deleted")) or []] == ["c"]
    assert grouped.runs(3, ("active",)) == []  # in the group, no runs
    assert reads.groups == [(1, 2, 3)]
    # served once: its active runs handed out, the caller reads it itself
    assert grouped.runs(1, ("active",)) is None
    assert grouped.runs(4, ("active",)) is None  # alone in its group
    assert grouped.runs(9, ("active",)) is None  # not grouped
    assert reads.groups == [(1, 2, 3)]


def test_a_failed_group_read_is_raised_and_read_again_on_the_next_ask() -> None:
    reads = Reads()
    grouped = GroupedRuns([(1, 2)], reads)
    reads.fail = True
    with pytest.raises(ConnectionError, match="restarting"):
        grouped.runs(2, ("active",))
    reads.fail = False
    assert [r.run_id for r in grouped.runs(2, ("active",)) or []] == ["c"]
    assert [r.run_id for r in grouped.runs(1, ("active",)) or []] == ["a", "b"]
    assert reads.groups == [(1, 2), (1, 2)]


def test_threads_asking_for_one_group_wait_for_one_read() -> None:
    started, release = threading.Event(), threading.Event()
    reads = Reads()

    def slow(group: tuple[int, ...]) -> list[RunRecord]:
        started.set()
        release.wait(10)
        return reads(group)

    grouped = GroupedRuns([(1, 2)], slow)
    served: dict[int, Sequence[RunRecord] | None] = {}
    first = threading.Thread(target=lambda: served.update({1: grouped.runs(1, ("active",))}))
    first.start()
    assert started.wait(10)
    second = threading.Thread(target=lambda: served.update({2: grouped.runs(2, ("active",))}))
    second.start()
    release.set()
    first.join(10)
    second.join(10)
    assert reads.groups == [(1, 2)]
    assert {k: [r.run_id for r in v or []] for k, v in served.items()} == {1: ["a", "b"], 2: ["c"]}


def test_full_pulls_are_the_plans_without_merge_or_error_in_order() -> None:
    def plan(eid: str, merge: bool = False, error: Exception | None = None) -> ExperimentPlan:
        state = RefreshState(eid, 1) if merge else None
        return ExperimentPlan(Experiment(eid, f"e{eid}"), state, merge, merge, error)

    plans = [plan("3"), plan("1", merge=True), plan("2", error=ValueError("x")), plan("9")]
    assert full_pulls(plans) == ["3", "9"]
