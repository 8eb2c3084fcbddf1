"""`RunIndex`: each experiment's run ids in MLflow's order, from rows of one scan."""

from __future__ import annotations

from mlflow_fun.extract.database.run_index import RunIndex

ROWS = [
    (1, "active", "b", "FINISHED", 100, 150),
    (1, "active", "a", "RUNNING", 100, None),  # same start: by id
    (1, "active", "late", "KILLED", 300, 400),
    (1, "active", "no-start", "FAILED", None, 500),  # no start time: last
    (1, "deleted", "gone", "FINISHED", 200, 250),
    (2, "active", "other", "FINISHED", 999, 1000),
    (1, "weird", "odd", "FINISHED", 50, 60),  # a stage MLflow does not write: in no view
]


def test_runs_come_in_mlflow_order_per_stage() -> None:
    index = RunIndex.from_rows(ROWS)
    assert index.count == len(ROWS)
    assert index.run_ids(1, ("active",)) == ["late", "a", "b", "no-start"]
    assert index.run_ids(1, ("deleted",)) == ["gone"]
    assert index.run_ids(1, ("active", "deleted")) == ["late", "gone", "a", "b", "no-start"]
    assert index.run_ids(2, ("active",)) == ["other"]
    assert index.run_ids(3, ("active",)) == []


def test_changed_since_is_a_start_or_an_end_at_or_after_it() -> None:
    index = RunIndex.from_rows(ROWS)
    assert index.run_ids(1, ("active",), since_ms=150) == ["late", "b", "no-start"]
    assert index.run_ids(1, ("active",), since_ms=151) == ["late", "no-start"]
    assert index.run_ids(1, ("active",), since_ms=500) == ["no-start"]
    assert index.run_ids(1, ("active",), since_ms=501) == []
    assert index.run_ids(1, ("active",), since_ms=0) == index.run_ids(1, ("active",))


def test_settled_runs_still_finished_at_that_end_are_left_out() -> None:
    index = RunIndex.from_rows([*ROWS, (1, "active", "resumed", "RUNNING", 600, 700)])
    settled = {"b": 150, "late": 399, "no-start": 500, "resumed": 700, "a": -(2**63)}
    # "late" ended again since (399 -> 400), "resumed" runs again, "a" has no end time
    assert index.run_ids(1, ("active",), since_ms=0, settled=settled) == ["resumed", "late", "a"]
    assert index.run_ids(1, ("active",), settled={}) == index.run_ids(1, ("active",))


def test_rows_can_come_in_several_parts() -> None:
    index = RunIndex()
    index.add(ROWS[:3])
    index.add(ROWS[3:])
    assert index.run_ids(1, ("active",)) == RunIndex.from_rows(ROWS).run_ids(1, ("active",))


def test_size_counts_every_stage() -> None:
    index = RunIndex.from_rows(ROWS)
    assert (index.size(1), index.size(2), index.size(3)) == (6, 1, 0)
