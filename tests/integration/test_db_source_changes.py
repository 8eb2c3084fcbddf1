"""DatabaseSource's changed runs, runs by id and metric history against RestSource.

Each store is a real ``mlflow server`` over its database: the session's sqlite server and
a throwaway PostgreSQL. The runs of a fresh experiment are logged through MLflow's client
with known start and end times; what the database yields must equal what REST yields.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from mlflow_fun.errors import ConfigError, ExperimentNotFoundError
from mlflow_fun.extract.database import queries
from mlflow_fun.extract.database.run_index import INDEX_FROM_EXPERIMENTS
from mlflow_fun.extract.database.source import DatabaseSource
from mlflow_fun.extract.local_server import LocalMlflowServer
from mlflow_fun.extract.open import open_source
from mlflow_fun.extract.rest import RestSource
from mlflow_fun.model import MetricPoint, RunRecord
from tests.db_servers import postgres_server
from tests.seed import Seeded

SINCE = 10_000
MAX_DOUBLE = 1.7976931348623157e308  # how MLflow stores +inf
# name -> (start_time, end_time or None for a run still running)
PLAN: dict[str, tuple[int, int | None]] = {
    "old": (1_000, 2_000),
    "ended-before": (4_000, 9_999),
    "ended-at": (5_000, 10_000),
    "started-at": (10_000, 10_500),
    "late": (20_000, 25_000),
    "running-old": (3_000, None),
    "running-new": (15_000, None),
    "deleted-new": (30_000, 31_000),
}
CHANGED_AT_SINCE = {"ended-at", "started-at", "late", "running-new"}
# name -> metric key -> [(value, step)], logged in this order (timestamp = start + index)
HISTORY: dict[str, dict[str, list[tuple[float, int]]]] = {
    "old": {"loss": [(0.9, 0), (0.5, 1), (math.nan, 2)], "acc": [(0.7, 0)]},
    "ended-at": {"loss": [(math.inf, 0), (-math.inf, 1), (0.3, 2)]},
    "started-at": {"loss": [(2.0, 0), (2.0, 0)], "acc": [(0.1, 0), (0.2, 0)]},
    "late": {"loss": [(1.5, 5), (1.0, 3)], "val loss": [(1.1, 0)]},
    "running-new": {"acc": [(math.nan, 0)]},
    "deleted-new": {"loss": [(0.0, 0)]},
}


@dataclass
class ChangeStore:
    """A database, the tracking server over it, and the experiment logged for these tests."""

    name: str
    db_url: str
    server_url: str
    experiment_id: str
    run_ids: dict[str, str]
    other_run_id: str

    def rest(self) -> RestSource:
        source = open_source(self.server_url, page_size=2)
        assert isinstance(source, RestSource)
        return source

    def database(self) -> DatabaseSource:
        return DatabaseSource(self.db_url, page_size=2, run_rows_per_query=3)  # many batches

    def names(self, runs: Iterable[RunRecord]) -> list[str]:
        by_id = {run_id: name for name, run_id in self.run_ids.items()}
        return sorted(by_id[run.run_id] for run in runs)


def _log_changes(url: str, experiment_name: str) -> tuple[str, dict[str, str], str]:
    """The experiment of `PLAN` and `HISTORY`, and a run of another experiment."""
    client = MlflowClient(url)
    experiment_id = client.create_experiment(experiment_name)
    run_ids: dict[str, str] = {}
    for name, (start, end) in PLAN.items():
        run_id = client.create_run(experiment_id, start_time=start, run_name=name).info.run_id
        points = [
            Metric(key, value, start + index, step)
            for key, values in HISTORY.get(name, {}).items()
            for index, (value, step) in enumerate(values)
        ]
        client.log_batch(
            run_id, metrics=points, params=[Param("alpha", name)], tags=[RunTag("t", "")]
        )
        if end is not None:
            client.set_terminated(run_id, end_time=end)
        run_ids[name] = run_id
    client.delete_run(run_ids["deleted-new"])
    other = client.create_experiment(f"{experiment_name}-other")
    other_run_id = client.create_run(other, start_time=50_000, run_name="other").info.run_id
    client.log_batch(other_run_id, metrics=[Metric("loss", 1.0, 50_000, 0)])
    return experiment_id, run_ids, other_run_id


@pytest.fixture(scope="module")
def sqlite_changes(mlflow_server: LocalMlflowServer, seeded: Seeded) -> ChangeStore:
    experiment_id, run_ids, other = _log_changes(seeded.url, "db-changes")
    db_url = f"sqlite:///{mlflow_server.root / 'mlflow.db'}"
    return ChangeStore("sqlite", db_url, seeded.url, experiment_id, run_ids, other)


@pytest.fixture(scope="module")
def postgresql_changes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChangeStore]:
    root: Path = tmp_path_factory.mktemp("mlflow_pg_changes")
    with postgres_server() as db_url, LocalMlflowServer(root, backend_store_uri=db_url) as server:
        experiment_id, run_ids, other = _log_changes(server.url, "db-changes")
        yield ChangeStore("postgresql", db_url, server.url, experiment_id, run_ids, other)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def changes(request: pytest.FixtureRequest) -> ChangeStore:
    return request.getfixturevalue(f"{request.param}_changes")  # type: ignore[no-any-return]


def _comparable(run: RunRecord) -> tuple[Any, ...]:
    """A run as a sortable tuple; NaN (never equal to itself) as the string 'nan'."""
    metrics = {k: "nan" if math.isnan(v) else v for k, v in run.metrics.items()}
    return (run.run_id, sorted(run.info.items()), sorted(metrics.items()), run.params, run.tags)


def _points(points: Iterable[MetricPoint]) -> list[tuple[Any, ...]]:
    """Points as (run_id, key, step, timestamp, value) tuples, sorted; NaN as 'nan'."""
    rows = [
        (p.run_id, p.key, p.step, p.timestamp, "nan" if math.isnan(p.value) else p.value)
        for p in points
    ]
    return sorted(rows, key=lambda row: (*row[:4], str(row[4])))


@pytest.mark.parametrize("since", [0, SINCE - 1, SINCE, SINCE + 1, 25_000, 10**13])
def test_changed_runs_equal_rest(changes: ChangeStore, since: int) -> None:
    by_rest = [
        _comparable(r) for r in changes.rest().iter_changed_runs(changes.experiment_id, since)
    ]
    with changes.database() as database:
        runs = list(database.iter_changed_runs(changes.experiment_id, since))
    assert len({r.run_id for r in runs}) == len(runs)  # each once
    assert sorted(map(_comparable, runs)) == sorted(by_rest)
    if since == SINCE:
        assert changes.names(runs) == sorted(CHANGED_AT_SINCE)
    if since == 0:
        assert changes.names(runs) == sorted(set(PLAN) - {"deleted-new"})
    if since == 10**13:
        assert runs == []


def test_changed_runs_come_in_mlflow_order(changes: ChangeStore) -> None:
    with changes.database() as database:
        runs = list(database.iter_changed_runs(changes.experiment_id, SINCE))
        with pytest.raises(ExperimentNotFoundError, match="'1 OR 1=1' does not exist"):
            next(database.iter_changed_runs("1 OR 1=1", SINCE))
    assert [changes.names([r])[0] for r in runs] == [
        "late",
        "running-new",
        "started-at",
        "ended-at",
    ]
    assert runs[1].info["end_time"] is None


@pytest.mark.parametrize("view_type", ["ACTIVE_ONLY", "DELETED_ONLY", "ALL"])
def test_an_indexed_read_equals_a_query_per_experiment(
    changes: ChangeStore, view_type: str, caplog: pytest.LogCaptureFixture
) -> None:
    eid = changes.experiment_id
    caplog.set_level(logging.INFO, logger="mlflow_fun.extract.database.source")
    with changes.database() as database:
        plain = list(database.iter_runs(eid, run_view_type=view_type))
        with database.indexed(INDEX_FROM_EXPERIMENTS - 1):  # too few experiments: no index
            assert list(database.iter_runs(eid, run_view_type=view_type)) == plain
        assert "run index read" not in caplog.text
        with database.indexed(INDEX_FROM_EXPERIMENTS):
            indexed = list(database.iter_runs(eid, run_view_type=view_type))
            first = list(database.iter_runs(eid, run_view_type=view_type, max_results=3))
            changed = {s: list(database.iter_changed_runs(eid, s)) for s in (0, SINCE, 10**13)}
            ids = changes.run_ids  # settled: "ended-at" ended at 10,000, not 10,001
            settled = {ids["late"]: 25_000, ids["ended-at"]: 10_001, ids["running-new"]: 0}
            unsettled = list(database.iter_changed_runs(eid, SINCE, settled))
            assert list(database.iter_runs("987654")) == []
        assert "run index read runs=" in caplog.text
        plain_changed = {s: list(database.iter_changed_runs(eid, s)) for s in changed}
    assert [r.run_id for r in indexed] == [r.run_id for r in plain]  # MLflow's order too
    assert list(map(_comparable, indexed)) == list(map(_comparable, plain))
    assert [r.run_id for r in first] == [r.run_id for r in plain[:3]]
    for since, runs in changed.items():
        assert [r.run_id for r in runs] == [r.run_id for r in plain_changed[since]]
    assert changes.names(changed[SINCE]) == sorted(CHANGED_AT_SINCE)
    assert changes.names(unsettled) == sorted(CHANGED_AT_SINCE - {"late"})  # left out, unread


def test_small_experiments_pulled_whole_are_read_in_one_group(
    changes: ChangeStore, caplog: pytest.LogCaptureFixture
) -> None:
    eid, missing = changes.experiment_id, "987654"
    other = MlflowClient(changes.server_url).get_run(changes.other_run_id).info.experiment_id
    asks = [(other, "ALL"), (eid, "DELETED_ONLY"), (eid, "ACTIVE_ONLY"), (missing, "ACTIVE_ONLY")]
    caplog.set_level(logging.DEBUG, logger="mlflow_fun.extract.database.source")
    with changes.database() as database:
        plain = {ask: list(database.iter_runs(ask[0], run_view_type=ask[1])) for ask in asks}
        with database.indexed(INDEX_FROM_EXPERIMENTS, full_pulls=[eid, missing, other]):
            grouped = {ask: list(database.iter_runs(ask[0], run_view_type=ask[1])) for ask in asks}
            again = list(database.iter_runs(eid))  # handed out already: read by itself
    assert caplog.text.count("run group read") == 1
    assert f"run group read experiments=3 runs={len(changes.run_ids) + 1}" in caplog.text
    for ask, runs in grouped.items():
        assert [r.run_id for r in runs] == [r.run_id for r in plain[ask]], ask  # MLflow's order
        assert list(map(_comparable, runs)) == list(map(_comparable, plain[ask])), ask
    assert list(map(_comparable, again)) == list(map(_comparable, plain[(eid, "ACTIVE_ONLY")]))
    assert changes.names(grouped[(eid, "DELETED_ONLY")]) == ["deleted-new"]
    assert grouped[(missing, "ACTIVE_ONLY")] == []


@pytest.mark.parametrize("view_type", ["ACTIVE_ONLY", "DELETED_ONLY", "ALL"])
def test_runs_by_id_equal_rest(
    changes: ChangeStore, view_type: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queries, "RUN_IDS_PER_QUERY", 3)  # many IN lists
    missing = [f"{n:032x}" for n in range(1, 251)]
    wanted = [*changes.run_ids.values(), changes.other_run_id, *missing, changes.run_ids["late"]]
    eid = changes.experiment_id
    by_rest = changes.rest().iter_runs_by_id(eid, wanted, view_type)
    with changes.database() as database:
        runs = list(database.iter_runs_by_id(eid, iter(wanted), view_type))  # any iterable
    assert sorted(map(_comparable, runs)) == sorted(map(_comparable, by_rest))
    expected = {
        "ACTIVE_ONLY": sorted(set(PLAN) - {"deleted-new"}),
        "DELETED_ONLY": ["deleted-new"],
        "ALL": sorted(PLAN),
    }[view_type]
    assert changes.names(runs) == expected


def test_runs_by_id_edges(changes: ChangeStore) -> None:
    eid = changes.experiment_id
    with changes.database() as database:
        assert list(database.iter_runs_by_id(eid, [])) == []
        assert list(database.iter_runs_by_id(eid, [changes.other_run_id])) == []
        late = list(database.iter_runs_by_id(eid, [changes.run_ids["late"]] * 3))
        assert changes.names(late) == ["late"]
        assert late[0].params == {"alpha": "late"} and late[0].tags["t"] == ""
        with pytest.raises(ConfigError, match="\"x' or '1'='1\" is not a run id"):
            list(database.iter_runs_by_id(eid, ["x' or '1'='1"]))
        with pytest.raises(ConfigError, match="view type 'SOME'"):
            list(database.iter_runs_by_id(eid, [changes.run_ids["late"]], "SOME"))
    with pytest.raises(ConfigError, match="\"x' or '1'='1\" is not a run id"):
        list(changes.rest().iter_runs_by_id(eid, ["x' or '1'='1"]))


def test_metric_history_equals_rest(changes: ChangeStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queries, "RUN_IDS_PER_QUERY", 2)  # many IN lists
    rest = changes.rest()
    runs = list(rest.iter_runs(changes.experiment_id, run_view_type="ALL"))
    by_rest = _points(rest.iter_metric_history(runs))
    with changes.database() as database:
        by_db = _points(database.iter_metric_history(iter(runs)))
    assert by_db == by_rest
    old = changes.run_ids["old"]
    assert [p[1:] for p in by_db if p[0] == old] == [
        ("acc", 0, 1_000, 0.7),
        ("loss", 0, 1_000, 0.9),
        ("loss", 1, 1_001, 0.5),
        ("loss", 2, 1_002, "nan"),
    ]
    ended = [p[4] for p in by_db if p[0] == changes.run_ids["ended-at"]]
    assert ended == [MAX_DOUBLE, -MAX_DOUBLE, 0.3]  # +-inf as MLflow stores them
    assert not [p for p in by_db if p[0] == changes.run_ids["running-old"]]  # no metrics
    assert [p[1:] for p in by_db if p[0] == changes.run_ids["started-at"]] == [
        ("acc", 0, 10_000, 0.1),
        ("acc", 0, 10_001, 0.2),
        ("loss", 0, 10_000, 2.0),
        ("loss", 0, 10_001, 2.0),
    ]


def test_metric_history_reads_only_the_keys_of_the_records(changes: ChangeStore) -> None:
    with changes.database() as database:
        late = next(database.iter_runs_by_id(changes.experiment_id, [changes.run_ids["late"]]))
        only_loss = RunRecord(late.run_id, late.info, {"loss": 1.0}, {}, {})
        none = RunRecord(late.run_id, late.info, {}, {}, {})
        points = list(database.iter_metric_history([only_loss]))
        assert list(database.iter_metric_history([none])) == []
        assert list(database.iter_metric_history([])) == []
    assert sorted((p.key, p.value, p.step) for p in points) == [("loss", 1.0, 3), ("loss", 1.5, 5)]
    assert _points(points) == _points(changes.rest().iter_metric_history([only_loss]))


def test_runs_read_in_many_in_lists_equal_rest(
    changes: ChangeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queries, "RUN_IDS_PER_QUERY", 2)  # a batch's runs asked 2 ids at a time
    by_rest = list(changes.rest().iter_runs(changes.experiment_id, run_view_type="ALL"))
    with changes.database() as database:
        runs = list(database.iter_runs(changes.experiment_id, run_view_type="ALL"))
    assert [r.run_id for r in runs] == [r.run_id for r in by_rest]  # MLflow's order
    assert sorted(map(_comparable, runs)) == sorted(map(_comparable, by_rest))
    assert len(runs) == len(PLAN)
