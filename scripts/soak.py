"""`make soak`: the incremental job back to back while a load generator changes the store.

A real ``mlflow server`` (sqlite store under ``.soak/``) gets ``SOAK_EXPERIMENTS``
experiments of ``SOAK_RUNS`` runs each (default 2 x 400), the job builds them in full, then
runs ``SOAK_ROUNDS`` incremental refreshes (default 200) in one process and one Spark
session, as a schedule would, while a load generator (`LoadGenerator`, MLflow's client,
its own thread) keeps logging: new runs (now and then with a new param key), metric steps
on running runs, finishes, deletes and restores. Every ``SOAK_MAINTAIN_EVERY`` rounds
(default 50) `maintain` compacts and vacuums the tables, as the daily schedule does.

Per round: the refresh's time, runs pulled, the largest file count and Delta log length
(JSON commits) of the experiment tables and ``runs``, and the RSS of this process and of
its Spark driver JVM, and the generator's running runs (at most 20, and at most 20
deleted ones). At the end the generator stops, one more refresh runs, and every
``exp_<id>`` must equal a full refresh into another database and MLflow's ``search_runs``
(every active run, its latest rmse). The targets (issue 18): the last rounds' time within
1.3x of rounds 11-30's, the file count bounded by the maintenance, the RSS flat.

``tests/integration/test_soak.py`` runs a short version (a few rounds) in CI. Results go to
stdout and ``.soak/results.json``; the job's own INFO log, a line ``soak round N`` after each
round, to ``.soak/job.log`` (where a round's time went: pulls, rewrites, table writes).
"""

from __future__ import annotations

import json
import logging
import os
import random
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from mlflow_fun.config import JobConfig
from mlflow_fun.load.job import run_job
from mlflow_fun.load.maintain import MaintenanceOptions, maintain

ROOT = Path(__file__).resolve().parent.parent
SOAK = ROOT / ".soak"
DATABASE = "soak"
FULL_DATABASE = "soak_full"


@dataclass(frozen=True)
class Round:
    """One incremental refresh of the soak."""

    index: int
    seconds: float
    pulled: int
    modes: str
    files: int
    log_length: int
    rss_mb: float
    maintained: bool
    running: int  # the generator's running runs at the round's end


@dataclass
class SoakReport:
    """Every round, the load generator's counts and the final checks."""

    rounds: list[Round] = field(default_factory=list)
    changes: dict[str, int] = field(default_factory=dict)
    equal_to_full: bool = False
    equal_to_mlflow: bool = False
    differences: list[str] = field(default_factory=list)  # what made an equality False

    def window(self, rounds: Sequence[Round], attribute: str) -> float:
        """The median of ``attribute`` over ``rounds``."""
        return float(statistics.median(getattr(r, attribute) for r in rounds))

    def targets(self) -> list[str]:
        """PASS/MISS lines of issue 18's soak targets (needs at least 40 rounds)."""
        if len(self.rounds) < 40:
            return [f"(targets need 40 rounds or more; {len(self.rounds)} ran)"]
        early, late = self.rounds[10:30], self.rounds[-10:]
        time_ratio = self.window(late, "seconds") / self.window(early, "seconds")
        rss_ratio = self.window(late, "rss_mb") / self.window(early, "rss_mb")
        first = next((i for i, r in enumerate(self.rounds) if r.maintained), len(self.rounds))
        before = max(r.files for r in self.rounds[: first + 1])
        most = max(r.files for r in self.rounds)
        return [
            f"[{'PASS' if time_ratio <= 1.3 else 'MISS'}] last 10 rounds' time "
            f"{time_ratio:.2f}x rounds 11-30's (target <= 1.3x)",
            f"[{'PASS' if most <= before else 'MISS'}] files per table at most {most} over the "
            f"soak, {before} before the first maintenance (bounded)",
            f"[{'PASS' if rss_ratio <= 1.2 else 'MISS'}] RSS of the last 10 rounds "
            f"{rss_ratio:.2f}x rounds 11-30's (target <= 1.2x)",
            f"[{'PASS' if self.equal_to_full else 'MISS'}] tables equal a full refresh",
            f"[{'PASS' if self.equal_to_mlflow else 'MISS'}] tables equal MLflow's search_runs",
        ]


