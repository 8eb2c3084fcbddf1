"""`make bench`: how fast runs get from a real MLflow server into Spark, in one process.

Seeds a sqlite store into ``.bench/mlflow`` (`seed_store`), starts ``mlflow server`` on it
(`LocalMlflowServer`, ``BENCH_SERVER_WORKERS`` uvicorn workers, default 4 as ``mlflow
server`` itself), then measures:

1. the baseline: raw ``runs/search`` pulls with ``requests`` (JSON decoded, nothing more),
   one stream and ``BENCH_STREAMS`` streams (experiments split over threads);
2. the job's extractors alone: ``RestSource.iter_runs`` (1 and N streams over one source,
   as the job shares one) and ``DatabaseSource.iter_runs`` on the sqlite file. The N-stream
   baseline and ``RestSource`` run ``BENCH_ROUNDS`` (3) interleaved rounds each; the round
   with the median time is kept;
3. what users do by hand: ``mlflow.search_runs`` -> pandas -> ``spark.createDataFrame``;
4. ``FastDataframeBuilder`` on the 1,000-run and on the largest experiment; both builders
   over every experiment in rounds interleaved with the raw baseline (the Spark frames
   counted after the clock; ``BENCH_ONLY=builders`` runs that step alone); the job
   (``run_job``) to Delta for every experiment (at ``parallelism`` N and 1 when the job
   has that setting); the same tables from ``DatabaseSource`` (checked equal to the
   REST-built ones); the same runs in 10 and in 200 experiments, built in full from REST
   and from the database (`bench_shape`: its own stores and servers; ``BENCH_ONLY=shape``
   runs that step alone);
5. incremental refresh of a ``BENCH_INCREMENTAL_RUNS``-run experiment (default 100,000)
   after 1% of its runs changed (`bench_incremental`: its own store and server);
6. best run: the server's ``order_by`` search vs ``best_run_from_table`` (the Spark API:
   the catalog's location, a delta-rs read) and, as a what-if outside the targets, the same
   answer as a Spark query of the Delta table (``best_run_of`` over ``spark.table``);
7. side tables: the job over every experiment plain, ``--with-history`` (``metric_history``
   and the ``metric_summary`` view) and ``--with-models --with-registry``
   (``logged_models``, ``model_metrics``, ``model_versions``), each into a database of its
   own (a full build each time): each one's time, its extra time as a share of the plain
   job's, the rows written (checked against the store) and its peak RSS. Not in the
   targets (the driver peak target stays that of the plain job steps);
8. per step, the peak RSS of this process and of the Spark driver JVM, and the CPU time of
   each server process.

The store has ``BENCH_STEPS`` values per metric (default 10, steps 0-9, the metric
history the side-tables step reads), a logged model every ``BENCH_MODELS_EVERY`` runs
(default 10) and 3 registered models of 3 versions. The other steps read only the latest
values (``runs/search``, ``latest_metrics``) and no models, so their figures are those of
a store of 1 step per metric (before the side-tables step, ``loss`` had 3 steps and the
rest 1): the seeding takes longer and ``mlflow.db`` is larger, nothing else changes.
``BENCH_ONLY=side_tables`` seeds and serves the same store but runs only the side-tables
step (no baseline, so no ratios and no targets).

Fair streams: uvicorn keeps a connection on the worker that accepted it, and two
connections opened at once often land on one worker (it accepts every pending connection
when it wakes). A kept-alive stream then stays there, and N streams run at the rate of one
worker or less. The baseline and ``RestSource`` both ask for a new connection after each
page of 1,000 runs or more (``Connection: close``), so a free worker takes the next page;
the server CPU per process of each step shows how evenly the workers shared it. A page
still lands on a busy worker now and then (its event loop accepts while a request runs
in its thread pool), which moves a rate by 5-10% from one pull to the next: hence more
workers than streams, and rounds. Every worker is warmed (it has served a page) before
the first measurement.

Every figure is also given relative to the baseline (raw parallel REST), then the targets
of issue 8 are checked (PASS/MISS). Results go to stdout and ``.bench/results.json``.

Sizes come from the environment: ``BENCH_RUNS`` (default 20000), ``BENCH_EXPERIMENTS``
(10), ``BENCH_STREAMS`` (2), ``BENCH_PAGE_SIZE`` (5000), ``BENCH_REPEATS`` (7, best-run
calls), ``BENCH_ROUNDS`` (3), ``BENCH_SERVER_WORKERS`` (4), ``BENCH_STEPS`` (10),
``BENCH_MODELS_EVERY`` (10), ``BENCH_ONLY`` (empty: every step). ``BENCH_RUNS=100000 make
bench`` is the 100k run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import inspect
import json
import logging
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import requests
from seed_store import SeededExperiment, SeedResult, seed_store, verify_models, verify_run

from mlflow_fun.config import JobConfig
from mlflow_fun.extract.database.source import DatabaseSource
from mlflow_fun.extract.local_server import LocalMlflowServer, process_stats
from mlflow_fun.extract.open import open_source
from mlflow_fun.extract.source import RunSource
from mlflow_fun.transform.naming import qualified_table, table_name

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / ".bench"
METRIC = "rmse"
SNAPSHOT_PARTITIONS = "spark.databricks.delta.snapshotPartitions"
GIB = 1024**3
MIB = 1024**2
LARGE_PAGE = 1_000  # RestSource.iter_runs asks for a new connection after such pages
REGISTERED_MODELS = 3  # registered models of the seeded registry, 3 versions each
ONLY_STEPS = ("side_tables", "shape", "builders")  # what BENCH_ONLY may name
T = TypeVar("T")


class BenchError(Exception):
    """The benchmark cannot run or a check inside it failed."""


@dataclass(frozen=True)
class Settings:
    """The sizes of one benchmark run, read from ``BENCH_*`` variables."""

    runs: int
    experiments: int
    streams: int
    page_size: int
    repeats: int
    rounds: int
    server_workers: int
    steps: int
    models_every: int
    only: str

    @classmethod
    def from_env(cls) -> Settings:
        """Read the settings; raise `BenchError` naming a variable that is not a whole number."""
        return cls(
            runs=_env_int("BENCH_RUNS", 20_000, 1_001),
            experiments=_env_int("BENCH_EXPERIMENTS", 10, 2),
            streams=_env_int("BENCH_STREAMS", 2, 1),
            page_size=_env_int("BENCH_PAGE_SIZE", 5_000, 1),
            repeats=_env_int("BENCH_REPEATS", 7, 1),
            rounds=_env_int("BENCH_ROUNDS", 3, 1),
            server_workers=_env_int("BENCH_SERVER_WORKERS", 4, 1),
            steps=_env_int("BENCH_STEPS", 10, 1),
            models_every=_env_int("BENCH_MODELS_EVERY", 10, 1),
            only=_env_only(),
        )


def _env_int(name: str, default: int, minimum: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        raise BenchError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise BenchError(f"{name}={value} must be at least {minimum}")
    return value


def _env_only() -> str:
    only = os.environ.get("BENCH_ONLY", "").strip()
    if only and only not in ONLY_STEPS:
        raise BenchError(f"BENCH_ONLY={only!r}: empty (every step) or one of {ONLY_STEPS}")
    return only


@dataclass
class Step:
    """One measured step.

    Attributes:
        key: Short id used by the targets and in results.json.
        label: What was measured.
        runs: Runs the step handled (for best-run calls: runs of the experiment).
        seconds: Wall time (for best-run calls: the median call).
        py_peak: Peak RSS of this Python process during the step, bytes.
        jvm_peak: Peak RSS of the Spark driver JVM during the step, bytes (0: not running).
        note: Anything worth knowing about the figure.
        server_cpu: CPU seconds of each busy server process during the step, most first.
    """

    key: str
    label: str
    runs: int
    seconds: float
    py_peak: int
    jvm_peak: int
    note: str = ""
    rate_vs_raw: float = 0.0
    time_vs_raw: float = 0.0
    server_cpu: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Runs per second."""
        return self.runs / self.seconds if self.seconds > 0 else float("inf")

    @property
    def server_split(self) -> str:
        """The server CPU per process, e.g. ``4.1 + 3.9 s server CPU``; empty if none."""
        if not self.server_cpu:
            return ""
        return " + ".join(f"{s:.1f}" for s in self.server_cpu) + " s server CPU"


