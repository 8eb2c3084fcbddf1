"""`make bench SIZE=1m`: a million runs on one machine (not in CI; about an hour here).

The store: ``BENCH_MILLION_EXPERIMENTS`` experiments (default 10,000) of
``BENCH_MILLION_RUNS_EACH`` runs (100), plus one of ``BENCH_MILLION_BIG`` runs (200,000):
1,200,000 runs in a sqlite file. `seed_store` writes it once, in a process of its own,
into ``.bench/million/seed`` (not measured; kept for the next run: remove the folder to
seed again); each run of the bench works on a copy, because it changes the store.

Before the first build, ``BENCH_MILLION_CHANGE`` / 2 of the runs (0.05%) are made RUNNING
(no end time): half of them the newest of the big experiment, half the newest of the 10
newest small ones (recent work sits in a few experiments; the rest of the store is old).
A job of the Default experiment alone writes the JVM class archive if this machine has
none (the first local job writes it at its exit, once). Then, each step the command
users run, ``mlflow-fun build``, in a process of its own:

1. **db**: a full build from MLflow's database (``--source db``) into a new database.
   Targets: within 30 minutes; peak RSS of the job's Python process plus its Spark driver
   JVM at most 2 GiB (the 200,000-run experiment included).
2. **incremental**: 0.1% of the runs change through MLflow's own `SqlAlchemyStore` (the
   code an ``mlflow server`` runs): every RUNNING run logs a new ``rmse`` and finishes, and
   as many new runs are logged in the same experiments. Then the job again from the
   database, incrementally. Target: within 2 minutes. Checked: the changed tables hold
   every run and the finished runs their new value (read with delta-rs, no JVM).
3. **rest**: a full build from a real ``mlflow server`` on the store (4 workers) into a
   second database: time and peak RSS (no target); each of its tables has the row count
   of the db build's.

Where the time goes, from each job's own log (INFO, with timestamps): the start-up (until
``job starting``: Spark is not up yet, the experiments are listed), the tables (first to
last ``table written``), and after them (the ``runs`` and ``experiments`` tables, the
views, the status rows); the sums of the per-table pull and write seconds; and the log
line before each process's peak RSS.
Results go to stdout and ``.bench/million/results.json``. Run alone::

    .venv/bin/python scripts/bench_million.py
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import descendant_named, group_cpu_seconds, status_kib

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".bench" / "million"
CLI = Path(sys.executable).parent / "mlflow-fun"
GIB = 1024**3
TARGETS = {"db_seconds": 30 * 60, "peak_rss": 2 * GIB, "incremental_seconds": 120}
CHANGED_METRIC = "rmse"
CHANGED_VALUE = 0.123
RECENT_SMALL = 10  # small experiments that get changes
LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (\w+) (\S+) (.*)$")


@dataclass(frozen=True)
class Sizes:
    """The store's shape, from ``BENCH_MILLION_*`` variables."""

    experiments: int
    runs_each: int
    big: int
    change: int

    @classmethod
    def from_env(cls) -> Sizes:
        def number(name: str, default: int) -> int:
            return int(os.environ.get(name, default))

        return cls(
            number("BENCH_MILLION_EXPERIMENTS", 10_000),
            number("BENCH_MILLION_RUNS_EACH", 100),
            number("BENCH_MILLION_BIG", 200_000),
            number("BENCH_MILLION_CHANGE", 1_200),
        )

    @property
    def runs(self) -> int:
        return self.experiments * self.runs_each + self.big


@dataclass
class JobFigures:
    """One job process: its time, peak memory and where the time went."""

    step: str
    seconds: float
    peak_rss: int
    startup: float = 0.0
    tables: float = 0.0
    after_tables: float = 0.0
    tables_written: int = 0
    runs_written: int = 0
    pull_seconds: float = 0.0
    table_seconds: float = 0.0
    modes: dict[str, int] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    peaks: dict[str, int] = field(default_factory=dict)
    peak_after: dict[str, str] = field(default_factory=dict)  # the log line before it

    def line(self) -> str:
        return (
            f"{self.step}: {self.seconds:,.0f} s, peak RSS {self.peak_rss / GIB:.2f} GiB ("
            + ", ".join(f"{p} {m / GIB:.2f}" for p, m in sorted(self.peaks.items()))
            + "); "
            + "".join(f"{p}'s peak after: {m}; " for p, m in sorted(self.peak_after.items()))
            + f"start-up {self.startup:,.1f} s, tables {self.tables:,.1f} s "
            f"({self.tables_written:,} tables, {self.runs_written:,} runs; modes {self.modes}; "
            f"per-table pull+flatten {self.pull_seconds:,.0f} s and pull+write "
            f"{self.table_seconds:,.0f} s summed over 2 threads), after the tables "
            f"{self.after_tables:,.1f} s; CPU "
            + ", ".join(f"{p} {c:,.0f} s" for p, c in sorted(self.cpu.items()) if c >= 1)
        )


