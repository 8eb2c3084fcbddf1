"""``--with-registry``: ``<database>.model_versions`` follows the real server's registry."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from mlflow import MlflowClient

from mlflow_fun.config import JobConfig
from mlflow_fun.extract.local_server import LocalMlflowServer
from mlflow_fun.load.job import run_job
from tests.seed import Seeded, _run

DATABASE = "registry_models"
WINE = "registry-wine"
OTHER = "registry-other"
RMSE = {"a": 0.30, "b": 0.20, "c": 0.25}  # run b is the best by rmse

COLUMNS = (
    "name, version, run_id, model_id, source, status, current_stage, aliases, tags, "
    "unix_millis(creation_time) as creation_time, "
    "unix_millis(last_updated_time) as last_updated_time, description"
)

# Which run is behind @champion, and is it still the best of its experiment by rmse?
CHAMPION_SQL = f"""
with best as (
  select experiment_id, min(metrics['rmse']) as best_rmse,
         min_by(run_id, metrics['rmse']) as best_run_id
  from {DATABASE}.runs
  where lifecycle_stage = 'active'
  group by experiment_id
)
select mv.name, mv.version, mv.run_id, r.metrics['rmse'] as rmse,
       b.best_run_id, b.best_rmse, r.metrics['rmse'] <= b.best_rmse as is_best
