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
from mlflow_fun.errors import ServerUnreachableError
from mlflow_fun.extract.local_server import LocalMlflowServer, free_port
from mlflow_fun.load.job import run_job
from tests.seed import load_seed_store

RUNS = 6_000
PAGE = 100  # 60 pages: the pull outlasts the first two by seconds


def _served(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    runs: int,
    experiments: int,
    retries: tuple[str, str],
) -> tuple[Any, LocalMlflowServer]:
    """A seeded store served on a free port, and the client's retries (count, first
    backoff) set for the job."""
    seeded = load_seed_store().seed_store(
        tmp_path / "store", runs=runs, experiments=experiments, best_runs=0
    )
    server = LocalMlflowServer(tmp_path / "store", port=free_port())
    server.start()
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", retries[0])
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", retries[1])
    return seeded, server


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
    # Two minutes of retries (1 s doubling, 30 s at most), MLflow's own settings, not the
    # tests' fast ones: a restart takes 5-15 s here.
    seeded, first = _served(tmp_path, monkeypatch, RUNS, 1, retries=("8", "1"))
    experiment_id = seeded.experiments[0].experiment_id
    port = first.port
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


class _StopOnFirstTable(logging.Handler):
    """Stops ``server`` when the job logs its first table written (in the writer's thread:
    the pulls still to start then find it gone)."""

    def __init__(self, server: LocalMlflowServer) -> None:
        super().__init__(logging.INFO)
        self.server, self.stopped = server, False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.stopped and record.getMessage().startswith("table written"):
            self.stopped = True
            self.server.stop()


def test_a_server_gone_mid_job_stops_it_in_one_error(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """No table is started once a pull finds the server gone (each would wait through the
    client's retries, then halve its page and wait again); the tables written keep their
    `runs` rows, and the next run completes every table."""
    experiments = 8
    seeded, server = _served(tmp_path, monkeypatch, 20 * experiments, experiments, ("1", "0.1"))
    port = server.port
    config = JobConfig(
        database="gone",
        tracking_uri=server.url,
        parallelism=1,  # one pull stream; 2 experiments read ahead of the 2 writers
        lock_file=str(tmp_path / "job.lock"),
    )
    stopper = _StopOnFirstTable(server)
    logging.getLogger("mlflow_fun.load.results").addHandler(stopper)
    try:
        with (
            caplog.at_level(logging.INFO, logger="mlflow_fun"),
            pytest.raises(ServerUnreachableError) as caught,
        ):
            run_job(config, spark=spark, progress=False)
    finally:
        logging.getLogger("mlflow_fun.load.results").removeHandler(stopper)
        server.stop()
    lines = caplog.messages
    written = sum(line.startswith("table written") for line in lines)
    failed = sum(line.startswith("experiment failed") for line in lines)
    skipped = experiments + 1 - written - failed  # and MLflow's Default experiment
    # the pulls then in flight fail (one stream, and its read-ahead slot), the rest are skipped
    assert stopper.stopped and written >= 1 and 1 <= failed <= 2 and skipped >= 1, lines
    assert f"stopped before {skipped} experiment(s); their tables are unchanged" in lines
    assert lines.count("source unreachable: no more tables are started") == 1
    assert not any("page dropped" in line for line in lines)  # refused: no smaller page
    assert str(caught.value).startswith(f"cannot reach the tracking server at {server.url} ")
    assert f"; {written} of {experiments + 1} table(s) written, the others unchanged. " in str(
        caught.value
    )
    runs = spark.sql("select experiment_id, count(*) as n from gone.runs group by 1").collect()
    seeded_written = sum(line.startswith("table written") and " runs=20 " in line for line in lines)
    assert sorted(row.n for row in runs) == [20] * seeded_written  # complete (Default: 0 runs)

    again = LocalMlflowServer(tmp_path / "store", port=port)
    again.start()
    try:
        result = run_job(config, spark=spark, progress=False)
    finally:
        again.stop()
    assert (len(result.results), result.failed) == (experiments + 1, {})
    assert result.run_count == 20 * experiments == seeded.run_count