class LoadGenerator(threading.Thread):
    """Logs changes through MLflow's client, one every ``pause`` seconds, until stopped."""

    # As many runs finish as start, and as many are restored as deleted. Left to the draw,
    # the running and the deleted runs would be random walks that grow with the square
    # root of the changes (a 147-round soak ended with ~50 running runs, each pulled again
    # every round): the load would grow, not the job's cost. As in a real store, they stay
    # few: at the cap a new run becomes a finish, a delete a restore.
    WEIGHTS = {"new": 20, "step": 40, "finish": 20, "delete": 10, "restore": 10}
    MAX_RUNNING = 20
    MAX_DELETED = 20

    def __init__(self, url: str, experiment_ids: Sequence[str], pause: float, seed: int = 7):
        super().__init__(name="soak-load", daemon=True)
        self.client = MlflowClient(url)
        self.experiment_ids = list(experiment_ids)
        self.pause = pause
        self.random = random.Random(seed)
        self.running: list[str] = []
        self.finished: list[str] = []
        self.deleted: list[str] = []
        self.counts = dict.fromkeys(self.WEIGHTS, 0)
        self.stopped = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stopped.wait(self.pause):
                self.change()
        except BaseException as e:  # reported by the soak, not lost in a thread
            self.error = e

    def change(self) -> None:
        """One change, drawn by `WEIGHTS` (one that cannot be made is a new run)."""
        kinds, weights = zip(*self.WEIGHTS.items(), strict=True)
        kind = self.random.choices(kinds, weights)[0]
        pools = {"step": self.running, "finish": self.running, "delete": self.finished}
        pools["restore"] = self.deleted
        if kind != "new" and not pools[kind]:
            kind = "new"
        if kind == "new" and len(self.running) >= self.MAX_RUNNING:
            kind = "finish"
        if kind == "delete" and len(self.deleted) >= self.MAX_DELETED:
            kind = "restore"
        self.counts[kind] += 1
        if kind == "new":
            self.new_run()
        elif kind == "step":
            run_id = self.random.choice(self.running)
            step = self.counts["step"]
            self.client.log_metric(run_id, "rmse", self.random.random(), step=step)
        elif kind == "finish":
            run_id = self.running.pop(self.random.randrange(len(self.running)))
            self.client.set_terminated(run_id)
            self.finished.append(run_id)
        elif kind == "delete":
            run_id = self.finished.pop(self.random.randrange(len(self.finished)))
            self.client.delete_run(run_id)
            self.deleted.append(run_id)
        else:
            run_id = self.deleted.pop(self.random.randrange(len(self.deleted)))
            self.client.restore_run(run_id)
            self.finished.append(run_id)

    def new_run(self) -> None:
        experiment_id = self.random.choice(self.experiment_ids)
        params = {
            "alpha": str(self.random.randint(1, 9)),
            "l1_ratio": f"{self.random.random():.3f}",
        }
        if self.counts["new"] % 25 == 0:  # now and then a param key no run had
            params[f"p{self.counts['new']}"] = str(self.counts["new"])
        run_id = self.client.create_run(experiment_id).info.run_id
        now = int(time.time() * 1000)
        self.client.log_batch(
            run_id,
            metrics=[Metric("rmse", self.random.random(), now, 0)],
            params=[Param(k, v) for k, v in params.items()],
        )
        self.running.append(run_id)

    def stop(self) -> None:
        self.stopped.set()
        self.join()
        if self.error is not None:
            raise RuntimeError(f"the load generator failed: {self.error!r}") from self.error


def seed(url: str, experiments: int, runs: int, prefix: str) -> list[str]:
    """``experiments`` new experiments of ``runs`` finished runs each; their ids."""
    client = MlflowClient(url)
    ids = [client.create_experiment(f"{prefix}-{i}") for i in range(experiments)]
    rng = random.Random(1)
    values = [(e, rng.randint(1, 9), rng.random(), rng.random()) for e in ids for _ in range(runs)]

    def log(value: tuple[str, int, float, float]) -> None:
        experiment_id, alpha, l1_ratio, rmse = value
        run_id = client.create_run(experiment_id).info.run_id
        now = int(time.time() * 1000)
        client.log_batch(
            run_id,
            metrics=[Metric("rmse", rmse, now, 0)],
            params=[Param("alpha", str(alpha)), Param("l1_ratio", f"{l1_ratio:.3f}")],
        )
        client.set_terminated(run_id)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(log, values))
    return ids


