"""`resolve_experiments`: the ids given, in their order, from a listing where there are
many (one call a page) or one call per id where there are few; every missing id named."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mlflow_fun.errors import ExperimentNotFoundError
from mlflow_fun.load.plan import LIST_FROM_IDS, resolve_experiments
from mlflow_fun.model import Experiment


class _Store:
    """A store's experiments as a source offers them, counting the calls made."""

    tracking_uri = "http://127.0.0.1:5000"

    def __init__(self, count: int) -> None:
        self.experiments = {
            str(i): Experiment(experiment_id=str(i), name=f"e{i}") for i in range(1, count + 1)
        }
        self.calls: list[str] = []

    def get_experiment(self, experiment_id: str) -> Experiment:
        self.calls.append(f"get {experiment_id}")
        if experiment_id not in self.experiments:
            raise ExperimentNotFoundError(f"experiment id {experiment_id!r} does not exist")
        return self.experiments[experiment_id]

    def iter_experiments(self, view_type: str = "ACTIVE_ONLY") -> Iterator[Experiment]:
        self.calls.append(f"list {view_type}")
        yield from self.experiments.values()


def test_few_ids_are_asked_for_one_by_one() -> None:
    store = _Store(300)

    found = resolve_experiments(store, ["7", "3"])  # type: ignore[arg-type]

    assert [e.experiment_id for e in found] == ["7", "3"]
    assert store.calls == ["get 7", "get 3"]


def test_many_ids_come_from_one_listing_in_the_order_given() -> None:
    store = _Store(300)
    ids = [str(i) for i in range(LIST_FROM_IDS + 10, 0, -1)]

    found = resolve_experiments(store, ids)  # type: ignore[arg-type]

    assert [e.experiment_id for e in found] == ids
    assert [e.name for e in found[:2]] == [f"e{ids[0]}", f"e{ids[1]}"]
    assert store.calls == ["list ALL"]  # deleted ones too, as asking by id finds them


def test_ids_the_listing_lacks_are_asked_for_and_all_named() -> None:
    store = _Store(LIST_FROM_IDS)
    ids = [str(i) for i in range(1, LIST_FROM_IDS + 1)] + ["998", "999"]

    with pytest.raises(ExperimentNotFoundError, match="id\\(s\\) 998, 999 do not exist"):
        resolve_experiments(store, ids)  # type: ignore[arg-type]
    assert store.calls == ["list ALL", "get 998", "get 999"]