@dataclass
class Target:
    """One target of the issue and whether this run meets it."""

    name: str
    measured: float
    goal: float
    unit: str
    passed: bool
    note: str = ""


@dataclass
class Report:
    """Everything results.json holds."""

    settings: dict[str, Any]
    environment: dict[str, Any]
    seed: dict[str, Any]
    setup_seconds: dict[str, float] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    checks: dict[str, Any] = field(default_factory=dict)
    incremental: str = ""
    incremental_figures: dict[str, Any] = field(default_factory=dict)
    shape: str = ""
    shape_figures: dict[str, Any] = field(default_factory=dict)
    side_tables: str = ""
    side_table_figures: dict[str, Any] = field(default_factory=dict)


class PeakRss:
    """Peak resident memory of this process and of the Spark driver JVM, per step.

    A thread samples ``VmRSS`` of both every ``interval`` seconds; where the kernel lets
    us reset ``VmHWM`` (``/proc/<pid>/clear_refs``), the exact high-water mark since the
    reset is taken too, so a spike between two samples is not missed. The JVM is the
    ``java`` process among this process's descendants (it appears when Spark starts).
    """

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self._pid = os.getpid()
        self._jvm_pid: int | None = None
        self._lock = threading.Lock()
        self._py = 0
        self._jvm = 0
        self._hwm_reset: set[int] = set()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="peak-rss", daemon=True)
        self._last_search = 0.0

    def start(self) -> None:
        """Start sampling."""
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling."""
        self._stopped.set()
        self._thread.join()

    def reset(self) -> None:
        """Start a new step: forget the peaks seen so far."""
        with self._lock:
            self._find_jvm(force=True)
            self._hwm_reset = {pid for pid in self._pids() if _reset_hwm(pid)}
            self._py = status_kib(self._pid, "VmRSS") * 1024
            self._jvm = status_kib(self._jvm_pid, "VmRSS") * 1024 if self._jvm_pid else 0

    def peaks(self) -> tuple[int, int]:
        """``(python, jvm)`` peak RSS in bytes since the last `reset`."""
        self._sample()
        with self._lock:
            py, jvm = self._py, self._jvm
            if self._pid in self._hwm_reset:
                py = max(py, status_kib(self._pid, "VmHWM") * 1024)
            if self._jvm_pid and self._jvm_pid in self._hwm_reset:
                jvm = max(jvm, status_kib(self._jvm_pid, "VmHWM") * 1024)
        return py, jvm

    @property
    def jvm_pid(self) -> int | None:
        """Pid of the Spark driver JVM, once it runs."""
        return self._jvm_pid

    def _pids(self) -> list[int]:
        return [self._pid] + ([self._jvm_pid] if self._jvm_pid else [])

    def _loop(self) -> None:
        while not self._stopped.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        with self._lock:
            self._find_jvm()
            self._py = max(self._py, status_kib(self._pid, "VmRSS") * 1024)
            if self._jvm_pid:
                self._jvm = max(self._jvm, status_kib(self._jvm_pid, "VmRSS") * 1024)

    def _find_jvm(self, force: bool = False) -> None:
        if self._jvm_pid and Path(f"/proc/{self._jvm_pid}").exists():
            return
        now = time.monotonic()
        if not force and now - self._last_search < 1.0:
            return
        self._last_search = now
        self._jvm_pid = descendant_named(self._pid, "java")


def status_kib(pid: int | None, field_name: str) -> int:
    if pid is None:
        return 0
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return 0


def _reset_hwm(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def descendant_named(root: int, name: str) -> int | None:
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for pid, comm, fields in process_stats():
        parents[pid] = int(fields[1])
        names[pid] = comm
    for pid, comm in names.items():
        if comm != name:
            continue
        ancestor = parents.get(pid)
        while ancestor and ancestor != root:
            ancestor = parents.get(ancestor)
        if ancestor == root:
            return pid
    return None


class Bench:
    """Runs the steps against one seeded store and server and collects a `Report`."""

    def __init__(
        self,
        settings: Settings,
        seeded: SeedResult,
        url: str,
        memory: PeakRss,
        report: Report,
        server_group: int | None = None,
    ) -> None:
        self.settings = settings
        self.seeded = seeded
        self.url = url
        self.server_group = server_group
        self.memory = memory
        self.report = report
        self.experiments = list(seeded.experiments)
        self.ids = [e.experiment_id for e in self.experiments]
        self.total_runs = sum(e.run_count for e in self.experiments)
        self.data_dir = str(BENCH / "spark")
        self.spark: Any = None
        self.raw_rate = 0.0

    # -- measuring -------------------------------------------------------------------

    def measure(
        self, key: str, label: str, runs: int, action: Callable[[], T], note: str = ""
    ) -> tuple[Step, T]:
        """Run ``action`` once as a step; print its line as soon as it is done."""
        step, value = self._timed(key, label, runs, action, note)
        self.report.steps.append(step)
        return step, value

    def _timed(
        self, key: str, label: str, runs: int, action: Callable[[], T], note: str = ""
    ) -> tuple[Step, T]:
        self.memory.reset()
        cpu_before = self.server_cpu()
        started = time.perf_counter()
        value = action()
        seconds = time.perf_counter() - started
        py, jvm = self.memory.peaks()
        step = Step(key, label, runs, seconds, py, jvm, note)
        step.server_cpu = _busy(cpu_before, self.server_cpu())
        split = f"; {step.server_split}" if step.server_cpu else ""
        print(
            f"  {label}: {runs} runs in {seconds:.2f} s ({step.rate:,.0f} runs/s{split})",
            flush=True,
        )
        return step, value

    def measure_rounds(self, steps: Sequence[tuple[str, str, Callable[[], int]]]) -> list[Step]:
        """Run the ``steps`` (key, label, action) in turn, ``rounds`` times; keep the median.

        Interleaving the rounds gives each step the same share of the machine's and the
        server's moods (which worker takes a connection moves a rate by 5-10%); the kept
        step is the round with the median time, its note lists every round.
        """
        rounds: dict[str, list[Step]] = {key: [] for key, _, _ in steps}
        for number in range(1, self.settings.rounds + 1):
            for key, label, action in steps:
                suffix = f" (round {number})" if self.settings.rounds > 1 else ""
                step, _ = self._timed(key, label + suffix, self.total_runs, action)
                step.label = label
                rounds[key].append(step)
        kept = []
        for key, _, _ in steps:
            ordered = sorted(rounds[key], key=lambda s: s.seconds)
            median = ordered[(len(ordered) - 1) // 2]
            if len(ordered) > 1:
                rates = ", ".join(f"{s.rate:,.0f}" for s in rounds[key])
                median.note = f"median of {len(ordered)} interleaved rounds ({rates} runs/s)"
            self.report.steps.append(median)
            kept.append(median)
        return kept

    def server_cpu(self) -> dict[int, float]:
        """CPU seconds so far of each process of the server's process group."""
        return group_cpu_seconds(self.server_group) if self.server_group else {}

    def measure_median(
        self, key: str, label: str, runs: int, action: Callable[[], T], note: str = ""
    ) -> tuple[Step, T]:
        """Warm ``action`` once, then time ``repeats`` calls; the step holds the median."""
        self.memory.reset()
        value = action()
        times = []
        for _ in range(self.settings.repeats):
            started = time.perf_counter()
            value = action()
            times.append(time.perf_counter() - started)
        py, jvm = self.memory.peaks()
        seconds = statistics.median(times)
        detail = f"median of {len(times)} after 1 warm-up (min {min(times) * 1000:.0f} ms)"
        step = Step(key, label, runs, seconds, py, jvm, f"{detail}; {note}" if note else detail)
        self.report.steps.append(step)
        print(f"  {label}: median {seconds * 1000:.1f} ms", flush=True)
        return step, value

    def step(self, key: str) -> Step | None:
        """The step measured under ``key``, if any."""
        return next((s for s in self.report.steps if s.key == key), None)

    # -- the steps -------------------------------------------------------------------

    def run_all(self) -> None:
        """Every step in order (or only ``BENCH_ONLY``'s); Spark starts after the Spark-free
        steps."""
        streams = self.settings.streams
        self.warm_server(self.settings.server_workers)
        if self.settings.only in ("side_tables", "shape"):
            print("spark", flush=True)
            self.start_spark()
            self.side_tables() if self.settings.only == "side_tables" else self.shape()
            return
        if self.settings.only == "builders":
            print("spark", flush=True)
            self.start_spark()
            self.builders_all()
            return
        print("baseline and extractors, 1 stream", flush=True)
        self.measure(
            "raw_rest_1",
            "raw REST runs/search, 1 stream",
            self.total_runs,
            lambda: self.pull_raw(1),
        )
        self.measure(
            "rest_source_1",
            "RestSource.iter_runs, 1 stream",
            self.total_runs,
            lambda: self.pull_sources(lambda: open_source(self.url, page_size=self.page_size), 1),
        )
        self.small_requests()
        if streams > 1:
            print(f"baseline and extractor, {streams} streams", flush=True)
            self.measure_rounds(
                [
                    (
                        f"raw_rest_{streams}",
                        f"raw REST runs/search, {streams} streams",
                        lambda: self.pull_raw(streams),
                    ),
                    (
                        f"rest_source_{streams}",
                        f"RestSource.iter_runs, {streams} streams",
                        lambda: self.pull_sources(
                            lambda: open_source(self.url, page_size=self.page_size), streams
                        ),
                    ),
                ]
            )
        baseline = self.step(f"raw_rest_{streams}") or self.step("raw_rest_1")
        assert baseline is not None
        baseline.note = "; ".join(filter(None, [baseline.note, "the baseline of every ratio"]))
        self.raw_rate = baseline.rate
        self.measure(
            "db_source_1",
            "DatabaseSource.iter_runs (sqlite), 1 stream",
            self.total_runs,
            lambda: self.pull_sources(
                lambda: DatabaseSource(self.seeded.db_url, page_size=self.page_size), 1
            ),
        )
        print("spark", flush=True)
        self.start_spark()
        self.search_runs_to_spark()
        self.fast_builder()
        self.builders_all()
        self.jobs()
        self.shape()
        self.incremental()
        self.best_run()
        self.side_tables()

    def small_requests(self) -> None:
        """Every experiment's ``experiments/get`` on one kept-alive connection: plain
        requests, then `MlflowHttpClient`, which asks for quick acknowledgements
        (`mlflow_fun.extract.quick_ack`) against the multi-worker server's held-back answers."""
        from mlflow_fun.extract.http import MlflowHttpClient

        endpoint = f"{self.url}/api/2.0/mlflow/experiments/get"
        with (
            requests.Session() as session,
            contextlib.closing(MlflowHttpClient(self.url)) as client,
        ):
            plain, _ = self.measure_median(
                "small_requests_plain",
                f"experiments/get x{len(self.ids)}, plain requests",
                len(self.ids),
                lambda: [
                    session.get(endpoint, params={"experiment_id": i}).json() for i in self.ids
                ],
            )
            quick, _ = self.measure_median(
                "small_requests_client",
                f"experiments/get x{len(self.ids)}, MlflowHttpClient",
                len(self.ids),
                lambda: [client.get("experiments/get", {"experiment_id": i}) for i in self.ids],
            )
        quick.note += f"; {plain.seconds / quick.seconds:.1f}x faster than plain requests"

    def best_by_delta(self, experiment_id: str) -> tuple[str, float]:
        """The CLI's answer for ``--source table --data_dir``, in this process."""
        from mlflow_fun.query.answer import answer_query
        from mlflow_fun.query.model import BestQuery, parse_order_by

        query = BestQuery(order_by=parse_order_by(METRIC))
        (row,) = answer_query(
            "table", [experiment_id], query, database="bench_rest", data_dir=self.data_dir
        )
        return row.run_id, float(next(iter(row.values.values())))

    @property
    def page_size(self) -> int:
        return self.settings.page_size

    def warm_server(self, workers: int) -> None:
        """Warm every server worker (imports, database connection); not measured.

        Pulls the smallest experiment ``workers`` times at once, again until ``workers``
        server processes have worked (a worker that accepted no connection stays cold),
        at most 10 rounds.
        """
        smallest = min(self.experiments, key=lambda e: e.run_count)

        def pull(_: int) -> int:
            with requests.Session() as session:
                return _raw_pull(session, self.url, [smallest], self.page_size)

        before = self.server_cpu()
        for _ in range(10):
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="warm") as pool:
                list(pool.map(pull, range(workers)))
            if not before or len(_busy(before, self.server_cpu())) >= workers:
                return
        print(f"  warning: fewer than {workers} server workers took a request", flush=True)

    def pull_raw(self, streams: int) -> int:
        """Pull every experiment with ``streams`` threads; return the runs received."""

        def pull(group: Sequence[SeededExperiment]) -> int:
            with requests.Session() as session:
                return _raw_pull(session, self.url, group, self.page_size)

        return self._in_streams(pull, streams)

    def pull_sources(self, make_source: Callable[[], RunSource], streams: int) -> int:
        """Pull every experiment into RunRecords through one `RunSource` shared by the
        streams, as the job's threads share one."""
        source = make_source()

        def pull(group: Sequence[SeededExperiment]) -> int:
            return sum(1 for e in group for _ in source.iter_runs(e.experiment_id))

        try:
            return self._check_count(self._in_streams(pull, streams))
        finally:
            close = getattr(source, "close", None) or getattr(
                getattr(source, "client", None), "close", None
            )
            if close is not None:
                close()

    def _in_streams(self, pull: Callable[[Sequence[SeededExperiment]], int], streams: int) -> int:
        groups = split_streams(self.experiments, streams)
        if len(groups) == 1:
            return self._check_count(pull(groups[0]))
        with ThreadPoolExecutor(max_workers=len(groups), thread_name_prefix="stream") as pool:
            return self._check_count(sum(pool.map(pull, groups)))

    def _check_count(self, runs: int) -> int:
        if runs != self.total_runs:
            raise BenchError(f"pulled {runs} runs, the store holds {self.total_runs}")
        return runs

    def start_spark(self) -> None:
        """The one shared session: local, Delta, metastore under ``.bench/spark``."""
        from mlflow_fun.session import build_spark_session

        started = time.perf_counter()
        self.spark = build_spark_session(
            data_dir=self.data_dir,
            app_name="mlflow-fun-bench",
            conf={"spark.sql.shuffle.partitions": "2", "spark.ui.enabled": "false"},
        )
        self.spark.range(1).count()
        self.report.setup_seconds["spark_start"] = time.perf_counter() - started
        print(f"  Spark started in {self.report.setup_seconds['spark_start']:.1f} s", flush=True)

    def search_runs_to_spark(self) -> None:
        """What users do by hand: ``mlflow.search_runs`` per experiment, then Spark; from
        the server (against the job from REST) and from the sqlite store itself, through
        MLflow's own `SqlAlchemyStore` (against the job with ``--source db``).

        ``createDataFrame(pdf)`` infers its schema from pandas on purpose: that is the road
        being measured. Its columns are ``metrics.<key>``, ``params.<key>`` (all strings)
        and ``tags.<key>``.
        """
        import mlflow

        for key, uri, where in (
            ("search_runs_pandas_spark", self.url, "the server"),
            ("search_runs_db_pandas_spark", self.seeded.db_url, "the sqlite store"),
        ):
            mlflow.set_tracking_uri(uri)
            self._search_runs_to_spark(key, where)
        mlflow.set_tracking_uri(self.url)

    def _search_runs_to_spark(self, key: str, where: str) -> None:
        import mlflow

        # Not measured, as the job's warm-up: the first search_runs and the first
        # createDataFrame from pandas of a session pay for imports and class loading.
        smallest = min(self.experiments, key=lambda e: e.run_count)
        self.spark.createDataFrame(
            mlflow.search_runs(experiment_ids=[smallest.experiment_id], max_results=10)
        ).count()

        def pull() -> int:
            total = 0
            for experiment in self.experiments:
                pdf = mlflow.search_runs(
                    experiment_ids=[experiment.experiment_id], max_results=experiment.run_count
                )
                total += self.spark.createDataFrame(pdf).count()
            return total

        self.measure(
            key,
            f"mlflow.search_runs ({where}) -> pandas -> spark.createDataFrame",
            self.total_runs,
            lambda: self._check_count(pull()),
            note="MLflow pages by 10000; params stay strings",
        )

    def fast_builder(self) -> None:
        """`FastDataframeBuilder` on the 1,000-run experiment and on the largest one."""
        from mlflow_fun.query.builders import FastDataframeBuilder

        builder = FastDataframeBuilder(
            self.spark, source=open_source(self.url, page_size=self.page_size)
        )
        best = self.seeded.best_experiment
        largest = max(self.experiments, key=lambda e: e.run_count)
        chosen = [("fast_builder_best", best)]
        if largest.run_count > best.run_count:
            chosen.append(("fast_builder_largest", largest))
        for key, experiment in chosen:

            def build(experiment_id: str = experiment.experiment_id) -> int:
                return int(builder.build_dataframe(experiment_id).count())

            _, count = self.measure(
                key,
                f"FastDataframeBuilder, experiment {experiment.name}",
                experiment.run_count,
                build,
            )
            if count != experiment.run_count:
                raise BenchError(f"FastDataframeBuilder gave {count} rows of {experiment.name}")

    def builders_all(self) -> None:
        """Both builders over every experiment (`build_dataframes`), in rounds interleaved
        with the raw parallel baseline, so their ratio is taken against the same moods."""
        from mlflow_fun.query.builders import FastDataframeBuilder, PandasDataframeBuilder

        streams = self.settings.streams
        ids = [e.experiment_id for e in self.experiments]
        built: list[dict[str, Any]] = []  # each round's Spark frames, counted after the rounds

        def fast() -> int:
            builder = FastDataframeBuilder(
                self.spark, self.url, page_size=self.page_size, parallelism=streams
            )
            built.append(builder.build_dataframes(ids))
            return self.total_runs

        def pandas() -> int:
            builder = PandasDataframeBuilder(
                self.url, page_size=self.page_size, parallelism=streams
            )
            return self._check_count(sum(len(df) for df in builder.build_dataframes(ids).values()))

        print(f"builders over every experiment, {streams} streams", flush=True)
        raw, fast_step, pandas_step = self.measure_rounds(
            [
                (
                    f"builders_raw_{streams}",
                    f"raw REST runs/search, {streams} streams",
                    lambda: self.pull_raw(streams),
                ),
                (
                    "fast_builder_all",
                    "FastDataframeBuilder.build_dataframes, every experiment",
                    fast,
                ),
                (
                    "pandas_builder_all",
                    "PandasDataframeBuilder.build_dataframes, every experiment",
                    pandas,
                ),
            ]
        )
        # A frame's rows are in the JVM when `createDataFrame` returns; counting them is a
        # Spark job per frame (~0.1 s), a query of the user's, so it checks each round's
        # frames after the clock and its time is given beside.
        counted = time.perf_counter()
        for frames in built:
            self._check_count(sum(int(df.count()) for df in frames.values()))
        count_seconds = (time.perf_counter() - counted) / max(len(built), 1)
        fast_step.note = f"{fast_step.note}; counting its frames after: {count_seconds:.2f} s"
        for step in (fast_step, pandas_step):
            step.note = f"{step.note}; {step.rate / raw.rate:.2f}x the raw rate of its rounds"

    def jobs(self) -> None:
        """The job to Delta from REST (parallelism N and 1 if it has that), then from the DB."""
        from mlflow_fun.load.builder import TableBuilder
        from mlflow_fun.load.job import run_job

        streams = self.settings.streams
        has_parallelism = "parallelism" in {f.name for f in dataclasses.fields(JobConfig)}
        best = self.seeded.best_experiment
        # Not measured: the first Delta write of a session pays for class loading.
        run_job(self._job_config("bench_warmup", (best.experiment_id,), 1), spark=self.spark)

        # parallelism 0: the job has no such setting (yet); its one variant is the default.
        variants = [(streams, "bench_rest")] if has_parallelism else [(0, "bench_rest")]
        if has_parallelism and streams > 1:
            variants.append((1, "bench_rest_p1"))
        for parallelism, database in variants:
            suffix = f", parallelism={parallelism}" if parallelism else ""
            config = self._job_config(database, tuple(self.ids), parallelism)

            def job(config: JobConfig = config) -> int:
                return self._job_runs(run_job(config, spark=self.spark))

            self.measure(
                f"job_rest_p{parallelism}" if parallelism else "job_rest",
                f"job (run_job) REST -> Delta, {len(self.ids)} tables{suffix}",
                self.total_runs,
                job,
            )

        extra: dict[str, Any] = {}
        if "parallelism" in inspect.signature(TableBuilder).parameters:
            extra["parallelism"] = streams

        def db_job() -> int:
            with DatabaseSource(self.seeded.db_url, page_size=self.page_size) as source:
                builder = TableBuilder(
                    self.spark,
                    "bench_db",
                    self.data_dir,
                    source=source,
                    progress=False,
                    full_refresh=True,
                    **extra,
                )
                result = builder.build(self.ids)
            if result.failed:
                raise BenchError(f"the DatabaseSource job failed: {result.failed}")
            return self._job_runs(result)

        suffix = f", parallelism={extra['parallelism']}" if extra else ""
        self.measure(
            "job_db",
            f"TableBuilder DatabaseSource -> Delta, {len(self.ids)} tables{suffix}",
            self.total_runs,
            db_job,
        )
        started = time.perf_counter()
        # Not measured; a first read of each Delta table otherwise runs a 50-task job.
        with spark_conf(self.spark, SNAPSHOT_PARTITIONS, "1"):
            differences = compare_tables(self.spark, "bench_rest", "bench_db", self.ids)
        self.report.checks["db_table_equals_rest_table"] = not differences
        self.report.checks["db_table_differences"] = differences
        self.report.setup_seconds["table_comparison"] = time.perf_counter() - started
        print(
            "  DatabaseSource tables equal the REST tables: "
            + ("yes" if not differences else "NO: " + "; ".join(differences)),
            flush=True,
        )

    def _job_config(
        self, database: str, experiment_ids: tuple[str, ...], parallelism: int
    ) -> JobConfig:
        values: dict[str, Any] = {
            "database": database,
            "data_dir": self.data_dir,
            "experiment_ids": experiment_ids,
            "tracking_uri": self.url,
            "page_size": self.page_size,
            "full_refresh": True,  # a measured job rebuilds: the data never changes here
        }
        if parallelism:
            values["parallelism"] = parallelism
        return JobConfig(**values)

    def _job_runs(self, result: Any) -> int:
        if result.failed:
            raise BenchError(f"the job failed: {result.failed}")
        return int(result.run_count)

    def incremental(self) -> None:
        """Refresh after 1% of runs changed: `bench_incremental`, its own store and server."""
        import bench_incremental

        runs = _env_int("BENCH_INCREMENTAL_RUNS", 100_000, 1_000)
        print(f"  incremental refresh: {runs:,}-run experiment, 1% changed ...", flush=True)
        self.memory.reset()
        result = bench_incremental.run(self.spark, runs, BENCH / "incremental")
        self.report.incremental = "; ".join(result.lines())
        self.report.incremental_figures = result.as_dict()
        for line in result.lines():
            print(f"    {line}", flush=True)

    def shape(self) -> None:
        """The same runs in few and in many experiments: `bench_shape`, its own stores."""
        import bench_shape

        runs = _env_int("BENCH_SHAPE_RUNS", 20_000, 1_000)
        few = _env_int("BENCH_SHAPE_FEW", 10, 1)
        many = _env_int("BENCH_SHAPE_MANY", 200, 2)
        print(f"  cost per run: {runs:,} runs in {few} and in {many} experiments ...", flush=True)
        self.memory.reset()
        result = bench_shape.run(self.spark, runs, few, many, self.settings.rounds, BENCH / "shape")
        self.report.shape = "; ".join(result.lines())
        self.report.shape_figures = result.as_dict()
        for line in result.lines():
            print(f"    {line}", flush=True)

    def best_run(self) -> None:
        """The server's ``order_by`` search vs the job's table, on the 1,000-run experiment."""
        from mlflow_fun.query.engine import best_run_of
        from mlflow_fun.query.server import best_run_by_server
        from mlflow_fun.query.spark_tables import best_run_from_table

        best = self.seeded.best_experiment
        source = open_source(self.url)
        _, by_server = self.measure_median(
            "best_server",
            f"best run, server order_by (best_run_by_server, RestSource), {best.name}",
            best.run_count,
            lambda: best_run_by_server(source, best.experiment_id, METRIC),
            note="2 REST calls: experiments/get + runs/search",
        )
        _, by_table = self.measure_median(
            "best_table",
            f"best run, best_run_from_table (Spark's catalog, delta-rs read), {best.name}",
            best.run_count,
            lambda: best_run_from_table(self.spark, "bench_rest", best.experiment_id, METRIC),
        )
        table = qualified_table("bench_rest", f"exp_{best.experiment_id}")
        _, by_spark = self.measure_median(
            "best_table_spark_query",
            "what-if: the same best run as a Spark query of the Delta table",
            best.run_count,
            lambda: best_run_of(self.spark.table(table), f"_m_{METRIC}"),
            note="not a target; what best_run_from_table took before it read through delta-rs",
        )
        _, by_delta = self.measure_median(
            "best_delta",
            f"best run, --source table without a JVM (delta-rs + pandas), {best.name}",
            best.run_count,
            lambda: self.best_by_delta(best.experiment_id),
        )
        cli = [
            str(Path(sys.executable).parent / "mlflow-fun"), "best", "--source", "table",
            "--data_dir", self.data_dir, "--database", "bench_rest",
            "--experiment-id", best.experiment_id, "--metric", METRIC,
        ]  # fmt: skip
        _, printed = self.measure_median(
            "best_cli_cold",
            f"mlflow-fun best --source table --data_dir, a new process, {best.name}",
            best.run_count,
            lambda: subprocess.run(cli, capture_output=True, text=True, check=True).stdout,
            note="the whole process: Python start, imports, delta-rs read, pandas query",
        )
        same = by_server == by_table == by_spark == by_delta and printed.strip() == repr(by_server)
        self.report.checks["best_run_server"] = list(by_server)
        self.report.checks["best_run_table"] = list(by_table)
        self.report.checks["best_run_same_answer"] = same
        print(f"  same best run from both: {'yes' if same else 'NO'} {by_server}", flush=True)

    def side_tables(self) -> None:
        """What the job's optional tables add to it: the same experiments three times, each
        into a database of its own (a full build every time), plain, ``--with-history``,
        then ``--with-models --with-registry``.

        Each variant's extra time is given as a share of the plain job's. The rows written
        are counted and checked against the seeded store (the job turns a failed read or
        write of the models or the registry into one warning line, so a missing table would
        otherwise pass for a fast one).
        """
        from mlflow_fun.load.job import run_job

        streams = self.settings.streams
        has_parallelism = "parallelism" in {f.name for f in dataclasses.fields(JobConfig)}
        parallelism = streams if has_parallelism else 0
        suffix = f", parallelism={parallelism}" if parallelism else ""
        everything: dict[str, Any] = {
            "with_history": True,
            "with_models": True,
            "with_registry": True,
        }
        best = self.seeded.best_experiment
        # Not measured: the first Delta write of each kind pays for class loading.
        warmup = self._job_config("bench_side_warmup", (best.experiment_id,), parallelism)
        run_job(dataclasses.replace(warmup, **everything), spark=self.spark)

        variants: tuple[tuple[str, str, dict[str, Any], str], ...] = (
            ("plain", "bench_side_plain", {}, "job"),
            ("history", "bench_side_history", {"with_history": True}, "job --with-history"),
            (
                "models",
                "bench_side_models",
                {"with_models": True, "with_registry": True},
                "job --with-models --with-registry",
            ),
        )
        print(f"side tables: the job over {len(self.ids)} experiments three ways", flush=True)
        measured: dict[str, Step] = {}
        own_seconds: dict[str, float] = {}
        for name, database, options, label in variants:
            config = dataclasses.replace(
                self._job_config(database, tuple(self.ids), parallelism), **options
            )

            def job(config: JobConfig = config) -> int:
                return self._job_runs(run_job(config, spark=self.spark))

            with job_lines() as job_log:
                measured[name], _ = self.measure(
                    f"side_{name}",
                    f"side tables: {label}, {len(self.ids)} tables{suffix}",
                    self.total_runs,
                    job,
                )
            own_seconds[name] = sum(
                float(m.group(1)) for line in job_log.lines if (m := SECONDS.search(line))
            )

        rows = self._side_rows()
        seeded = self.seeded.rows
        expected = {
            "metric_history": seeded.get("metrics", 0),
            "logged_models": seeded.get("logged_models", 0),
            "model_metrics": seeded.get("logged_model_metrics", 0),
            "model_versions": seeded.get("model_versions", 0),
        }
        wrong = [
            f"{table}: {rows[table]} rows, the store holds {count}"
            for table, count in expected.items()
            if rows[table] != count
        ]
        if not rows["metric_summary"]:
            wrong.append("metric_summary: no such view")
        plain = measured["plain"]
        figures: dict[str, Any] = {"plain_seconds": plain.seconds, "rows": rows}
        lines = [
            f"job {plain.seconds:.1f} s ({self.total_runs:,} runs, {self.settings.steps} "
            f"steps per metric; peak RSS {(plain.py_peak + plain.jvm_peak) / MIB:,.0f} MiB)"
        ]
        for name, what in (
            ("history", f"{rows['metric_history']:,} metric_history rows + metric_summary"),
            (
                "models",
                f"{rows['logged_models']:,} logged_models, {rows['model_metrics']:,} "
                f"model_metrics, {rows['model_versions']:,} model_versions",
            ),
        ):
            step = measured[name]
            extra = step.seconds - plain.seconds
            share = extra / plain.seconds
            figures[f"{name}_seconds"] = step.seconds
            figures[f"{name}_extra_seconds"] = extra
            figures[f"{name}_extra_share"] = share
            if own_seconds.get(name):
                # The job times its models and registry loads itself: a figure that the
                # noise of a shared machine does not swamp, unlike a difference of two jobs.
                own = own_seconds[name]
                figures[f"{name}_own_seconds"] = own
                what += f"; {own:.1f} s = {own / plain.seconds:.0%} by the job's own log"
            peak = (step.py_peak + step.jvm_peak) / MIB
            lines.append(
                f"{name}: {step.seconds:.1f} s, {extra:+.1f} s = {share:+.0%} of the job "
                f"({what}; peak RSS {peak:,.0f} MiB)"
            )
            step.note = f"{extra:+.1f} s = {share:+.0%} of the plain job; {what}"
        self.report.checks["side_tables_rows_as_seeded"] = not wrong
        self.report.checks["side_tables_differences"] = wrong
        self.report.side_tables = "; ".join(lines)
        self.report.side_table_figures = figures
        for line in lines:
            print(f"    {line}", flush=True)
        print(
            "  side tables hold the store's rows: "
            + ("yes" if not wrong else "NO: " + "; ".join(wrong)),
            flush=True,
        )

    def _side_rows(self) -> dict[str, int]:
        """Rows of the side tables the job wrote (0: no table); 1 if metric_summary exists."""
        catalog = self.spark.catalog

        def count(database: str, table: str) -> int:
            name = f"{database}.{table}"
            return int(self.spark.table(name).count()) if catalog.tableExists(name) else 0

        with spark_conf(self.spark, SNAPSHOT_PARTITIONS, "1"):
            return {
                "metric_history": count("bench_side_history", "metric_history"),
                "metric_summary": int(catalog.tableExists("bench_side_history.metric_summary")),
                "logged_models": count("bench_side_models", "logged_models"),
                "model_metrics": count("bench_side_models", "model_metrics"),
                "model_versions": count("bench_side_models", "model_versions"),
            }


