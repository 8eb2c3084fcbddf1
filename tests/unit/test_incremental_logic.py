"""Pure parts of the incremental refresh: type widening, naming and order of merged
columns, and what `pull_changes` asks a source for and keeps."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import pytest

from mlflow_fun.extract.incremental import RefreshState, fingerprint, pull_all, pull_changes
from mlflow_fun.model import RunRecord
from mlflow_fun.transform.flatten import flatten_runs, keep_column_order
from mlflow_fun.transform.typing_rules import widened_type


@pytest.mark.parametrize(
    ("existing", "values", "expected"),
    [
        ("int", ["1", "2"], "int"),
        ("int", ["", None, "null"], "int"),  # nothing present: the type stays
        ("bigint", ["1"], "bigint"),
        ("double", ["1", "9999999999"], "double"),
        ("string", ["abc"], "string"),
        ("int", ["0.5"], None),  # int -> double: only a full refresh can type it
        ("int", ["9999999999"], None),  # int -> bigint
        ("string", ["1"], None),  # the old values decide: all missing, or text
        ("boolean", ["1"], None),
    ],
)
def test_widened_type(existing: Any, values: list[str | None], expected: str | None) -> None:
    assert widened_type(existing, values) == expected


def _record(run_id: str, start: int, end: int | None, **params: str) -> RunRecord:
    info = {
        "experiment_id": "1",
        "status": "FINISHED" if end else "RUNNING",
        "start_time": start,
        "end_time": end,
    }
    return RunRecord(run_id, info, {"m": 1.0}, params, {})


def test_merged_runs_keep_the_names_of_absent_keys() -> None:
    previous = {("param", "a_b"): "_p_a_b", ("metric", "m"): "_m_m"}
    flat = flatten_runs([_record("r1", 1, 2, **{"a.b": "x"})], previous, reserve_previous=True)
    assert [c.name for c in flat.columns][10:] == ["_m_m", "_p_a_b_2"]
    plain = flatten_runs([_record("r1", 1, 2, **{"a.b": "x"})], previous)
    assert [c.name for c in plain.columns][10:] == ["_m_m", "_p_a_b"]


def test_param_types_override_inference() -> None:
    flat = flatten_runs([_record("r1", 1, 2, p="1")], param_types={"p": "double"})
    assert (flat.column("_p_p").type, flat.data["_p_p"]) == ("double", [1.0])


def test_keep_column_order_puts_new_columns_last() -> None:
    flat = flatten_runs([_record("r1", 1, 2, b="1", a="2")])
    names = [c.name for c in flat.columns]
    reordered = keep_column_order(flat, [*names[:10], "_p_b", "_m_m"])
    assert [c.name for c in reordered.columns][10:] == ["_p_b", "_m_m", "_p_a"]


class ListSource:
    """Runs held in lists, answering the searches `pull_changes` makes."""

    tracking_uri = "memory"

    def __init__(self, active: Sequence[RunRecord], deleted: Sequence[RunRecord] = ()) -> None:
        self.active, self.deleted = list(active), list(deleted)
        self.asked: list[tuple[str, Any]] = []

    def iter_runs(
        self, experiment_ids: Any, *, run_view_type: str = "ACTIVE_ONLY", **_: Any
    ) -> Iterator[RunRecord]:
        return iter(self.deleted if run_view_type == "DELETED_ONLY" else self.active)

    def iter_changed_runs(
        self, experiment_id: str, since_ms: int, settled: Mapping[str, int] | None = None
    ) -> Iterator[RunRecord]:
        self.asked.append(("since", since_ms))
        self.settled = dict(settled or {})
        return (
            r
            for r in self.active
            if r.info["start_time"] >= since_ms or (r.info["end_time"] or 0) >= since_ms
        )

    def iter_runs_by_id(
        self, experiment_id: str, run_ids: Iterable[str], run_view_type: str = "ACTIVE_ONLY"
    ) -> Iterator[RunRecord]:
        wanted = set(run_ids)
        self.asked.append(("ids", sorted(wanted)))
        return (r for r in self.active if r.run_id in wanted)


def test_pull_changes_asks_for_changed_open_and_restored_runs() -> None:
    old, running, restored = _record("old", 10, 20), _record("run", 30, None), _record("res", 5, 6)
    first = pull_all(ListSource([old, running], [restored]), "1", margin_ms=0)
    assert (first.watermark_ms, first.open_run_ids, first.deleted_run_ids) == (
        30,
        {"run"},
        {"res"},
    )
    state = first.next_state()
    assert state.fingerprints == {"run": fingerprint(running)}  # at the watermark or open

    new = _record("new", 40, 50)
    source = ListSource([old, running, restored, new])
    pull = pull_changes(source, "1", state, margin_ms=5)
    assert source.asked == [("since", 25), ("ids", ["res", "run"])]
    assert {r.run_id for r in pull.runs} == {"new", "res"}  # "run" is unchanged: dropped
    assert (pull.pulled, pull.watermark_ms, pull.deleted_run_ids) == (3, 50, frozenset())
    assert pull.open_run_ids == {"run"} and pull.changed


def test_pull_changes_without_changes_writes_nothing() -> None:
    runs = [_record("a", 10, 20), _record("b", 30, 40)]
    state = pull_all(ListSource(runs), "1", margin_ms=0).next_state()
    pull = pull_changes(ListSource(runs), "1", state, margin_ms=0)
    assert (pull.pulled, pull.runs, pull.changed) == (1, (), False)


def test_pull_changes_needs_a_watermark() -> None:
    with pytest.raises(ValueError, match="refresh it in full"):
        pull_changes(ListSource([]), "1", RefreshState("1", None), margin_ms=0)


def test_finished_runs_in_the_margin_are_settled_not_read_again() -> None:
    early, late, running = _record("early", 10, 20), _record("late", 30, 40), _record("r", 35, None)
    state = pull_all(ListSource([early, late, running]), "1", margin_ms=25).next_state()
    # in the margin (40 - 25 = 15): "early" and "late" finished, "r" running
    assert state.settled == {"early": 20, "late": 40}
    assert set(state.fingerprints) == {"r"}

    # a late tag on a settled run is not read (as after the margin); the source is told
    tagged = RunRecord("late", late.info, late.metrics, late.params, {"note": "late"})
    source = ListSource([early, tagged, running])
    pull = pull_changes(source, "1", state, margin_ms=25)
    assert source.settled == {"early": 20, "late": 40}
    assert (pull.pulled, pull.runs, pull.changed) == (3, (), False)
    assert pull.settled == state.settled

    # resumed (running again), then finished again: read both times
    resumed = _record("late", 30, None)
    pull = pull_changes(ListSource([early, resumed, running]), "1", state, margin_ms=25)
    assert [r.run_id for r in pull.runs] == ["late"] and pull.open_run_ids == {"late", "r"}
    assert set(pull.settled) == {"early"} and set(pull.fingerprints) == {"late", "r"}
    refinished = _record("late", 30, 60)
    pull = pull_changes(ListSource([early, refinished, running]), "1", state, margin_ms=25)
    assert [r.run_id for r in pull.runs] == ["late"]
    # the watermark moved to 60: "early" (20) is out of the margin (35), "late" settles anew
    assert (pull.watermark_ms, pull.settled) == (60, {"late": 60})


def test_a_source_that_leaves_settled_runs_out_keeps_them_settled() -> None:
    early, late = _record("early", 10, 20), _record("late", 30, 40)
    state = pull_all(ListSource([early, late]), "1", margin_ms=25).next_state()
    new = _record("new", 41, 45)
    pull = pull_changes(ListSource([new]), "1", state, margin_ms=25)  # "early", "late" left out
    assert [r.run_id for r in pull.runs] == ["new"]
    assert pull.settled == {"early": 20, "late": 40, "new": 45}  # all within 45 - 25 = 20


def test_a_state_without_settled_runs_compares_fingerprints_then_settles() -> None:
    runs = [_record("a", 10, 20), _record("b", 30, 40)]
    full = pull_all(ListSource(runs), "1", margin_ms=100).next_state()
    older = RefreshState(
        "1", full.watermark_ms, fingerprints={r.run_id: fingerprint(r) for r in runs}
    )
    pull = pull_changes(ListSource(runs), "1", older, margin_ms=100)
    assert (pull.runs, pull.settled, pull.fingerprints) == ((), {"a": 20, "b": 40}, {})
    assert pull.changed  # only the state: written once, in the new form


class RacingSource(ListSource):
    """A `ListSource` where ``run_id``, restored when the deleted runs are listed, is
    changed by a user before the runs are pulled by id: ``deleted`` again, ``gone`` for
    good (``mlflow gc``), or deleted and ``restored`` again before it is looked for."""

    def __init__(self, active: Sequence[RunRecord], run_id: str, change: str) -> None:
        super().__init__(active)
        self.run_id, self.change, self.pulls = run_id, change, 0

    def iter_runs_by_id(
        self, experiment_id: str, run_ids: Iterable[str], run_view_type: str = "ACTIVE_ONLY"
    ) -> Iterator[RunRecord]:
        self.pulls += 1
        if self.pulls == 1:
            run = next(r for r in self.active if r.run_id == self.run_id)
            self.active.remove(run)
            self.deleted += [run] if self.change == "deleted" else []
            self.restored = run
        elif self.change == "restored":
            self.active.append(self.restored)
        return super().iter_runs_by_id(experiment_id, run_ids, run_view_type)


@pytest.mark.parametrize(
    ("change", "runs", "deleted"),
    [("deleted", [], {"old"}), ("gone", [], set()), ("restored", ["old"], set())],
)
def test_a_restored_run_changed_while_pulled_is_where_mlflow_has_it(
    change: str, runs: list[str], deleted: set[str]
) -> None:
    old, kept = _record("old", 10, 20), _record("kept", 100, 110)
    state = pull_all(ListSource([kept], [old]), "1", margin_ms=5).next_state()
    assert state.deleted_run_ids == {"old"}

    racing = RacingSource([kept, old], "old", change)
    pull = pull_changes(racing, "1", state, margin_ms=5)
    assert [r.run_id for r in pull.runs] == runs and pull.deleted_run_ids == deleted
    assert pull.newly_deleted == frozenset()  # its row left the table when first deleted
    if change == "deleted":  # restored for good after the margin: read by id, as restored
        later = pull_changes(ListSource([kept, old]), "1", pull.next_state(), margin_ms=5)
        assert [r.run_id for r in later.runs] == ["old"] and not later.deleted_run_ids


class RestoredAfterListing(ListSource):
    """A `ListSource` where ``run_id`` is restored by a user right after the deleted runs
    are listed, before the active runs are pulled."""

    def __init__(self, active: Sequence[RunRecord], deleted: Sequence[RunRecord], run_id: str):
        super().__init__(active, deleted)
        self.run_id = run_id

    def iter_runs(
        self, experiment_ids: Any, *, run_view_type: str = "ACTIVE_ONLY", **_: Any
    ) -> Iterator[RunRecord]:
        if run_view_type != "DELETED_ONLY":
            return iter(self.active)
        listed = list(self.deleted)
        run = next(r for r in self.deleted if r.run_id == self.run_id)
        self.deleted.remove(run)
        self.active.append(run)
        return iter(listed)


@pytest.mark.parametrize("refresh", ["full", "incremental"])
def test_a_run_restored_after_the_listing_and_deleted_again_leaves_the_table(
    refresh: str,
) -> None:
    """Restored between the listing of the deleted runs and the pull, the run is pulled and
    written: it must not be kept as deleted, or its next deletion would not be seen as new
    and its row would stay in the table (the soak's tables then differ from MLflow's)."""
    kept, back = _record("kept", 100, 110), _record("back", 95, 108)  # in the margin
    racing = RestoredAfterListing([kept], [back], "back")
    if refresh == "full":
        pull = pull_all(racing, "1", margin_ms=5)
        assert sorted(r.run_id for r in pull.runs) == ["back", "kept"]
    else:
        state = pull_all(ListSource([kept], [back]), "1", margin_ms=5).next_state()
        assert state.deleted_run_ids == {"back"}
        pull = pull_changes(racing, "1", state, margin_ms=5)
        assert [r.run_id for r in pull.runs] == ["back"]  # out of the table until now
    assert pull.deleted_run_ids == frozenset()
    deleted_again = ListSource([kept], [back])
    later = pull_changes(deleted_again, "1", pull.next_state(), margin_ms=5)
    assert later.newly_deleted == {"back"} and later.deleted_run_ids == {"back"}