def run(
    spark: Any,
    url: str,
    *,
    rounds: int,
    experiments: int,
    runs: int,
    maintain_every: int,
    pause: float,
    workdir: Path,
    prefix: str = "soak",
    database: str = DATABASE,
    on_round: Any = None,
) -> SoakReport:
    """Seed, build, soak ``rounds`` refreshes under load, check; the report.

    Raises:
        RuntimeError: A refresh failed, or the load generator did.
    """
    ids = seed(url, experiments, runs, prefix)
    config = JobConfig(
        database=database,
        experiment_ids=tuple(ids),
        tracking_uri=url,
        lock_file=str(workdir / "job.lock"),
        incremental_margin_minutes=1,
    )
    _job(spark, config.with_overrides(full_refresh=True))
    report = SoakReport()
    load = LoadGenerator(url, ids, pause)
    load.start()
    try:
        for index in range(1, rounds + 1):
            started = time.monotonic()
            results = _job(spark, config)
            seconds = time.monotonic() - started
            maintained = index % maintain_every == 0
            if maintained:
                maintain(spark, MaintenanceOptions(database, retain_hours=1))
            files, log_length = _files_and_log(spark, database, ids)
            done = Round(
                index,
                seconds,
                sum(r.runs_pulled for r in results),
                ",".join(sorted({r.mode for r in results})),
                files,
                log_length,
                _rss_mb(spark),
                maintained,
                len(load.running),
            )
            report.rounds.append(done)
            if on_round is not None:
                on_round(done)
    finally:
        load.stop()
    report.changes = dict(load.counts)
    _job(spark, config)  # the last changes
    _job(spark, config.with_overrides(database=f"{database}_full", full_refresh=True))
    to_full: list[str] = []
    to_mlflow: list[str] = []
    for e in ids:
        rows = _rows(spark, database, e)  # read once, compared with both
        to_full += _differences(e, "a full refresh", rows, _rows(spark, f"{database}_full", e))
        to_mlflow += _differences(e, "MLflow", _rmse_of(rows), _mlflow_rmse(url, e))
    report.equal_to_full, report.equal_to_mlflow = not to_full, not to_mlflow
    report.differences = to_full + to_mlflow
    return report


def _job(spark: Any, config: JobConfig) -> list[Any]:
    result = run_job(config, spark=spark, progress=False)
    if result.failed:
        raise RuntimeError(f"a refresh failed: {result.failed}")
    return list(result.results)


def _rows(spark: Any, database: str, experiment_id: str) -> dict[str, dict[str, Any]]:
    """run id -> its row of ``exp_<id>`` (column -> value, NaN as a string: NaN != NaN); a
    second row of a run is kept as ``<run id> (again)``."""
    rows: dict[str, dict[str, Any]] = {}
    for row in spark.table(f"{database}.exp_{experiment_id}").collect():
        key = row["run_id"] if row["run_id"] not in rows else f"{row['run_id']} (again)"
        rows[key] = {k: str(v) if v != v else v for k, v in row.asDict().items()}
    return rows


