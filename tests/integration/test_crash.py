"""Crash safety: SIGKILL at random points, SIGTERM between experiments, readers during writes."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from mlflow_fun.config import JobConfig
from mlflow_fun.load.job import run_job
from tests.seed import Seeded, _run

SCRIPT = Path(sys.executable).parent / "mlflow-fun"
KILLS = 12
JOB_LINE = " mlflow_fun."  # the logger names of the job's own lines


def _build_command(data_dir: Path, url: str, *ids: str, full: bool = True) -> list[str]:
    return [
        str(SCRIPT), "build", "--data_dir", str(data_dir), "--tracking_uri", url,
        "--experiment_ids", ",".join(ids), "--parallelism", "1",
        *(["--full-refresh"] if full else []),
    ]  # fmt: skip


def _debug(command: list[str]) -> list[str]:
    """``command`` (an `mlflow-fun` command line) logging at DEBUG: the kill points."""
    return [*command[:1], "--log-level", "DEBUG", *command[1:]]


def _job_lines(stderr: str) -> int:
    """How many of the job's own log lines (``--log-level DEBUG``) ``stderr`` holds."""
    return sum(JOB_LINE in line for line in stderr.splitlines())


def _kill_at(debug: list[str], line: int, delay: float) -> str:
    """Run ``debug`` (a `_debug` build) and SIGKILL it (Python and its Spark JVM)
    ``delay`` seconds after its ``line``-th log line: "killed", or "finished" when it ended
    first.

    A kill point is an event of the job (a page pulled, a table written, a state saved), not
    a time since start: on a loaded machine a timed kill lands on the JVM's start-up or
    after the end, so the points would be neither spread nor counted."""
    job = subprocess.Popen(
        debug,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert job.stderr is not None
    seen = 0
    for text in job.stderr:
        seen += JOB_LINE in text
        if seen >= line:
            break
    try:
        job.wait(timeout=delay if seen >= line else 600)
        outcome = "finished"
    except subprocess.TimeoutExpired:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait()
        outcome = "killed"
    job.stderr.close()
    return outcome


def _run_ids(spark: Any, table_dir: Path) -> frozenset[str]:
    return frozenset(r.run_id for r in spark.read.format("delta").load(str(table_dir)).collect())


def test_sigkill_at_random_points_loses_nothing(
    spark: Any, seeded: Seeded, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    client = MlflowClient(seeded.url)
    experiments = [client.create_experiment(f"kill-{n}") for n in range(2)]
    old = {
        e: {_run(client, e, 1000 + i, params={"i": str(i)}) for i in range(60)} for e in experiments
    }
    data_dir = tmp_path / "data"
    build = _build_command(data_dir, seeded.url, *experiments)
    first = subprocess.run(build, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    new = {
        e: old[e] | {_run(client, e, 9000 + i, params={"i": "x"}) for i in range(5)}
        for e in experiments
    }
    tables = {e: data_dir / "warehouse" / "mlflow_metrics.db" / f"exp_{e}" for e in experiments}

    debug = _debug(build)
    full = subprocess.run(debug, capture_output=True, text=True, timeout=600)
    assert full.returncode == 0, full.stderr
    lines = _job_lines(full.stderr)
    for e in experiments:  # the refreshed version; kills below must leave old or new
        assert _run_ids(spark, tables[e]) == new[e]

    rng = random.Random(20261129)
    outcomes: list[str] = []
    while outcomes.count("killed") < KILLS and len(outcomes) < 2 * KILLS:
        outcomes.append(_kill_at(debug, rng.randint(1, lines), rng.uniform(0.0, 0.5)))
        for e in experiments:
            assert _run_ids(spark, tables[e]) in (frozenset(old[e]), frozenset(new[e]))
    final = subprocess.run(build, capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr
    for e in experiments:
        assert _run_ids(spark, tables[e]) == new[e]
    with capsys.disabled():
        print(f"\nkill test: {outcomes.count('killed')} kills, "
              f"{outcomes.count('finished')} runs finished first")  # fmt: skip
    assert outcomes.count("killed") == KILLS


INCREMENTAL_ROUNDS = 4


def test_incremental_killed_at_any_point_catches_up(
    spark: Any, seeded: Seeded, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from chispa import assert_df_equality

    client = MlflowClient(seeded.url)
    experiment_id = client.create_experiment("kill-incremental")
    runs = [_run(client, experiment_id, 1000 + i, params={"i": str(i)}) for i in range(40)]
    running = _run(client, experiment_id, 2000, metrics={"m": 0.0}, finish=False)
    data_dir = tmp_path / "data"
    build = _build_command(data_dir, seeded.url, experiment_id, full=False)
    database = data_dir / "warehouse" / "mlflow_metrics.db"
    first = subprocess.run(build, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    client.log_metric(running, "m", 0.5, step=0)  # a change: a refresh's events, counted
    debug = _debug(build)
    measured = subprocess.run(debug, capture_output=True, text=True, timeout=600)
    assert measured.returncode == 0, measured.stderr
    lines = _job_lines(measured.stderr)

    rng = random.Random(5)
    outcomes = []
    for round_ in range(INCREMENTAL_ROUNDS):
        _run(client, experiment_id, 3000 + round_, params={"i": str(100 + round_)})
        client.log_metric(running, "m", float(round_ + 1), step=round_ + 1)
        if round_ == INCREMENTAL_ROUNDS // 2:
            client.delete_run(runs[0])
        outcomes.append(_kill_at(debug, rng.randint(1, lines), rng.uniform(0.0, 0.5)))
        for table in (f"exp_{experiment_id}", "runs", "mlflow_state"):  # readable
            spark.read.format("delta").load(str(database / table)).collect()

    final = subprocess.run(build, capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr
    reference_dir = tmp_path / "reference"
    reference = subprocess.run(
        _build_command(reference_dir, seeded.url, experiment_id), capture_output=True, text=True
    )
    assert reference.returncode == 0, reference.stderr
    for table in (f"exp_{experiment_id}", "runs"):
        caught_up, rebuilt = (
            spark.read.format("delta")
            .load(str(d / "warehouse" / "mlflow_metrics.db" / table))
            .orderBy("run_id")
            for d in (data_dir, reference_dir)
        )
        assert_df_equality(caught_up, rebuilt, allow_nan_equality=True)
    assert caught_up.count() == 40 + INCREMENTAL_ROUNDS  # one deleted, one running added
    with capsys.disabled():
        print(f"\nincremental kill test: {outcomes.count('killed')} kills, "
              f"{outcomes.count('finished')} runs finished first")  # fmt: skip
    assert outcomes.count("killed") >= INCREMENTAL_ROUNDS // 2


def test_sigterm_stops_between_experiments(seeded: Seeded, tmp_path: Path) -> None:
    client = MlflowClient(seeded.url)
    experiments = [client.create_experiment(f"term-{n}") for n in range(4)]
    for e in experiments:
        for i in range(30):
            _run(client, e, 1000 + i, params={"k": str(i)})
    data_dir = tmp_path / "data"
    job = subprocess.Popen(
        _build_command(data_dir, seeded.url, *experiments),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    first_log = (
        data_dir / "warehouse" / "mlflow_metrics.db" / f"exp_{experiments[0]}" / "_delta_log"
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and job.poll() is None:
        if first_log.is_dir() and any(p.suffix == ".json" for p in first_log.iterdir()):
            job.send_signal(signal.SIGTERM)
            break
        time.sleep(0.05)
    out, err = job.communicate(timeout=300)
    assert job.returncode == 143, err
    assert "mlflow-fun: stopped by SIGTERM: " in err
    written = [
        e for e in experiments if (first_log.parent.parent / f"exp_{e}" / "_delta_log").is_dir()
    ]
    assert experiments[0] in written and len(written) < len(experiments)
    assert written == experiments[: len(written)]


def test_readers_see_a_consistent_snapshot_while_the_job_writes(spark: Any, seeded: Seeded) -> None:
    client = MlflowClient(seeded.url)
    experiment_id = client.create_experiment("readers")
    for i in range(100):
        _run(client, experiment_id, 1000 + i, metrics={"m": float(i)})
    config = JobConfig(database="readers", experiment_ids=(experiment_id,), tracking_uri=seeded.url)
    run_job(config, spark=spark, progress=False)
    snapshots = {(100, sum(range(100)))}
    for i in range(100, 150):
        _run(client, experiment_id, 1000 + i, metrics={"m": float(i)})
    snapshots.add((150, sum(range(150))))

    seen: list[tuple[int, float]] = []
    done = threading.Event()

    def read_loop() -> None:
        while not done.is_set():
            row = spark.sql(
                f"select count(*) as n, sum(_m_m) as s from readers.exp_{experiment_id}"
            ).collect()[0]
            seen.append((row["n"], row["s"]))

    reader = threading.Thread(target=read_loop)
    reader.start()
    try:
        for _ in range(3):
            run_job(config, spark=spark, progress=False)
    finally:
        done.set()
        reader.join()
    assert seen and {(n, int(s)) for n, s in seen} <= snapshots