SECONDS = re.compile(r"\bseconds=([0-9.]+)")


class JobLines(logging.Handler):
    """The job's lines about its models and registry tables (``... written ... seconds=N``,
    or ``... not written``)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if " written " in message:
            self.lines.append(message)


@contextmanager
def job_lines() -> Iterator[JobLines]:
    """Collect `JobLines` of ``mlflow_fun.load.job`` inside the block (they print too)."""
    job_logger = logging.getLogger("mlflow_fun.load.job")
    handler, level = JobLines(), job_logger.level
    job_logger.addHandler(handler)
    job_logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        job_logger.removeHandler(handler)
        job_logger.setLevel(level)


@contextmanager
def spark_conf(spark: Any, key: str, value: str) -> Iterator[None]:
    """Set a runtime Spark setting inside the block; restore the previous value after."""
    previous = spark.conf.get(key, None)
    spark.conf.set(key, value)
    try:
        yield
    finally:
        if previous is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, previous)


def _raw_pull(
    session: requests.Session,
    url: str,
    experiments: Sequence[SeededExperiment],
    page_size: int,
) -> int:
    """``runs/search`` every page of each experiment in turn; return the runs received."""
    endpoint = f"{url}/api/2.0/mlflow/runs/search"
    # As RestSource.iter_runs: a new connection after each big page (see the docstring).
    headers = {"Connection": "close"} if page_size >= LARGE_PAGE else None
    received = 0
    for experiment in experiments:
        body: dict[str, Any] = {
            "experiment_ids": [experiment.experiment_id],
            "max_results": page_size,
        }
        while True:
            response = session.post(endpoint, json=body, headers=headers, timeout=600)
            if response.status_code != 200:
                raise BenchError(f"runs/search answered {response.status_code}: {response.text}")
            page = json.loads(response.content)
            received += len(page.get("runs", ()))
            token = page.get("next_page_token")
            if not token:
                break
            body["page_token"] = token
    return received


def group_cpu_seconds(group: int) -> dict[int, float]:
    """CPU seconds (user + system) so far of each live process of process group ``group``."""
    ticks = os.sysconf("SC_CLK_TCK")
    return {
        pid: (int(fields[11]) + int(fields[12])) / ticks
        for pid, _, fields in process_stats()
        if int(fields[2]) == group  # state ppid pgrp ... utime (12th) stime (13th)
    }


def _busy(before: dict[int, float], after: dict[int, float]) -> list[float]:
    """CPU seconds each process used between two `group_cpu_seconds`, most first; only
    processes that used more than 0.05 s (a worker, not the idle supervisor)."""
    used = [after[pid] - before.get(pid, 0.0) for pid in after]
    return sorted((u for u in used if u > 0.05), reverse=True)


def split_streams(
    experiments: Sequence[SeededExperiment], streams: int
) -> list[list[SeededExperiment]]:
    """Share experiments among ``streams`` groups of about equal run counts (largest first).

    Example: experiments of 1000, 3000 and 3000 runs in 2 streams give [[3000, 1000], [3000]].
    """
    groups: list[list[SeededExperiment]] = [[] for _ in range(min(streams, len(experiments)))]
    loads = [0] * len(groups)
    for experiment in sorted(experiments, key=lambda e: -e.run_count):
        lightest = loads.index(min(loads))
        groups[lightest].append(experiment)
        loads[lightest] += experiment.run_count
    return groups


def compare_tables(spark: Any, left: str, right: str, experiment_ids: Sequence[str]) -> list[str]:
    """Differences between ``left.exp_<id>`` and ``right.exp_<id>``: schema, then rows.

    Rows are compared in pandas, ordered by run id (every value, NaN equal to NaN in the
    same place, as MLflow's NaN metrics need); one Spark read per table.
    """
    differences = []
    for experiment_id in experiment_ids:
        name = table_name(experiment_id)
        a = spark.table(qualified_table(left, name))
        b = spark.table(qualified_table(right, name))
        if a.schema != b.schema:
            differences.append(
                f"{name}: schema {a.schema.simpleString()} != {b.schema.simpleString()}"
            )
            continue
        rows_a = a.toPandas().sort_values("run_uuid", ignore_index=True)
        rows_b = b.toPandas().sort_values("run_uuid", ignore_index=True)
        if len(rows_a) != len(rows_b):
            differences.append(f"{name}: {len(rows_a)} rows != {len(rows_b)} rows")
        elif not rows_a.equals(rows_b):
            columns = [c for c in rows_a.columns if not rows_a[c].equals(rows_b[c])]
            differences.append(f"{name}: values differ in {', '.join(columns)}")
    return differences


def add_ratios(report: Report, raw_rate: float) -> None:
    """Fill each step's ratios to the baseline (raw REST at BENCH_STREAMS streams) of this run
    (none when the baseline was not measured: ``BENCH_ONLY``)."""
    if not raw_rate:
        return
    for step in report.steps:
        baseline_seconds = step.runs / raw_rate
        step.rate_vs_raw = step.rate / raw_rate
        step.time_vs_raw = step.seconds / baseline_seconds


def check_targets(bench: Bench) -> list[Target]:
    """The targets of issue 8, each PASS or MISS."""
    streams = bench.settings.streams
    raw = bench.raw_rate
    targets = []
    job_rest = bench.step(f"job_rest_p{streams}") or bench.step("job_rest")
    job_streams = streams if bench.step(f"job_rest_p{streams}") else 1
    extractor = bench.step(f"rest_source_{job_streams}")
    baseline = bench.step(f"raw_rest_{streams}") or bench.step("raw_rest_1")
    if extractor and baseline:
        ratio = extractor.rate / raw
        targets.append(
            Target(
                "job extraction rate >= 0.9 x raw parallel REST",
                ratio,
                0.9,
                "x raw",
                ratio >= 0.9,
                f"RestSource at the job's {job_streams} stream(s): {extractor.rate:,.0f} runs/s "
                f"({extractor.server_split or 'server CPU not measured'}) vs raw "
                f"{raw:,.0f} runs/s ({baseline.server_split or 'server CPU not measured'})",
            )
        )
    builders_raw = bench.step(f"builders_raw_{streams}")
    for key, name in (
        ("fast_builder_all", "FastDataframeBuilder"),
        ("pandas_builder_all", "PandasDataframeBuilder"),
    ):
        builder = bench.step(key)
        if builder and builders_raw:
            ratio = builder.rate / builders_raw.rate
            targets.append(
                Target(
                    f"{name} over every experiment >= 0.9 x raw parallel REST",
                    ratio,
                    0.9,
                    "x raw",
                    ratio >= 0.9,
                    f"{builder.rate:,.0f} runs/s vs raw {builders_raw.rate:,.0f} runs/s "
                    "(interleaved rounds)",
                )
            )
    search = bench.step("search_runs_pandas_spark")
    if job_rest and search:
        speedup = search.seconds / job_rest.seconds
        targets.append(
            Target(
                "full job to Delta >= 2x faster than search_runs -> pandas -> Spark",
                speedup,
                2.0,
                "x faster",
                speedup >= 2.0,
                f"{job_rest.seconds:.1f} s vs {search.seconds:.1f} s",
            )
        )
    search_db, job_db = bench.step("search_runs_db_pandas_spark"), bench.step("job_db")
    if job_db and search_db:
        speedup = search_db.seconds / job_db.seconds
        targets.append(
            Target(
                "full job --source db >= 2x faster than search_runs on the same store -> "
                "pandas -> Spark",
                speedup,
                2.0,
                "x faster",
                speedup >= 2.0,
                f"{job_db.seconds:.1f} s vs {search_db.seconds:.1f} s (both read the sqlite file)",
            )
        )
    db_source = bench.step("db_source_1")
    if db_source:
        ratio = db_source.rate / raw
        identical = bool(bench.report.checks.get("db_table_equals_rest_table"))
        targets.append(
            Target(
                "direct-DB >= 10x the REST rate, identical table",
                ratio,
                10.0,
                "x raw",
                ratio >= 10.0 and identical,
                f"DatabaseSource {db_source.rate:,.0f} runs/s vs raw REST {raw:,.0f} runs/s; "
                f"table {'identical' if identical else 'DIFFERENT'}",
            )
        )
    job_steps = [s for s in bench.report.steps if s.key.startswith("job_")]
    if job_steps:
        worst = max(job_steps, key=lambda s: s.py_peak + s.jvm_peak)
        peak = (worst.py_peak + worst.jvm_peak) / GIB
        overall = max(s.py_peak + s.jvm_peak for s in bench.report.steps) / GIB
        targets.append(
            Target(
                "driver peak RSS <= 2 GiB (Python + driver JVM, job steps)",
                peak,
                2.0,
                "GiB",
                peak <= 2.0,
                f"{worst.label}: Python {worst.py_peak / MIB:,.0f} MiB + JVM "
                f"{worst.jvm_peak / MIB:,.0f} MiB; over every step of the bench {overall:.2f} GiB",
            )
        )
    server, table = bench.step("best_server"), bench.step("best_table")
    delta, cold = bench.step("best_delta"), bench.step("best_cli_cold")
    same = bool(bench.report.checks.get("best_run_same_answer"))
    for name, step in (
        ("best_run_from_table (Spark API) >= 10x faster than the server's order_by", table),
        ("best from the tables without a JVM >= 10x faster than the server's order_by", delta),
    ):
        if server and step:
            speedup = server.seconds / step.seconds
            targets.append(
                Target(
                    name,
                    speedup,
                    10.0,
                    "x faster",
                    speedup >= 10.0 and same,
                    f"{step.seconds * 1000:.1f} ms vs {server.seconds * 1000:.1f} ms"
                    + ("" if same else "; DIFFERENT answers"),
                )
            )
    ratios = bench.report.shape_figures.get("ratios", {})
    figures = bench.report.shape_figures
    for source, ratio in ratios.items():
        targets.append(
            Target(
                f"full build of many small experiments <= 1.5 x few large ones ({source})",
                ratio,
                1.5,
                "x",
                ratio <= 1.5,
                f"{figures['many']} vs {figures['few']} experiments, {figures['runs']:,} runs "
                "each store, median of interleaved rounds",
            )
        )
    if cold:
        targets.append(
            Target(
                "best --source table --data_dir, cold process <= 1.5 s",
                cold.seconds,
                1.5,
                "s",
                cold.seconds <= 1.5,
                "median of new processes, each starting Python and reading the table",
            )
        )
    return targets


def print_report(report: Report) -> None:
    """The steps table, then the targets."""
    header = (
        f"{'step':<62} {'runs':>7} {'seconds':>8} {'runs/s':>9} {'rate/raw':>8} "
        f"{'time/raw':>8} {'py MiB':>7} {'JVM MiB':>7}"
    )
    print()
    print(header)
    print("-" * len(header))
    for s in report.steps:
        seconds = f"{s.seconds:.3f}" if s.seconds < 1 else f"{s.seconds:.2f}"
        jvm = f"{s.jvm_peak / MIB:,.0f}" if s.jvm_peak else "-"
        # No ratios without a baseline (BENCH_ONLY).
        to_raw = [f"{r:.2f}" if r else "-" for r in (s.rate_vs_raw, s.time_vs_raw)]
        print(
            f"{s.label[:62]:<62} {s.runs:>7} {seconds:>8} {s.rate:>9,.0f} {to_raw[0]:>8} "
            f"{to_raw[1]:>8} {s.py_peak / MIB:>7,.0f} {jvm:>7}"
        )
    print(
        "rate/raw = runs/s / baseline runs/s; time/raw = seconds / seconds the baseline takes "
        "for as many runs. Baseline: raw REST at BENCH_STREAMS streams, this run. Best-run "
        "rows: one call (median), runs = experiment size."
    )
    for s in report.steps:
        details = "; ".join(d for d in (s.note, s.server_split) if d)
        if details:
            print(f"  {s.label}: {details}")
    if report.incremental:
        print(f"incremental refresh at 1% change: {report.incremental}")
    if report.shape:
        print(f"cost per run, few and many experiments: {report.shape}")
    if report.side_tables:
        print(f"side tables: {report.side_tables}")
    print()
    for t in report.targets:
        verdict = "PASS" if t.passed else "MISS"
        print(f"{verdict}  {t.name}: {t.measured:.2f} {t.unit} (goal {t.goal:g}) - {t.note}")


def report_json(report: Report) -> dict[str, Any]:
    """The report as JSON-ready data; each step also carries its runs/s."""
    data = dataclasses.asdict(report)
    for step, item in zip(report.steps, data["steps"], strict=True):
        item["runs_per_second"] = step.rate
    return data


def environment() -> dict[str, Any]:
    """Machine and versions, and how busy the machine was at the start."""
    versions: dict[str, str | None] = {}
    for package in ("mlflow", "pyspark", "delta-spark", "pandas", "SQLAlchemy", "requests"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average_at_start": list(os.getloadavg()),
        "versions": versions,
    }


def main() -> int:
    """Seed, serve, measure, report; the server and Spark are stopped whatever happens."""
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read when mlflow is imported
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    for noisy in ("mlflow", "alembic", "py4j", "SQLQueryContextLogger"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning, module="pyspark")
    try:
        settings = Settings.from_env()
    except BenchError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    server = LocalMlflowServer(BENCH / "mlflow", workers=settings.server_workers)
    server.stop_stale()
    shutil.rmtree(BENCH, ignore_errors=True)
    print(
        f"bench: {settings.runs} runs in {settings.experiments} experiments, "
        f"{settings.streams} streams, page size {settings.page_size}"
        + (f", only {settings.only}" if settings.only else "")
        + f"; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores",
        flush=True,
    )
    seeded = seed_store(
        server.root,
        runs=settings.runs,
        experiments=settings.experiments,
        steps=settings.steps,
        models_every=settings.models_every,
        registered_models=REGISTERED_MODELS,
    )
    for experiment in seeded.experiments:
        if experiment.first_run is not None:
            verify_run(seeded.db_url, experiment.first_run)
    verify_models(seeded.db_url, seeded)
    print(
        f"seeded {seeded.run_count} runs ({settings.steps} steps per metric, "
        f"{len(seeded.models)} logged models, {len(seeded.versions)} model versions) in "
        f"{seeded.seconds:.1f} s ({seeded.db_path})"
    )
    report = Report(
        settings=dataclasses.asdict(settings),
        environment=environment(),
        seed={
            "seconds": seeded.seconds,
            "rows": seeded.rows,
            "experiments": {e.experiment_id: e.run_count for e in seeded.experiments},
        },
    )
    memory = PeakRss()
    memory.start()
    bench: Bench | None = None
    try:
        server_started = time.perf_counter()
        server.start()
        report.setup_seconds["server_start"] = time.perf_counter() - server_started
        print(f"mlflow server {server.url} with {settings.server_workers} worker(s)", flush=True)
        server_group = int(server.pid_file.read_text())  # started in a session of its own
        bench = Bench(settings, seeded, server.url, memory, report, server_group)
        bench.run_all()
    except BenchError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 1
    finally:
        server.stop()
        if bench is not None and bench.spark is not None:
            bench.spark.stop()
        memory.stop()
    add_ratios(report, bench.raw_rate)
    report.targets = check_targets(bench)
    report.setup_seconds["total"] = time.perf_counter() - started
    report.environment["load_average_at_end"] = list(os.getloadavg())
    print_report(report)
    results = BENCH / "results.json"
    results.write_text(json.dumps(report_json(report), indent=2) + "\n")
    print(f"\nwhole bench {report.setup_seconds['total']:.0f} s; results in {results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