class DriverPeak:
    """The peak RSS of a job's process and of its Spark JVM, and the CPU time of both.

    Every ``interval`` seconds the ``VmHWM`` of each (its own high-water mark) and the CPU
    seconds of the job's process group (it runs in a session of its own) are read; the
    peak sums the two highest marks, never below the true peak. Not counted: the helpers
    the JVM forks (chmod, ls), which until they exec share and count its memory.
    """

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.pid = pid
        self.jvm: int | None = None
        self.peaks = {"python": 0, "java": 0}
        self.rises: list[tuple[float, str, int]] = []  # (time.time, program, new mark)
        self.cpu: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(interval,), daemon=True)
        self._thread.start()

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return sum(self.peaks.values())

    def _loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            if not self.jvm or not os.path.exists(f"/proc/{self.jvm}"):  # spark-submit's
                self.jvm = descendant_named(self.pid, "java")  # launcher is a java too
            for program, pid in (("python", self.pid), ("java", self.jvm)):
                mark = status_kib(pid, "VmHWM") * 1024
                if mark > self.peaks[program]:
                    self.rises.append((time.time(), program, mark))
                self.peaks[program] = max(self.peaks[program], mark)
            seconds = group_cpu_seconds(self.pid)
            for program, pid in (("python", self.pid), ("java", self.jvm)):
                if pid in seconds:
                    self.cpu[program] = seconds[pid]


def seed(sizes: Sizes) -> Path:
    """The seeded store's folder, seeding it (in a process of its own) if missing."""
    folder = WORK / "seed"
    marker = folder / "sizes.json"
    wanted = json.dumps(asdict(sizes) | {"change": 0})
    if marker.exists() and marker.read_text() == wanted:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    started = time.monotonic()
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "seed_store.py"),
            "--root",
            str(folder),
            "--runs",
            str(sizes.runs),
            "--experiments",
            str(sizes.experiments + 1),
            "--best-runs",
            str(sizes.big),
            "--no-verify",
        ],
        check=True,
    )
    marker.write_text(wanted)
    print(f"seeded {sizes.runs:,} runs in {time.monotonic() - started:,.0f} s (not measured)")
    return folder