from {DATABASE}.model_versions mv
join {DATABASE}.runs r on r.run_id = mv.run_id
join best b on b.experiment_id = r.experiment_id
where array_contains(mv.aliases, 'champion')
order by mv.name
"""


@pytest.fixture(scope="module")
def registry(seeded: Seeded) -> dict[str, Any]:
    """Three runs, two registered models (one version without a run), two aliases."""
    client = MlflowClient(seeded.url)
    experiment_id = client.create_experiment("registry-runs")
    runs = {
        name: _run(client, experiment_id, 1000 + i, metrics={"rmse": rmse})
        for i, (name, rmse) in enumerate(RMSE.items())
    }
    client.create_registered_model(WINE)
    client.create_model_version(
        WINE, f"runs:/{runs['a']}/model", run_id=runs["a"], description="first try"
    )
    client.create_model_version(
        WINE, f"runs:/{runs['b']}/model", run_id=runs["b"], tags={"validated": "yes"}
    )
    client.create_registered_model(OTHER)
    client.create_model_version(OTHER, "s3://bucket/other/model", tags={"team": "x", "a": "b"})
    client.set_registered_model_alias(WINE, "champion", "1")
    client.set_registered_model_alias(WINE, "challenger", "2")
    config = JobConfig(
        database=DATABASE,
        experiment_ids=(experiment_id,),
        tracking_uri=seeded.url,
        with_registry=True,
    )
    return {"client": client, "runs": runs, "experiment_id": experiment_id, "config": config}


def _table(spark: Any) -> list[tuple[Any, ...]]:
    rows = spark.sql(f"select {COLUMNS} from {DATABASE}.model_versions").collect()
    return sorted(tuple(row) for row in rows)


def _registry(client: MlflowClient) -> list[tuple[Any, ...]]:
    """Every version as MLflow's client sees it, in the table's columns.

    MLflow 3.17's ``search_model_versions`` returns no aliases (its server sends none);
    ``get_model_version`` has them. An empty ``run_id`` (no run) is NULL in the table.
    """
    return sorted(
        (
            mv.name,
            int(mv.version),
            mv.run_id or None,
            mv.model_id,
            mv.source,
            mv.status,
            mv.current_stage,
            sorted(client.get_model_version(mv.name, mv.version).aliases),
            mv.tags,
            mv.creation_timestamp,
            mv.last_updated_timestamp,
            mv.description,
        )
        for mv in client.search_model_versions()
    )


def test_the_table_is_the_registry(spark: Any, registry: dict[str, Any]) -> None:
    run_job(registry["config"], spark=spark, progress=False)
    table = _table(spark)
    assert table == _registry(registry["client"])
    runs = registry["runs"]
    assert [(r[0], r[1], r[2], r[3], r[7], r[8], r[11]) for r in table] == [
        (OTHER, 1, None, None, [], {"a": "b", "team": "x"}, ""),
        (WINE, 1, runs["a"], None, ["champion"], {}, "first try"),
        (WINE, 2, runs["b"], None, ["challenger"], {"validated": "yes"}, ""),
    ]
    types = {
        f.name: f.dataType.simpleString() for f in spark.table(f"{DATABASE}.model_versions").schema
    }
    assert types == {
        "name": "string",
        "version": "int",
        "run_id": "string",
        "model_id": "string",
        "source": "string",
        "status": "string",
        "current_stage": "string",
        "aliases": "array<string>",
        "tags": "map<string,string>",
        "creation_time": "timestamp",
        "last_updated_time": "timestamp",
        "description": "string",
    }


def test_the_champion_is_not_the_best_run(spark: Any, registry: dict[str, Any]) -> None:
    runs = registry["runs"]
    assert [tuple(row) for row in spark.sql(CHAMPION_SQL).collect()] == [
        (WINE, 1, runs["a"], 0.30, runs["b"], 0.20, False)
    ]


def test_a_moved_alias_and_a_deleted_version(spark: Any, registry: dict[str, Any]) -> None:
    client, runs = registry["client"], registry["runs"]
    commits = spark.sql(f"describe history {DATABASE}.model_versions").count()
    client.set_registered_model_alias(WINE, "champion", "2")
    client.delete_model_version(WINE, "1")
    run_job(registry["config"], spark=spark, progress=False)
    table = _table(spark)
    assert table == _registry(client)
    assert [(r[0], r[1], r[7]) for r in table] == [
        (OTHER, 1, []),
        (WINE, 2, ["challenger", "champion"]),
    ]
    assert [tuple(row) for row in spark.sql(CHAMPION_SQL).collect()] == [
        (WINE, 2, runs["b"], 0.20, runs["b"], 0.20, True)
    ]
    history = spark.sql(f"describe history {DATABASE}.model_versions").collect()
    assert len(history) == commits + 1  # one commit per job run: the whole table replaced
    assert (history[0]["operation"], history[0]["operationParameters"]["mode"]) == (
        "WRITE",
        "Overwrite",
    )


def test_a_registry_that_cannot_be_written_is_one_warning(
    spark: Any, registry: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    database = "registry_blocked"
    spark.sql(f"create database if not exists {database}")
    # A constraint someone added that the registry breaks: the write fails, the old
    # table (no rows) stays.
    spark.sql(f"create table {database}.model_versions (version int) using delta")
    spark.sql(f"alter table {database}.model_versions add constraint v check (version > 100)")
    config = JobConfig(
        database=database,
        experiment_ids=(registry["experiment_id"],),
        tracking_uri=registry["config"].tracking_uri,
        with_registry=True,
    )
    with caplog.at_level(logging.WARNING, logger="mlflow_fun.load.job"):
        result = run_job(config, spark=spark, progress=False)
    assert [(r.experiment_id, r.status) for r in result.results] == [
        (registry["experiment_id"], "ok")
    ]
    assert spark.table(f"{database}.exp_{registry['experiment_id']}").count() == len(RMSE)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"model_versions not written database={database} error=")
    assert "CHECK constraint v (version > 100) violated" in warnings[0]
    assert warnings[0].endswith(
        "(the experiment tables are written; the next run of the job tries again)"
    )
    assert spark.table(f"{database}.model_versions").count() == 0


def test_a_store_without_rest_skips_the_registry(
    spark: Any,
    registry: dict[str, Any],
    mlflow_server: LocalMlflowServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    database = "registry_from_store"
    store = mlflow_server.backend_store_uri  # sqlite:///...: MLflow's client, not REST
    config = JobConfig(
        database=database,
        experiment_ids=(registry["experiment_id"],),
        tracking_uri=store,
        with_registry=True,
    )
    with caplog.at_level(logging.INFO, logger="mlflow_fun.load.job"):
        run_job(config, spark=spark, progress=False)
    skipped = [r.getMessage() for r in caplog.records if "model registry" in r.getMessage()]
    assert skipped == [
        "model registry skipped: model_versions is read from a tracking server's REST API, "
        f"not from {store}"
    ]
    assert not spark.catalog.tableExists(f"{database}.model_versions")
    assert spark.table(f"{database}.exp_{registry['experiment_id']}").count() == len(RMSE)
