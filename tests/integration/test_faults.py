"""Seeded faults between the job (and `best`) and a real mlflow server: every run ends in
the same answer as without faults, or in a clean failure that leaves tables untouched."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from chispa import assert_df_equality

from mlflow_fun.cli.main import main
from mlflow_fun.config import JobConfig
from mlflow_fun.errors import JobFailedError, MlflowFunError, TrackingServerError
from mlflow_fun.extract.http import MlflowHttpClient, RetrySettings
from mlflow_fun.extract.mlflow_client import MlflowClientSource
from mlflow_fun.extract.rest import RestSource
from mlflow_fun.load.job import run_job
from mlflow_fun.query.builders import PandasDataframeBuilder, fetch_flat_runs
from mlflow_fun.transform.flatten import FlatRuns
from tests.fault_proxy import FAULT_KINDS, Fault, FaultSchedule, fault_proxy
from tests.scripted_http import Reply
from tests.seed import Seeded

# A page of four runs answers in 10-15 ms here: a stalled answer times out after 0.3 s
# (each of the 28 extraction tests waits out one or two stalls).
RETRY = RetrySettings(timeout=0.3, max_retries=6, backoff_factor=0.01, backoff_jitter=0.01)
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
    schedule = FaultSchedule(seed, RATE, stall_seconds=0.5)
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


def _fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The retry settings MLflow's client and the REST source both read, made quick."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")  # MLflow reads whole seconds
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "6")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")  # and a whole factor
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "0.05")


@pytest.mark.parametrize(
    ("source", "seed"),
    [*(("rest", s) for s in range(100, 112)), *(("api", s) for s in range(300, 308))],
)
def test_best_through_faults(
    source: str,
    seed: int,
    seeded: Seeded,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fast_retries(monkeypatch)
    schedule = FaultSchedule(seed, RATE, stall_seconds=1.2)
    argv = ["best", "--experiment-name", "best", "--order-by", "rmse asc, r2 desc", "--top", "2"]
    argv += ["--source", source, "--engine", "pandas"]
    with fault_proxy(seeded.url, schedule) as url:
        code = main([*argv, "--output", "csv", "--tracking-uri", url])
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


@pytest.mark.parametrize(
    ("source", "seed"), [(s, seed) for s in ("rest", "api") for seed in (400, 401, 402)]
)
def test_builders_through_faults(
    source: str, seed: int, seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fast_retries(monkeypatch)
    schedule = FaultSchedule(seed, RATE, stall_seconds=1.2)
    with fault_proxy(seeded.url, schedule) as url:
        run_source = MlflowClientSource(url) if source == "api" else None
        builder = PandasDataframeBuilder(url, source=run_source, page_size=2)
        try:
            best = builder.get_best_run(seeded.best, "rmse")
        except TrackingServerError as e:
            assert "\n" not in str(e)
            best = None
    TOTALS.update(schedule.counts)
    assert best in (None, (seeded.best_runs["a"], 0.5))


def _cut_first(times: float, endpoint: str) -> Callable[[str, str, bytes], Fault | None]:
    """Cut the body of the first ``times`` answers to ``endpoint`` half-way."""
    seen: Counter[str] = Counter()

    def rule(method: str, path: str, body: bytes) -> Fault | None:
        if not path.split("?")[0].endswith(endpoint):
            return None
        seen[endpoint] += 1
        return Fault("cut") if seen[endpoint] <= times else None

    return rule


@pytest.mark.parametrize("source", ["rest", "api"])
def test_a_body_cut_half_way_is_retried_or_one_line(
    source: str,
    seeded: Seeded,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fault of issue 18: the connection drops in the middle of experiments/get's body."""
    _fast_retries(monkeypatch)
    argv = ["best", "--experiment-id", seeded.best, "--metric", "rmse", "--source", source]
    with fault_proxy(seeded.url, _cut_first(2, "experiments/get")) as url:
        assert main([*argv, "--tracking-uri", url]) == 0
    assert capsys.readouterr().out == f"('{seeded.best_runs['a']}', 0.5)\n"
    with fault_proxy(seeded.url, _cut_first(math.inf, "experiments/get")) as url:
        assert main([*argv, "--tracking-uri", url]) == 1
    out, err = capsys.readouterr()
    [line] = err.splitlines()
    assert out == "" and "Traceback" not in err
    if source == "api":
        assert line.startswith(
            f"mlflow-fun: error: MLflow's client failed at {url} (get_experiment): "
        )
    else:
        assert line.startswith(f"mlflow-fun: error: cannot reach the tracking server at {url}")
    TOTALS["cut"] += 2 + 7


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
    assert set(TOTALS) >= set(FAULT_KINDS)
