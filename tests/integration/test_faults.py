"""Seeded faults between the job (and `best`) and a real mlflow server: every run ends in
the same answer as without faults, or in a clean failure that leaves tables untouched."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import pytest
from chispa import assert_df_equality

from mlflow_fun.cli.main import main
from mlflow_fun.config import JobConfig
from mlflow_fun.errors import JobFailedError, MlflowFunError
from mlflow_fun.extract.http import MlflowHttpClient, RetrySettings
from mlflow_fun.extract.rest import RestSource
from mlflow_fun.load.job import run_job
from mlflow_fun.query.builders import fetch_flat_runs
from mlflow_fun.transform.flatten import FlatRuns
from tests.fault_proxy import FaultSchedule, fault_proxy
from tests.scripted_http import Reply
from tests.seed import Seeded

RETRY = RetrySettings(timeout=0.5, max_retries=6, backoff_factor=0.01, backoff_jitter=0.01)
RATE = 0.3
TOTALS: Counter[str] = Counter()


def _experiments(seeded: Seeded) -> list[str]:
    return [seeded.paged, seeded.typed, seeded.best, seeded.odd_keys, seeded.empty]


def _comparable(flat: FlatRuns) -> tuple:
    def plain(values: Any) -> list:
        return ["NaN" if isinstance(v, float) and math.isnan(v) else v for v in values]

    return flat.columns, {name: plain(values) for name, values in flat.data.items()}


@pytest.fixture(scope="module")
def reference(seeded: Seeded) -> dict[str, tuple]:
    source = RestSource(MlflowHttpClient(seeded.url, retry=RETRY), page_size=4)
    return {e: _comparable(fetch_flat_runs(source, e)[1]) for e in _experiments(seeded)}


@pytest.mark.parametrize("seed", range(28))
def test_extraction_through_faults(seed: int, seeded: Seeded, reference: dict) -> None:
    schedule = FaultSchedule(seed, RATE, stall_seconds=0.8)
    outcomes = []
    with fault_proxy(seeded.url, schedule) as url:
        source = RestSource(MlflowHttpClient(url, retry=RETRY), page_size=4)
        for experiment_id in _experiments(seeded):
            try:
                flat = fetch_flat_runs(source, experiment_id)[1]
            except MlflowFunError as e:
                assert str(e).startswith("the tracking server at") or "cannot reach" in str(e)
                outcomes.append("clean failure")
                continue
            assert _comparable(flat) == reference[experiment_id], f"seed {seed}"
            outcomes.append("same")
    TOTALS.update(schedule.counts)
    assert schedule.total > 0 and len(outcomes) == 5


@pytest.mark.parametrize("seed", range(100, 112))
def test_best_through_faults(
    seed: int,
    seeded: Seeded,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "0.5")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "6")
    schedule = FaultSchedule(seed, RATE, stall_seconds=0.8)
    argv = ["best", "--experiment-name", "best", "--order-by", "rmse asc, r2 desc", "--top", "2"]
    with fault_proxy(seeded.url, schedule) as url:
        code = main([*argv, "--output", "csv", "--engine", "pandas", "--tracking-uri", url])
    out, err = capsys.readouterr()
    if code == 0:
        b = seeded.best_runs
        assert out.splitlines()[1:] == [
            f"{seeded.best},{b['b']},0.5,0.9",
            f"{seeded.best},{b['a']},0.5,0.1",
        ]
    else:
        assert code == 1 and len(err.strip().splitlines()) == 1 and out == ""
    TOTALS.update(schedule.counts)


@pytest.mark.parametrize("seed", [7])
def test_job_through_faults(
    seed: int, spark: Any, seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = (seeded.paged, seeded.typed, seeded.best)
    database = f"faults_{seed}"
    run_job(JobConfig(database=database, experiment_ids=ids, tracking_uri=seeded.url), spark=spark)
    before = {e: spark.table(f"{database}.exp_{e}").collect() for e in ids}
    versions = {e: len(spark.sql(f"describe history {database}.exp_{e}").collect()) for e in ids}

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "0.5")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "6")
    schedule = FaultSchedule(seed, RATE, stall_seconds=0.8)
    failed: dict[str, str] = {}
    with fault_proxy(seeded.url, schedule) as url:
        config = JobConfig(
            database=database, experiment_ids=ids, tracking_uri=url, page_size=4, full_refresh=True
        )
        try:
            run_job(config, spark=spark, progress=False)
        except JobFailedError as e:
            failed = e.failed
    TOTALS.update(schedule.counts)
    for experiment_id in ids:
        table = spark.table(f"{database}.exp_{experiment_id}")
        expected = spark.createDataFrame(before[experiment_id], table.schema)
        assert_df_equality(table, expected, allow_nan_equality=True, ignore_row_order=True)
        history = len(spark.sql(f"describe history {database}.exp_{experiment_id}").collect())
        assert history == versions[experiment_id] + (0 if experiment_id in failed else 1)


def test_faults_outlasting_the_retry_budget_fail_cleanly(
    spark: Any, seeded: Seeded, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    answers: Counter[str] = Counter()

    def unavailable(method: str, path: str, body: bytes) -> Reply | None:
        if not path.endswith("/runs/search"):
            return None
        answers["503"] += 1
        return Reply(503, b'{"error_code": "TEMPORARILY_UNAVAILABLE", "message": "injected"}')

    with fault_proxy(seeded.url, unavailable) as url:
        code = main(["build", "--database", "faults_budget", "--tracking_uri", url,
                     "--experiment_ids", seeded.typed, "--parallelism", "1"])  # fmt: skip
    TOTALS.update(answers)
    assert answers["503"] == 4  # the first search: one try and 3 retries, then no more
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert (
        err[-1]
        == f"mlflow-fun: error: 1 experiment(s) failed: {seeded.typed}; their tables are unchanged"
    )
    assert not spark.catalog.tableExists(f"faults_budget.exp_{seeded.typed}")


def test_enough_faults_were_injected(capsys: pytest.CaptureFixture[str]) -> None:
    """Runs last in this module: the suite as a whole injected at least 200 faults."""
    line = (
        f"faults injected in test_faults.py: {sum(TOTALS.values())} "
        f"({', '.join(f'{k}={v}' for k, v in sorted(TOTALS.items()))})"
    )
    with capsys.disabled():
        print("\n" + line)
    assert sum(TOTALS.values()) >= 200, TOTALS
    assert set(TOTALS) >= {"429", "503", "500", "reset", "stall", "truncate", "duplicate"}
