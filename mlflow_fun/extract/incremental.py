"""What an incremental refresh pulls, and the state it keeps: pure logic over a `RunSource`.

MLflow cannot search runs by update time, so a refresh after the first one pulls the
runs that may have changed since the previous refresh of the experiment:

1. runs started or ended at or after the watermark minus a margin (two searches: MLflow's
   filter has no OR) -- new runs, and runs that finished;
2. runs that were not terminal (RUNNING, SCHEDULED) at the previous refresh, by
   ``run_id IN (...)`` in batches -- new metrics, params and tags of running runs;
3. runs restored since: deleted at the previous refresh (the state keeps the ids of the
   deleted runs) but not any more. One deleted again between the listing and its pull
   stays known as deleted (listed once more), so that a later restore is still seen.
   One restored after the listing and pulled all the same is written and not kept as
   deleted: the table holds it, so a later deletion must take it out.

A run pulled again (it sits inside the margin, or is still running) but unchanged since
the previous refresh is dropped, so a refresh that finds nothing new writes nothing. A
run that was running is compared by its `fingerprint`; one that had finished is
*settled*: the state keeps its end time, and while it is still finished with that end
time it is not read again (a source may leave it out: `DatabaseSource` then reads none
of its metrics, params and tags; resuming a finished run changes its status, finishing
it again its end time). A ``DELETED_ONLY`` search lists the deleted runs; those
deleted since the previous refresh must leave the table. The watermark is the latest
start or end time among the runs seen (the clock of the clients that logged them, not
the job's), so the margin only has to cover skew between those clients.

Not seen by an incremental refresh (MLflow records no time for them): a metric logged
to, or a tag changed on, a run that had already finished at the previous refresh (and
was not resumed), and runs removed for good by ``mlflow gc``. A ``--full-refresh`` (e.g.
weekly) picks them up.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from mlflow_fun.extract.source import RunSource, unique_runs
from mlflow_fun.model import RunRecord

TERMINAL_STATUSES = frozenset({"FINISHED", "FAILED", "KILLED"})
FULL, INCREMENTAL = "full", "incremental"


@dataclass(frozen=True)
class RefreshState:
    """What the previous refresh of one experiment left for the next one.

    Attributes:
        experiment_id: The experiment.
        watermark_ms: Latest start or end time seen (epoch ms); None when the next
            refresh must be a full one (no refresh yet, or one was interrupted).
        open_run_ids: Runs that were not terminal.
        deleted_run_ids: Runs that were deleted.
        with_history: The metric history was loaded too.
        fingerprints: run id -> `fingerprint`, of the runs the next refresh pulls again
            that were not settled.
        settled: run id -> end time (epoch ms), of the finished runs the next refresh
            pulls again.
    """

    experiment_id: str
    watermark_ms: int | None
    open_run_ids: frozenset[str] = frozenset()
    deleted_run_ids: frozenset[str] = frozenset()
    with_history: bool = False
    fingerprints: Mapping[str, str] = field(default_factory=dict)
    settled: Mapping[str, int] = field(default_factory=dict)

    def pending(self) -> RefreshState:
        """This state marked so that the next refresh is a full one."""
        return replace(self, watermark_ms=None)


@dataclass(frozen=True)
class Pull:
    """The runs one refresh pulled for one experiment.

    Attributes:
        experiment_id: The experiment.
        mode: ``full`` (``runs`` is every active run) or ``incremental`` (``runs`` is
            every run that changed).
        runs: The runs to write, each once.
        deleted_run_ids: Every deleted run of the experiment now.
        newly_deleted: Runs deleted since the previous refresh (incremental only).
        pulled: Runs the source sent (incremental: changed or not).
        watermark_ms: The watermark once these runs are written.
        open_run_ids: Runs not terminal once these runs are written.
        fingerprints: Of the runs the next incremental refresh will pull again, but
            the settled ones.
        settled: End times of the finished runs the next incremental refresh will pull
            again.
        changed: Something to write (always, for a full pull); False when the tables and
            the state already hold everything this pull found.
    """

    experiment_id: str
    mode: str
    runs: tuple[RunRecord, ...]
    deleted_run_ids: frozenset[str]
    newly_deleted: frozenset[str]
    pulled: int
    watermark_ms: int
    open_run_ids: frozenset[str]
    fingerprints: Mapping[str, str]
    settled: Mapping[str, int]
    changed: bool = True

    def next_state(self, *, with_history: bool = False) -> RefreshState:
        """The state to store once the tables hold these runs."""
        return RefreshState(
            self.experiment_id,
            self.watermark_ms,
            self.open_run_ids,
            self.deleted_run_ids,
            with_history,
            self.fingerprints,
            self.settled,
        )


def fingerprint(run: RunRecord) -> str:
    """A digest of everything a run holds: equal digests, equal rows."""
    held: list[Any] = [
        run.run_id,
        dict(run.info),
        dict(run.metrics),
        dict(run.params),
        dict(run.tags),
    ]
    if run.inputs:  # only then: digests of runs without inputs stay as they were
        held.append([list(vars(i).values()) for i in run.inputs])
    content = json.dumps(
        held,
        sort_keys=True,
        default=str,
    )
    return hashlib.blake2b(content.encode(), digest_size=16).hexdigest()


def pull_all(
    source: RunSource,
    experiment_id: str,
    margin_ms: int,
    active_runs: Callable[[], Iterable[RunRecord]] | None = None,
) -> Pull:
    """Pull every active run of the experiment, and the ids of its deleted runs.

    Args:
        active_runs: Pulls the active runs (e.g. a `TwoEndedPull`); by default
            ``source.iter_runs``. Called after the deleted runs are listed, so a run
            deleted in between is in neither list (the next refresh sees it deleted).
            One in both (restored in between; or pulled by a two-ended pull's helper
            that started before the listing, then deleted) is written and not kept as
            deleted: the next refresh sees a deletion of it as new.
    """
    listed = _ids(source.iter_runs(experiment_id, run_view_type="DELETED_ONLY"))
    runs = tuple(active_runs() if active_runs else source.iter_runs(experiment_id))
    deleted = listed - _ids(runs)  # restored after the listing: the table holds them
    watermark = _latest(runs, 0)
    open_ids = _open(runs)
    again = [r for r in runs if r.run_id in open_ids or _latest([r], 0) >= watermark - margin_ms]
    settled = _settled(again)
    fingerprints = {r.run_id: fingerprint(r) for r in again if r.run_id not in settled}
    return Pull(
        experiment_id,
        FULL,
        runs,
        deleted,
        frozenset(),
        len(runs),
        watermark,
        open_ids,
        fingerprints,
        settled,
    )


def pull_changes(
    source: RunSource, experiment_id: str, state: RefreshState, margin_ms: int
) -> Pull:
    """Pull the runs that may have changed since ``state`` (see the module docstring).

    Raises:
        ValueError: ``state`` has no watermark (the refresh must be a full one).
    """
    if state.watermark_ms is None:
        raise ValueError(f"experiment {experiment_id} has no watermark: refresh it in full")
    deleted = _ids(source.iter_runs(experiment_id, run_view_type="DELETED_ONLY"))
    restored = state.deleted_run_ids - deleted
    since = max(0, state.watermark_ms - margin_ms)
    settled = {i: end for i, end in state.settled.items() if i not in restored | deleted}
    pulled = tuple(
        unique_runs(
            (
                source.iter_changed_runs(experiment_id, since, settled),
                source.iter_runs_by_id(experiment_id, state.open_run_ids | restored),
            )
        )
    )
    missing = restored - _ids(pulled)
    if missing:  # restored when listed, gone when pulled: deleted again, or for good
        pulled, deleted = _recheck(source, experiment_id, missing, pulled, deleted)
    deleted -= _ids(pulled)  # restored after the listing: written now, so not deleted
    fresh = [r for r in pulled if not _still_settled(r, settled)]
    fingerprints = {run.run_id: fingerprint(run) for run in fresh}
    changed = tuple(
        r
        for r in fresh
        if r.run_id in state.deleted_run_ids  # held as deleted: write it whenever it is back
        or state.fingerprints.get(r.run_id) != fingerprints[r.run_id]
    )
    open_ids = _open(pulled)
    watermark = _latest(pulled, state.watermark_ms)
    # settled runs left out (or still settled) stay so while the margin covers them
    kept = {i: end for i, end in settled.items() if i not in fingerprints}
    now_settled = {i: end for i, end in kept.items() if end >= watermark - margin_ms}
    now_settled.update(_settled(fresh))
    for run_id in now_settled:
        fingerprints.pop(run_id, None)
    something = (
        bool(changed)
        or deleted != state.deleted_run_ids
        or open_ids != state.open_run_ids
        or now_settled != dict(state.settled)
    )
    return Pull(
        experiment_id,
        INCREMENTAL,
        changed,
        deleted,
        deleted - state.deleted_run_ids,
        len(pulled),
        watermark,
        open_ids,
        fingerprints,
        now_settled,
        something,
    )


def _recheck(
    source: RunSource,
    experiment_id: str,
    missing: frozenset[str],
    pulled: tuple[RunRecord, ...],
    deleted: frozenset[str],
) -> tuple[tuple[RunRecord, ...], frozenset[str]]:
    """Runs restored when the deleted runs were listed but not found when pulled by id:
    those deleted again stay in ``deleted`` (else the state would forget them, and a
    restore after the margin would never be seen); those restored once more are pulled;
    the rest were removed for good (``mlflow gc``) and are forgotten.

    Returns:
        ``pulled`` and ``deleted``, with the ``missing`` runs where they are now.
    """
    listed = _ids(source.iter_runs(experiment_id, run_view_type="DELETED_ONLY"))
    again = missing - listed
    back = tuple(source.iter_runs_by_id(experiment_id, again)) if again else ()
    return pulled + back, deleted | (missing & listed)


def _latest(runs: Iterable[RunRecord], floor: int) -> int:
    """The latest start or end time of ``runs``, at least ``floor``."""
    times = (t for run in runs for t in (run.info.get("start_time"), run.info.get("end_time")))
    return max([floor, *(t for t in times if t is not None)])


def _settled(runs: Iterable[RunRecord]) -> dict[str, int]:
    """run id -> end time of the finished runs among ``runs`` (those with an end time)."""
    return {
        run.run_id: int(run.info["end_time"])
        for run in runs
        if run.info.get("status") in TERMINAL_STATUSES and run.info.get("end_time") is not None
    }


def _still_settled(run: RunRecord, settled: Mapping[str, int]) -> bool:
    """True when ``run`` is settled and still finished with the same end time."""
    end = settled.get(run.run_id)
    return (
        end is not None
        and run.info.get("status") in TERMINAL_STATUSES
        and run.info.get("end_time") == end
    )


def _open(runs: Iterable[RunRecord]) -> frozenset[str]:
    return frozenset(run.run_id for run in runs if run.info.get("status") not in TERMINAL_STATUSES)


def _ids(runs: Iterable[RunRecord]) -> frozenset[str]:
    return frozenset(run.run_id for run in runs)