def make_running(db_path: Path, sizes: Sizes) -> dict[str, list[str]]:
    """Make the newest runs of the big and of the newest small experiments RUNNING.

    Returns experiment id -> its RUNNING runs (``sizes.change / 2`` in all).
    """
    half = sizes.change // 2
    with sqlite3.connect(db_path) as conn:
        ids = [r[0] for r in conn.execute("select experiment_id from experiments order by 1")]
        big = ids[1]  # 0 is MLflow's Default experiment, then bench-best
        plan = {str(big): half // 2} | {
            str(e): (half - half // 2) // RECENT_SMALL for e in ids[-RECENT_SMALL:]
        }
        running: dict[str, list[str]] = {}
        for experiment_id, count in plan.items():
            running[experiment_id] = [
                r[0]
                for r in conn.execute(
                    "select run_uuid from runs where experiment_id = ? "
                    "order by start_time desc limit ?",
                    (int(experiment_id), count),
                )
            ]
        conn.executemany(
            "update runs set status = 'RUNNING', end_time = null where run_uuid = ?",
            [(r,) for runs in running.values() for r in runs],
        )
    return running


def apply_changes(
    db_url: str, artifacts: Path, running: dict[str, list[str]]
) -> dict[str, list[str]]:
    """Finish every RUNNING run with a new metric value; log as many new runs beside
    them, through MLflow's `SqlAlchemyStore`. Returns experiment id -> its new runs."""
    from mlflow.entities import Metric, Param, RunStatus
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(db_url, str(artifacts))
    now = int(time.time() * 1000)
    created: dict[str, list[str]] = {}
    for experiment_id, run_ids in running.items():
        for index, run_id in enumerate(run_ids):
            store.log_metric(run_id, Metric(CHANGED_METRIC, CHANGED_VALUE, now, 1))
            store.update_run_info(run_id, RunStatus.FINISHED, now, None)
            new = store.create_run(experiment_id, "bench", now, [], None)
            store.log_batch(
                new.info.run_id,
                metrics=[Metric(CHANGED_METRIC, index / 1000, now, 0)],
                params=[Param("alpha", "0.5")],
                tags=[],
            )
            store.update_run_info(new.info.run_id, RunStatus.FINISHED, now, None)
            created.setdefault(experiment_id, []).append(new.info.run_id)
    store.engine.dispose()
    return created


def run_job(step: str, args: Sequence[str], env: dict[str, str] | None = None) -> JobFigures:
    """``mlflow-fun build`` in a process of its own; its figures, from its log."""
    log = WORK / f"{step}.log"
    started = time.time()
    with open(log, "w", encoding="utf-8") as stderr:
        process = subprocess.Popen(
            [str(CLI), "build", "--log-level", "info", "--no-progress", *args],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # its process group: the job and its JVM
        )
        peak = DriverPeak(process.pid)
        code = process.wait()
    seconds = time.time() - started
    figures = JobFigures(step, seconds, peak.stop(), cpu=peak.cpu, peaks=peak.peaks)
    if code != 0:
        tail = log.read_text(encoding="utf-8").splitlines()[-5:]
        raise RuntimeError(f"{step} job exited {code}: " + " | ".join(tail))
    entries = _log_entries(log)
    _read_log(entries, started, seconds, figures)
    for program, top in peak.peaks.items():  # when it came within 3% of its peak
        at = min((t for t, p, mark in peak.rises if p == program and mark >= 0.97 * top), default=0)
        figures.peak_after[program] = _line_before(entries, at)
    print(figures.line(), flush=True)
    return figures


def _log_entries(log: Path) -> list[tuple[float, str]]:
    """The job log's lines as (time.time of the line, its message), in order."""
    entries = []
    for line in log.read_text(encoding="utf-8").splitlines():
        match = LOG_LINE.match(line)
        if match:
            when = dt.datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            entries.append((when, match[4]))
    return entries


def _read_log(
    entries: Sequence[tuple[float, str]], started: float, seconds: float, figures: JobFigures
) -> None:
    first = last = job_start = None
    for when, message in entries:
        at = when - started
        fields = dict(re.findall(r"(\w+)=(\S+)", message))
        if message.startswith("job starting"):
            job_start = at
        elif message.startswith("pulled "):
            figures.pull_seconds += float(fields["seconds"])
        elif message.startswith("table written "):
            first = at if first is None else first
            last = at
            figures.tables_written += 1
            figures.runs_written += int(fields["runs"])
            figures.table_seconds += float(fields["seconds"])
            figures.modes[fields["mode"]] = figures.modes.get(fields["mode"], 0) + 1
    figures.startup = job_start or 0.0
    if first is not None and last is not None:
        figures.tables = last - figures.startup
        figures.after_tables = seconds - last


def _line_before(entries: Sequence[tuple[float, str]], at: float) -> str:
    """The time and message of the last log line before ``at`` (time.time), cut short."""
    before = [(when, message) for when, message in entries if when <= at]
    if not before:
        return "(none)"
    when, message = before[-1]
    return f"{dt.datetime.fromtimestamp(when):%H:%M:%S} {message[:70]}"


def table_rows(data_dir: Path, database: str, experiment_id: str) -> Any:
    """The table of ``experiment_id`` as a pyarrow Table, read with delta-rs."""
    from deltalake import DeltaTable

    path = data_dir / "warehouse" / f"{database}.db" / f"exp_{experiment_id}"
    return DeltaTable(str(path)).to_pyarrow_table()


def check_incremental(
    data_dir: Path,
    database: str,
    running: dict[str, list[str]],
    created: dict[str, list[str]],
    expected_rows: dict[str, int],
) -> None:
    """Each changed table: every run is in, the finished runs carry the new value."""
    for experiment_id, run_ids in running.items():
        table = table_rows(data_dir, database, experiment_id).to_pylist()
        by_id = {row["run_id"]: row for row in table}
        missing = [r for r in created[experiment_id] if r not in by_id]
        wrong = [
            r
            for r in run_ids
            if by_id[r]["status"] != "FINISHED" or by_id[r][f"_m_{CHANGED_METRIC}"] != CHANGED_VALUE
        ]
        if wrong or missing or len(table) != expected_rows[experiment_id]:
            raise AssertionError(
                f"exp_{experiment_id}: {len(wrong)} finished run(s) without their change, "
                f"{len(missing)} new run(s) missing, {len(table)} rows "
                f"(expected {expected_rows[experiment_id]})"
            )


def main() -> int:
    sizes = Sizes.from_env()
    seeded = seed(sizes)
    store = WORK / "store"
    data_dir = WORK / "data"
    for folder in (store, data_dir):
        shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(seeded, store)
    db_url = f"sqlite:///{store / 'mlflow.db'}"
    running = make_running(store / "mlflow.db", sizes)
    common = ["--data-dir", str(data_dir), "--lock-file", str(WORK / "job.lock")]
    db_args = ["--source", "db", "--connection", db_url, "--tracking-uri", db_url]
    results: dict[str, Any] = {"sizes": asdict(sizes), "runs": sizes.runs, "targets": TARGETS}
    # The first local job on a machine writes the JVM class archive as its JVM exits (once:
    # 11 s, and the JVM's RSS 0.75 -> 1.23 GiB after the 1M build): a job of the Default
    # experiment alone writes it first, so the steps below measure the jobs users schedule.
    warm = ["--data-dir", str(WORK / "warm-up"), "--lock-file", str(WORK / "warm-up.lock")]
    shutil.rmtree(WORK / "warm-up", ignore_errors=True)
    results["warm_up"] = asdict(run_job("warm-up", [*warm, *db_args, "--experiment-ids", "0"]))
    db = run_job("db", [*common, *db_args, "--database", "million_db", "--full-refresh"])
    before = {e: table_rows(data_dir, "million_db", e).num_rows for e in running}
    created = apply_changes(db_url, store / "artifacts", running)
    incremental = run_job("incremental", [*common, *db_args, "--database", "million_db"])
    expected = {e: before[e] + len(created[e]) for e in running}
    check_incremental(data_dir, "million_db", running, created, expected)
    changed = 2 * sum(len(r) for r in running.values())
    results["changed"] = changed
    jobs = [db, incremental]
    if os.environ.get("BENCH_MILLION_REST", "1") != "0":
        jobs.append(rest_build(store, common))
        check_same_counts(data_dir, ["million_db", "million_rest"], running)
    results["jobs"] = [asdict(j) for j in jobs]
    verdicts = [
        ("db full build <= 30 min", db.seconds, db.seconds <= TARGETS["db_seconds"]),
        (
            "peak RSS <= 2 GiB (job + Spark driver JVM, every job)",
            max(j.peak_rss for j in jobs) / GIB,
            max(j.peak_rss for j in jobs) <= TARGETS["peak_rss"],
        ),
        (
            f"incremental at {changed / sizes.runs:.2%} change <= 2 min",
            incremental.seconds,
            incremental.seconds <= TARGETS["incremental_seconds"],
        ),
    ]
    results["verdicts"] = [{"target": t, "value": v, "pass": p} for t, v, p in verdicts]
    for target, value, passed in verdicts:
        print(f"[{'PASS' if passed else 'MISS'}] {target}: {value:,.2f}")
    (WORK / "results.json").write_text(json.dumps(results, indent=2))
    return 0


def rest_build(store: Path, common: list[str]) -> JobFigures:
    """The full build from a real ``mlflow server`` on the store."""
    from mlflow_fun.extract.local_server import LocalMlflowServer

    server = LocalMlflowServer(store, workers=4)
    server.start()
    group = int(server.pid_file.read_text())  # started in a session of its own
    try:
        before = group_cpu_seconds(group)
        figures = run_job(
            "rest",
            [*common, "--tracking-uri", server.url, "--database", "million_rest", "--full-refresh"],
        )
        after = group_cpu_seconds(group)
    finally:
        server.stop()
    figures.cpu["server"] = sum(after.values()) - sum(before.get(p, 0.0) for p in after)
    print(f"  the server's CPU during the job: {figures.cpu['server']:,.0f} s", flush=True)
    return figures


def check_same_counts(data_dir: Path, databases: list[str], running: dict[str, list[str]]) -> None:
    """The tables of the changed experiments hold as many rows in each database."""
    for experiment_id in running:
        counts = {db: table_rows(data_dir, db, experiment_id).num_rows for db in databases}
        if len(set(counts.values())) != 1:
            raise AssertionError(f"exp_{experiment_id}: row counts differ {counts}")


if __name__ == "__main__":
    sys.exit(main())
