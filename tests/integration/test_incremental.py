"""Incremental refresh against a real mlflow server: after every change, the merged
tables equal a full refresh of the same data (``exp_<id>``, ``runs``, ``metric_history``).

Runs get explicit start and end times, so what each incremental refresh must pull is
known exactly (the watermark is the latest start or end time seen; margin 0 here).
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

import pytest
from chispa import assert_df_equality
from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from mlflow_fun.config import JobConfig
from mlflow_fun.errors import JobLockedError
from mlflow_fun.extract.local_server import LocalMlflowServer
from mlflow_fun.load.job import run_job
from mlflow_fun.load.lock import LOCK_DIR_ENV, JobLock, default_lock_path
from mlflow_fun.load.side_tables import read_states

T0 = int(time.time() * 1000) - 3_600_000


def _run(
    client: MlflowClient,
    experiment_id: str,
    start: int,
    end: int | None,
    params: dict[str, str],
    metrics: list[tuple[str, float, int]],
) -> str:
    run_id = client.create_run(experiment_id, start_time=T0 + start).info.run_id
    client.log_batch(
        run_id,
        metrics=[Metric(k, v, T0 + start + step, step) for k, v, step in metrics],
        params=[Param(k, v) for k, v in params.items()],
    )
    if end is not None:
        client.set_terminated(run_id, "FINISHED", end_time=T0 + end)
    return run_id


class Refresher:
    """Runs the job incrementally into ``inc`` and in full into ``full``; compares."""

    def __init__(self, spark: Any, url: str, experiment_id: str) -> None:
        self.spark, self.url, self.experiment_id = spark, url, experiment_id
        self.table = f"exp_{experiment_id}"

    def step(self, compare: bool = True) -> Any:
        common = {
            "experiment_ids": (self.experiment_id,),
            "tracking_uri": self.url,
            "with_history": True,
        }
        incremental = run_job(
            JobConfig(database="inc", incremental_margin_minutes=0, **common),
            spark=self.spark,
            progress=False,
        )
        if compare:
            run_job(
                JobConfig(database="full", full_refresh=True, **common),
                spark=self.spark,
                progress=False,
            )
            self.assert_equal()
        (result,) = incremental.results
        return result

    def assert_equal(self) -> None:
        where = f"experiment_id = '{self.experiment_id}'"
        pairs = [
            (f"{self.table}", "run_id"),
            ("runs", "run_id"),
            ("metric_history", "run_id, key, step, timestamp, value"),
        ]
        for table, order in pairs:
            inc = self.spark.table(f"inc.{table}").where(where).orderBy(*order.split(", "))
            full = self.spark.table(f"full.{table}").where(where).orderBy(*order.split(", "))
            assert_df_equality(inc, full, allow_nan_equality=True)


def _last_operation(spark: Any, table: str) -> str:
    return str(spark.sql(f"describe history {table}").first()["operation"])


@pytest.fixture(scope="module")
def experiment(mlflow_server: LocalMlflowServer) -> tuple[MlflowClient, str]:
    client = MlflowClient(mlflow_server.url)
    return client, client.create_experiment(f"incremental-{uuid.uuid4().hex[:8]}")


def test_incremental_equals_full_refresh_after_every_change(
    spark: Any, mlflow_server: LocalMlflowServer, experiment: tuple[MlflowClient, str]
) -> None:
    client, experiment_id = experiment
    refresher = Refresher(spark, mlflow_server.url, experiment_id)
    r1 = _run(
        client, experiment_id, 1000, 2000, {"alpha": "1"}, [("rmse", 0.9, 0), ("rmse", 0.8, 1)]
    )
    r2 = _run(client, experiment_id, 3000, 4000, {"alpha": "2"}, [("rmse", 0.7, 0)])
    r3 = _run(client, experiment_id, 5000, None, {"alpha": "3"}, [("loss", 5.0, 0)])

    first = refresher.step()
    assert (first.mode, first.runs_pulled, first.run_count) == ("full", 3, 3)

    # a new run; new metrics on the running run; a new param key (a column at the end)
    r4 = _run(client, experiment_id, 6000, 7000, {"alpha": "4", "beta.x": "b"}, [("rmse", 0.6, 0)])
    client.log_metric(r3, "loss", 4.0, timestamp=T0 + 5001, step=1)
    client.log_metric(r3, "acc", 0.5, timestamp=T0 + 5001, step=1)
    result = refresher.step()
    assert (result.mode, result.runs_pulled, result.run_count) == ("incremental", 2, 4)
    table = spark.table(f"inc.exp_{experiment_id}")
    assert table.columns[-2:] == ["_m_acc", "_p_beta_x"]
    assert table.where(f"run_id = '{r3}'").first()["_m_acc"] == 0.5

    # the running run finishes: pulled with r4 (its end time is the watermark)
    client.set_terminated(r3, "FINISHED", end_time=T0 + 8000)
    result = refresher.step()
    assert (result.mode, result.runs_pulled) == ("incremental", 2)
    assert read_states(spark, "inc")[experiment_id].open_run_ids == frozenset()

    # a deleted run leaves the table; every column keeps its keys and type without it, so
    # its rows are deleted (exp_<id>, runs, metric_history), nothing is rewritten
    client.delete_run(r2)
    result = refresher.step()
    assert (result.mode, result.run_count) == ("incremental", 3)
    assert read_states(spark, "inc")[experiment_id].deleted_run_ids == {r2}
    for table in (f"exp_{experiment_id}", "runs", "metric_history"):
        assert _last_operation(spark, f"inc.{table}") == "DELETE", table

    # a restored run comes back, merged
    client.restore_run(r2)
    result = refresher.step()
    assert (result.mode, result.runs_pulled, result.run_count) == ("incremental", 2, 4)

    # r4 held the only beta.x: deleting it drops a column, which takes a full refresh
    client.delete_run(r4)
    result = refresher.step()
    assert (result.mode, result.run_count) == ("full", 3)
    assert "_p_beta_x" not in spark.table(f"inc.exp_{experiment_id}").columns
    client.restore_run(r4)
    result = refresher.step()
    assert (result.mode, result.run_count) == ("incremental", 4)

    # a param changing type (int -> double): a full refresh types the column again
    r5 = _run(client, experiment_id, 10000, 10500, {"alpha": "0.5"}, [("rmse", 0.4, 0)])
    result = refresher.step()
    assert (result.mode, result.run_count) == ("full", 5)
    alpha = spark.table(f"inc.exp_{experiment_id}").schema["_p_alpha"].dataType.simpleString()
    assert alpha == "double"

    # r5 held the only 0.5: deleting it narrows alpha back to int, a full refresh again
    client.delete_run(r5)
    result = refresher.step()
    assert (result.mode, result.run_count) == ("full", 4)
    alpha = spark.table(f"inc.exp_{experiment_id}").schema["_p_alpha"].dataType.simpleString()
    assert alpha == "int"
    client.restore_run(r5)
    result = refresher.step()
    assert (result.mode, result.run_count) == ("full", 5)  # restored: alpha widens again

    # nothing changed: the run at the watermark is pulled again, and nothing is written
    version = spark.sql(f"describe history inc.exp_{experiment_id}").first()["version"]
    result = refresher.step(compare=False)
    assert (result.mode, result.runs_pulled, result.run_count) == ("incremental", 1, 5)
    assert spark.sql(f"describe history inc.exp_{experiment_id}").first()["version"] == version
    assert {r1, r4} <= {row["run_id"] for row in spark.table("inc.runs").collect()}


def test_second_job_stops_at_the_lock(
    spark: Any, mlflow_server: LocalMlflowServer, experiment: tuple[MlflowClient, str]
) -> None:
    _, experiment_id = experiment
    path = default_lock_path(None, "locked")
    assert path == os.path.join(os.environ[LOCK_DIR_ENV], "mlflow-fun-locked.lock")  # conftest's
    config = JobConfig(
        database="locked", experiment_ids=(experiment_id,), tracking_uri=mlflow_server.url
    )
    with JobLock(path), pytest.raises(JobLockedError) as caught:
        run_job(config, spark=spark, progress=False)
    assert f"another mlflow-fun job holds the lock {path} (pid " in str(caught.value)
    assert not spark.catalog.tableExists(f"locked.exp_{experiment_id}")
    result = run_job(config, spark=spark, progress=False)
    assert result.results[0].status == "ok"


def test_a_crash_after_a_fallback_full_refresh_is_caught_up(
    spark: Any,
    mlflow_server: LocalMlflowServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mlflow_fun.errors import JobFailedError
    from mlflow_fun.load.side_writer import SideWriter

    client = MlflowClient(mlflow_server.url)
    experiment_id = client.create_experiment(f"fallback-{uuid.uuid4().hex[:8]}")
    # the only run with beta: deleting it drops a column, so the refresh falls back to full
    doomed = _run(
        client, experiment_id, 1000, 2000, {"alpha": "1", "beta": "x"}, [("rmse", 0.9, 0)]
    )
    _run(client, experiment_id, 3000, 4000, {"alpha": "2"}, [("rmse", 0.8, 0)])
    config = JobConfig(
        database="fallback", experiment_ids=(experiment_id,), tracking_uri=mlflow_server.url
    )
    run_job(config, spark=spark, progress=False)
    client.delete_run(doomed)

    def runs_table_down(*args: Any) -> None:  # the job dies after writing exp_<id>
        raise OSError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(SideWriter, "_replace_rows", runs_table_down)  # either engine
        with pytest.raises(JobFailedError):
            run_job(config, spark=spark, progress=False)
    assert spark.table(f"fallback.exp_{experiment_id}").count() == 1  # already rewritten
    assert read_states(spark, "fallback")[experiment_id].watermark_ms is None  # pending

    (result,) = run_job(config, spark=spark, progress=False).results
    assert result.mode == "full"
    run_ids = {
        r["run_id"]
        for r in spark.table("fallback.runs").where(f"experiment_id = '{experiment_id}'").collect()
    }
    assert doomed not in run_ids and len(run_ids) == 1
