"""`TwoEndedPull` against an in-memory ``runs/search`` that pages by offset like MLflow's."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Sequence

import pytest

from mlflow_fun.errors import TrackingServerError
from mlflow_fun.extract.two_ended import (
    ASCENDING,
    DESCENDING,
    TwoEndedPull,
    default_order,
    id_position,
)
from mlflow_fun.model import RunRecord


def _run(run_id: str, start_time: int | None) -> RunRecord:
    return RunRecord(run_id, {"start_time": start_time}, {}, {}, {})


class OffsetSearch:
    """Pages of the runs ordered by run id, the offset as token; ``seconds_per_run`` of
    'server time' per run sent, so that the two streams overlap in time."""

    def __init__(
        self, runs: Sequence[RunRecord], seconds_per_run: float = 0.0, fail: str = ""
    ) -> None:
        self.ascending = sorted(runs, key=lambda r: r.run_id)
        self.seconds_per_run = seconds_per_run
        self.fail = fail
        self.calls: list[tuple[str, int, int]] = []  # (order, asked, sent)
        self.joined = threading.Event()
        self.together: threading.Barrier | None = None  # each order's first call waits

    def search_page(
        self,
        experiment_ids: Sequence[str],
        *,
        max_results: int,
        page_token: str | None = None,
        run_view_type: str = "ACTIVE_ONLY",
        filter_string: str = "",
        order_by: Sequence[str] = (),
    ) -> tuple[list[RunRecord], str | None]:
        assert list(experiment_ids) == ["7"] and len(order_by) == 1
        if order_by[0] == self.fail:
            raise TrackingServerError("answered HTTP 500 on runs/search", status=500)
        runs = self.ascending if order_by[0] == ASCENDING else self.ascending[::-1]
        offset = int(page_token or 0)
        if self.together is not None and not any(c[0] == order_by[0] for c in self.calls):
            self.together.wait()  # both streams under way, whatever the scheduler does
        page = runs[offset : offset + max_results]
        self.calls.append((order_by[0], max_results, len(page)))
        time.sleep(self.seconds_per_run * len(page))
        end = offset + max_results
        return page, (str(end) if end < len(runs) else None)

    def sent(self) -> int:
        return sum(sent for _, _, sent in self.calls)


def _uuid_runs(count: int, seed: int) -> list[RunRecord]:
    rng = random.Random(seed)
    return [
        _run(uuid.UUID(int=rng.getrandbits(128), version=4).hex, rng.randrange(10) * 1000)
        for _ in range(count)
    ]


def _pull_both(search: OffsetSearch, page_size: int) -> list[RunRecord]:
    pull = TwoEndedPull(search, "7", page_size)
    helper = threading.Thread(target=pull.assist)
    helper.start()
    runs = pull.run()
    helper.join()
    return runs


def test_id_position_reads_random_hex_ids_only() -> None:
    assert id_position("0" * 32) == 0.0
    assert id_position("8" + "0" * 31) == 0.5
    assert id_position("f" * 32) == pytest.approx(1.0, abs=1e-12)
    assert id_position("run-0001-custom-id") is None
    assert id_position("ABCDEF0123456789") is None  # not MLflow's lowercase form
    assert id_position("abc") is None


def test_default_order_is_mlflows_latest_start_first_then_run_id() -> None:
    runs = [_run("b", 1), _run("c", None), _run("a", 1), _run("d", 5)]
    assert [r.run_id for r in default_order(runs)] == ["d", "a", "b", "c"]


def test_one_stream_pulls_every_run_in_full_pages() -> None:
    runs = _uuid_runs(23, seed=1)
    search = OffsetSearch(runs)
    result = TwoEndedPull(search, "7", page_size=10).run()
    assert result == default_order(runs)
    assert search.calls == [(ASCENDING, 10, 10), (ASCENDING, 10, 10), (ASCENDING, 10, 3)]


def test_a_helper_alone_finishes_the_pull_and_the_first_stream_then_asks_nothing() -> None:
    runs = _uuid_runs(23, seed=2)
    search = OffsetSearch(runs)
    pull = TwoEndedPull(search, "7", page_size=10)
    assert pull.can_assist and pull.assist()
    assert not pull.can_assist and not pull.assist()
    assert pull.run() == default_order(runs)
    assert [order for order, _, _ in search.calls] == [DESCENDING] * 3


@pytest.mark.parametrize("seed", range(6))
def test_two_streams_get_every_run_once_with_a_small_overlap(seed: int) -> None:
    runs = _uuid_runs(3000 + 517 * seed, seed)
    search = OffsetSearch(runs, seconds_per_run=2e-6)
    # On a loaded machine one stream could finish before the other is scheduled.
    search.together = threading.Barrier(2, timeout=30)
    result = _pull_both(search, page_size=1000)
    assert result == default_order(runs)
    orders = {order for order, _, _ in search.calls}
    assert orders == {ASCENDING, DESCENDING}
    # Without the estimate the streams would cross by up to two pages (2,000 runs).
    assert search.sent() - len(runs) <= 600, search.calls


@pytest.mark.parametrize("ids", ["sequential", "custom"])
def test_ids_that_are_not_random_hex_still_give_every_run_once(ids: str) -> None:
    if ids == "sequential":  # hex, but all at the start of the id space
        run_ids = [f"{i:032x}" for i in range(2500)]
    else:
        run_ids = [f"run-{i:05d}" for i in range(2500)]
    runs = [_run(run_id, i % 7) for i, run_id in enumerate(run_ids)]
    search = OffsetSearch(runs, seconds_per_run=2e-6)
    assert _pull_both(search, page_size=400) == default_order(runs)
    assert len(search.calls) <= 20


def test_a_failing_helper_leaves_the_pull_to_the_first_stream() -> None:
    runs = _uuid_runs(57, seed=3)
    search = OffsetSearch(runs, fail=DESCENDING)
    assert _pull_both(search, page_size=10) == default_order(runs)
    assert [order for order, _, _ in search.calls] == [ASCENDING] * 6


def test_a_failing_first_stream_fails_the_pull_and_stops_the_helper() -> None:
    search = OffsetSearch(_uuid_runs(57, seed=4), fail=ASCENDING)
    pull = TwoEndedPull(search, "7", page_size=10)
    with pytest.raises(TrackingServerError, match="HTTP 500"):
        pull.run()
    assert not pull.can_assist and not pull.assist()
    assert search.calls == []


def test_an_empty_experiment_takes_one_page() -> None:
    search = OffsetSearch([])
    assert TwoEndedPull(search, "7", page_size=10).run() == []
    assert search.calls == [(ASCENDING, 10, 0)]
