"""``mlflow-fun maintain``: compacted and vacuumed tables read the same; old status rows go."""

from __future__ import annotations

from typing import Any

import pytest
from chispa import assert_df_equality
from mlflow import MlflowClient

from mlflow_fun.cli.main import main
from mlflow_fun.config import JobConfig
from mlflow_fun.load.job import run_job
from mlflow_fun.load.lock import JobLock
from mlflow_fun.load.maintain import MaintenanceOptions, maintain
from tests.seed import Seeded, _run

DATABASE = "maintained"
REFRESHES = 3
TABLES = ["experiments", "metric_directions", "mlflow_state", "mlflow_status", "runs"]


@pytest.fixture(scope="module")
def refreshed(spark: Any, seeded: Seeded) -> list[str]:
    """Two experiments: a full build, then incremental refreshes that each add a run."""
    client = MlflowClient(seeded.url)
    experiments = [client.create_experiment(f"maintain-{n}") for n in range(2)]
    config = JobConfig(
        database=DATABASE, experiment_ids=tuple(experiments), tracking_uri=seeded.url
    )
    for refresh in range(REFRESHES):
        for e in experiments:
            _run(client, e, 1000 + refresh, metrics={"rmse": refresh / 10}, params={"r": "1"})
        run_job(config, spark=spark, progress=False)
    return experiments


def _files(spark: Any, table: str) -> int:
    return int(spark.sql(f"describe detail {DATABASE}.{table}").collect()[0]["numFiles"])


def test_maintain_compacts_vacuums_and_trims_status(
    spark: Any, refreshed: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    tables = [f"exp_{e}" for e in refreshed]
    before = {t: spark.table(f"{DATABASE}.{t}").collect() for t in tables}
    files = {t: _files(spark, t) for t in tables}
    assert all(n >= REFRESHES for n in files.values()), files  # a MERGE adds a file each time
    assert spark.table(f"{DATABASE}.mlflow_status").count() == 2 * REFRESHES

    with caplog.at_level("INFO", logger="mlflow_fun.load.maintain"):
        results = {
            r.table: r for r in maintain(spark, MaintenanceOptions(DATABASE, 1, status_days=0))
        }
    assert "VACUUM LITE" not in caplog.text  # every table vacuumed from its log

    for t in tables:
        assert (results[t].files_before, results[t].files_after) == (files[t], 1)
        now = spark.table(f"{DATABASE}.{t}")
        assert_df_equality(
            now, spark.createDataFrame(before[t], now.schema), ignore_row_order=True,
            allow_nan_equality=True,
        )  # fmt: skip
        history = spark.sql(f"describe history {DATABASE}.{t}").collect()
        assert [r["operation"] for r in history[:3]] == ["VACUUM END", "VACUUM START", "OPTIMIZE"]
    status = spark.table(f"{DATABASE}.mlflow_status")
    assert results["mlflow_status"].status_rows_deleted == 2 * REFRESHES - 2
    assert sorted(r["experiment_id"] for r in status.collect()) == sorted(refreshed)
    assert sorted(results) == sorted([*TABLES, *tables])  # not the views best_runs, metrics_long


def test_maintain_from_the_cli_and_its_refusals(
    spark: Any, refreshed: list[str], tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["maintain", "--database", DATABASE, "--lock-file", str(tmp_path / "lock")]
    assert main([*argv, "--retain-hours", "0.5"]) == 1
    assert capsys.readouterr().err == (
        "mlflow-fun: error: retain_hours 0.5 must be at least 1: a shorter VACUUM deletes "
        "files that a query or refresh in flight still reads\n"
    )
    with JobLock(str(tmp_path / "lock")):
        assert main(argv) == 1
    assert "another mlflow-fun job holds the lock" in capsys.readouterr().err
    assert main(argv) == 0
    printed = capsys.readouterr().out.splitlines()
    assert sorted(line.split(":")[0] for line in printed) == sorted(
        [*TABLES, *(f"exp_{e}" for e in refreshed)]
    )
    assert f"exp_{refreshed[0]}: 1 -> 1 file(s), version " in "\n".join(printed)
    assert main(["maintain", "--database", "no_such_db", "--lock-file", str(tmp_path / "l")]) == 1
    assert capsys.readouterr().err == (
        "mlflow-fun: error: database 'no_such_db' does not exist; run `mlflow-fun build` first\n"
    )