def _rmse_of(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {run_id: {"rmse": row.get("_m_rmse")} for run_id, row in rows.items()}


def _mlflow_rmse(url: str, experiment_id: str) -> dict[str, dict[str, Any]]:
    """Every active run of MLflow's ``search_runs``, with its latest rmse."""
    client = MlflowClient(url)
    expected, token = {}, None
    while True:
        page = client.search_runs([experiment_id], max_results=1000, page_token=token)
        expected.update({r.info.run_id: {"rmse": r.data.metrics.get("rmse")} for r in page})
        token = page.token
        if not token:
            return expected


_ABSENT = object()


def _differences(
    experiment_id: str,
    other: str,
    table: dict[str, dict[str, Any]],
    expected: dict[str, dict[str, Any]],
) -> list[str]:
    """One line per run where the incremental table and ``other`` differ (none: equal)."""
    lines = [
        f"exp_{experiment_id}: run {run_id} only in the table" for run_id in table.keys() - expected
    ]
    lines += [
        f"exp_{experiment_id}: run {run_id} only in {other}" for run_id in expected.keys() - table
    ]
    for run_id in sorted(table.keys() & expected):
        mine, theirs = table[run_id], expected[run_id]
        changed = {  # a column one table has and the other lacks is a difference too
            k: (mine.get(k, "<no column>"), theirs.get(k, "<no column>"))
            for k in mine.keys() | theirs
            if mine.get(k, _ABSENT) != theirs.get(k, _ABSENT)
        }
        if changed:
            lines.append(f"exp_{experiment_id}: run {run_id} (table, {other}): {changed}")
    return lines


def _files_and_log(spark: Any, database: str, experiment_ids: Sequence[str]) -> tuple[int, int]:
    """The largest file count and JSON commit count among ``exp_<id>`` and ``runs``."""
    files, log_length = 0, 0
    for table in [*(f"exp_{e}" for e in experiment_ids), "runs"]:
        detail = spark.sql(f"describe detail {database}.{table}").first()
        files = max(files, int(detail["numFiles"]))
        log_dir = Path(detail["location"].removeprefix("file:")) / "_delta_log"
        log_length = max(log_length, len(list(log_dir.glob("*.json"))))
    return files, log_length


def _rss_mb(spark: Any) -> float:
    """RSS of this process and of the Spark driver JVM, in MiB."""
    jvm = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()
    return sum(_vm_rss_kb(pid) for pid in (os.getpid(), int(jvm))) / 1024


def _vm_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> int:
    from mlflow_fun.extract.local_server import LocalMlflowServer
    from mlflow_fun.session import build_spark_session

    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # a run's link
    rounds = int(os.environ.get("SOAK_ROUNDS", "200"))
    experiments = int(os.environ.get("SOAK_EXPERIMENTS", "2"))
    runs = int(os.environ.get("SOAK_RUNS", "400"))
    maintain_every = int(os.environ.get("SOAK_MAINTAIN_EVERY", "50"))
    pause = float(os.environ.get("SOAK_PAUSE", "0.5"))
    if SOAK.exists():
        import shutil

        shutil.rmtree(SOAK)
    SOAK.mkdir(parents=True)
    spark = build_spark_session(data_dir=str(SOAK / "data"), master="local[2]")
    job_log = logging.FileHandler(SOAK / "job.log")
    job_log.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    for name in ("mlflow_fun", "soak"):
        logging.getLogger(name).addHandler(job_log)
        logging.getLogger(name).setLevel(logging.INFO)
    print(
        f"soak: {rounds} rounds, {experiments} x {runs} runs, a change every {pause} s, "
        f"maintain every {maintain_every} rounds",
        flush=True,
    )
    print("round seconds pulled mode files log_json rss_mb running", flush=True)

    def show(r: Round) -> None:
        mark = " maintained" if r.maintained else ""
        logging.getLogger("soak").info("soak round %d seconds=%.1f", r.index, r.seconds)
        print(
            f"{r.index:5d} {r.seconds:7.1f} {r.pulled:6d} {r.modes} {r.files} {r.log_length} "
            f"{r.rss_mb:.0f} {r.running}{mark}",
            flush=True,
        )

    with LocalMlflowServer(SOAK / "mlflow") as server:
        report = run(
            spark,
            server.url,
            rounds=rounds,
            experiments=experiments,
            runs=runs,
            maintain_every=maintain_every,
            pause=pause,
            workdir=SOAK,
            on_round=show,
        )
    print(f"changes logged: {report.changes}")
    for line in report.targets():
        print(line)
    (SOAK / "results.json").write_text(
        json.dumps({**asdict(report), "targets": report.targets()}, indent=2)
    )
    return 0 if report.equal_to_full and report.equal_to_mlflow else 1


if __name__ == "__main__":
    sys.exit(main())
