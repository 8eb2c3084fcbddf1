"""Sources against a real mlflow server: pagination, de-duplication, view types, errors."""

from __future__ import annotations

import math

import pytest
from mlflow import MlflowClient

from mlflow_fun.errors import ExperimentNotFoundError
from mlflow_fun.extract.database.source import DatabaseSource
from mlflow_fun.extract.mlflow_client import MlflowClientSource
from mlflow_fun.extract.open import open_source
from mlflow_fun.extract.rest import RestSource
from mlflow_fun.load.plan import LIST_FROM_IDS, resolve_experiments
from mlflow_fun.model import RunRecord
from tests.seed import Seeded, _run, load_seed_store


def _comparable(run: RunRecord) -> tuple:
    """A run as a sortable tuple; NaN (never equal to itself) as the string 'nan'."""
    metrics = {k: "nan" if math.isnan(v) else v for k, v in run.metrics.items()}
    return (run.run_id, sorted(run.info.items()), sorted(metrics.items()), run.params, run.tags)


def test_more_runs_than_one_page(seeded: Seeded) -> None:
    source = open_source(seeded.url, page_size=10)
    assert isinstance(source, RestSource)
    run_ids = [run.run_id for run in source.iter_runs(seeded.paged)]
    assert len(run_ids) == 25
    assert set(run_ids) == set(seeded.paged_run_ids)


def test_runs_logged_during_a_crawl_are_not_doubled(seeded: Seeded) -> None:
    client = MlflowClient(seeded.url)
    experiment_id = client.create_experiment("crawl")
    originals = {_run(client, experiment_id, 1000 + i) for i in range(25)}
    runs = open_source(seeded.url, page_size=10).iter_runs(experiment_id)
    first_page = [next(runs).run_id for _ in range(10)]
    _run(client, experiment_id, 10_000_000)  # newest: shifts every later page by one
    rest = [run.run_id for run in runs]
    assert len(first_page) + len(rest) == 25
    assert set(first_page) | set(rest) == originals


def test_deleted_runs_excluded_by_default(seeded: Seeded) -> None:
    source = open_source(seeded.url)
    active = {run.run_id for run in source.iter_runs(seeded.best)}
    deleted = {run.run_id for run in source.iter_runs(seeded.best, run_view_type="DELETED_ONLY")}
    assert seeded.deleted_run_id not in active
    assert len(active) == 7
    assert deleted == {seeded.deleted_run_id}


def test_rest_and_mlflow_client_give_the_same_records(seeded: Seeded) -> None:
    rest = open_source(seeded.url)
    api = MlflowClientSource(seeded.url)
    for experiment_id in (seeded.typed, seeded.odd_keys, seeded.best):
        by_rest = sorted(map(_comparable, rest.iter_runs(experiment_id)))
        by_api = sorted(map(_comparable, api.iter_runs(experiment_id)))
        assert by_rest == by_api
    assert rest.get_experiment(seeded.typed) == api.get_experiment(seeded.typed)


def test_experiments_listed_and_found_by_name(seeded: Seeded) -> None:
    source = open_source(seeded.url)
    names = {e.name for e in source.iter_experiments()}
    assert {"Default", "empty", "paged", "typed", "best", "odd 'keys' ü"} <= names
    assert source.get_experiment_by_name("odd 'keys' ü").experiment_id == seeded.odd_keys


@pytest.mark.parametrize("make_source", [open_source, MlflowClientSource])
def test_unknown_experiment(seeded: Seeded, make_source: type) -> None:
    source = make_source(seeded.url)
    with pytest.raises(ExperimentNotFoundError, match="experiment id '987654' does not exist"):
        source.get_experiment("987654")
    with pytest.raises(ExperimentNotFoundError, match="no experiment named 'nope'"):
        source.get_experiment_by_name("nope")


def test_many_ids_resolve_as_one_by_one_from_mlflows_database(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    store = tmp_path_factory.mktemp("many_ids_store")
    seeded = load_seed_store().seed_store(store, runs=60, experiments=60, best_runs=0)
    url = f"sqlite:///{seeded.db_path}"
    MlflowClient(url).delete_experiment(seeded.experiments[5].experiment_id)
    ids = [e.experiment_id for e in reversed(seeded.experiments)]
    assert len(ids) >= LIST_FROM_IDS

    with DatabaseSource(url) as database:
        for source in (database, MlflowClientSource(url)):
            one_by_one = [source.get_experiment(i) for i in ids]  # a deleted one too
            assert resolve_experiments(source, ids) == one_by_one
            with pytest.raises(ExperimentNotFoundError, match="id\\(s\\) 987654 do not exist"):
                resolve_experiments(source, [*ids, "987654"])
