"""Faults beyond HTTP: the tracking server restarted in the middle of the job's pull (a new
``mlflow server`` process on the same store and port). The job's retries carry it over the
gap, and the table equals a build without the fault."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from mlflow_fun.config import JobConfig
from mlflow_fun.extract.local_server import LocalMlflowServer, free_port
from mlflow_fun.load.job import run_job
from tests.seed import load_seed_store

RUNS = 6_000
PAGE = 100  # 60 pages: the pull outlasts the first two by seconds


def _searches(log: Path) -> int:
    return log.read_text(errors="replace").count("/runs/search HTTP")


def _rows(spark: Any, table: str) -> list[tuple[Any, ...]]:
    """Every row, columns by name, NaN as "NaN" (NaN != NaN)."""
    df = spark.table(table)
    rows = df.select(*sorted(df.columns)).collect()
    return sorted(tuple("NaN" if v != v else v for v in row) for row in rows)


def test_a_server_restarted_mid_pull(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    seeded = load_seed_store().seed_store(tmp_path / "store", runs=RUNS, experiments=1, best_runs=0)
    experiment_id = seeded.experiments[0].experiment_id
    port = free_port()
    first = LocalMlflowServer(tmp_path / "store", port=port)
    first.start()
    # Two minutes of retries (1 s doubling, 30 s at most), MLflow's own settings, not the
    # tests' fast ones: a restart takes 5-15 s here.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "8")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    config = JobConfig(
        database="restarted",
        experiment_ids=(experiment_id,),
        tracking_uri=first.url,
        page_size=PAGE,
        lock_file=str(tmp_path / "job.lock"),
    )
    outcome: dict[str, Any] = {}

    def job() -> None:
        try:
            outcome["result"] = run_job(config, spark=spark, progress=False)
        except BaseException as e:  # raised again below, in the test's thread
            outcome["error"] = e

    second = LocalMlflowServer(tmp_path / "store", port=port)
    thread = threading.Thread(target=job)
    try:
        with caplog.at_level(logging.INFO, logger="mlflow_fun.extract.http"):
            thread.start()
            deadline = time.monotonic() + 300
            while _searches(first.root / "server.log") < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert thread.is_alive(), "the pull ended before the server went down"
            first.stop()
            second.start()
            thread.join(timeout=900)
        assert "error" not in outcome, outcome.get("error")
        (result,) = outcome["result"].results
        assert (result.status, result.run_count) == ("ok", RUNS)
        retried = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
        assert any("endpoint=runs/search" in line for line in retried), retried
        clean = config.with_overrides(database="restarted_clean", tracking_uri=second.url)
        run_job(clean, spark=spark, progress=False)
    finally:
        first.stop()
        second.stop()
    table = f"exp_{experiment_id}"
    assert _rows(spark, f"restarted.{table}") == _rows(spark, f"restarted_clean.{table}")
