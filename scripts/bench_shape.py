"""Cost that follows the runs, for `make bench`: the same runs in few or in many experiments.

Two sqlite stores of ``BENCH_SHAPE_RUNS`` runs (default 20,000, `seed_store`) are served by
real ``mlflow server`` processes: one in ``BENCH_SHAPE_FEW`` experiments (default 10, so
2,000 runs each) and one in ``BENCH_SHAPE_MANY`` (default 200, 100 runs each). In one
process and one Spark session, the job builds every table in full from each store, from
REST and from the database (``--source db``), in ``BENCH_ROUNDS`` interleaved rounds
(default 3, keeping the median): a first build into a new database (every table created
and registered in the metastore, as the first run over a store does), then a rebuild of
the same tables (``full_refresh``). Reported: each time and the ratio many / few per
source and kind of build (target <= 1.5). Run alone::

    BENCH_SHAPE_RUNS=20000 .venv/bin/python scripts/bench_shape.py
"""

from __future__ import annotations

import logging
import os
import shutil
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seed_store import SeedResult, seed_store

from mlflow_fun.config import JobConfig
from mlflow_fun.extract.local_server import LocalMlflowServer
from mlflow_fun.load.job import run_job

ROOT = Path(__file__).resolve().parent.parent
TARGET = 1.5
SOURCES = ("rest", "db")
KINDS = ("first", "rebuild")
LABELS = {"first": "first build", "rebuild": "rebuild"}


@dataclass
class ShapeReport:
    """Full-build times per store shape, source and kind of build, one list of rounds each.

    Kinds: ``first`` (a new database: every table is created and registered) and
    ``rebuild`` (``--full-refresh`` over the tables the first build made).
    """

    runs: int
    few: int
    many: int
    seconds: dict[str, list[float]] = field(default_factory=dict)

    def median(self, shape: str, source: str, kind: str) -> float:
        """The median time of ``shape`` (``few``/``many``) from ``source``."""
        return statistics.median(self.seconds[f"{shape}_{source}_{kind}"])

    def ratio(self, source: str, kind: str) -> float:
        """Time of the many small experiments over the few large ones."""
        return self.median("many", source, kind) / self.median("few", source, kind)

    def lines(self) -> list[str]:
        """The report, with the target (PASS/MISS per source and kind)."""
        lines = []
        for kind in KINDS:
            for source in SOURCES:
                ratio = self.ratio(source, kind)
                verdict = "PASS" if ratio <= TARGET else "MISS"
                lines.append(
                    f"[{verdict}] {LABELS[kind]}, {source}: {self.many} x "
                    f"{self.runs // self.many:,} runs {self.median('many', source, kind):.1f} s "
                    f"vs {self.few} x {self.runs // self.few:,} runs "
                    f"{self.median('few', source, kind):.1f} s: {ratio:.2f}x "
                    f"(target <= {TARGET})"
                )
        return lines

    def as_dict(self) -> dict[str, Any]:
        """For ``results.json``."""
        return {
            "runs": self.runs,
            "few": self.few,
            "many": self.many,
            "seconds": self.seconds,
            "ratios": {
                f"{LABELS[kind]}, {source}": self.ratio(source, kind)
                for kind in KINDS
                for source in SOURCES
            },
        }


def _database(shape: str, source: str, index: int) -> str:
    """A database of its own per build: each build writes new tables, as a first run does."""
    return f"shape_{shape}_{source}_{index}"


def _job(
    spark: Any, seeded: SeedResult, url: str, source: str, database: str, workdir: Path
) -> float:
    """Build every table of ``seeded`` into a new ``database``; the seconds it took."""
    config = JobConfig(
        database=database,
        data_dir=str(workdir / "data"),
        experiment_ids=tuple(e.experiment_id for e in seeded.experiments),
        tracking_uri=url,
        source=source,
        connection=seeded.db_url if source == "db" else None,
        full_refresh=True,
        lock_file=str(workdir / f"{database}.lock"),
    )
    started = time.monotonic()
    result = run_job(config, spark=spark, progress=False)
    seconds = time.monotonic() - started
    if result.failed or sum(r.run_count for r in result.results) != seeded.run_count:
        raise AssertionError(f"the {source} job over {database} did not write every run")
    return seconds


def run(spark: Any, runs: int, few: int, many: int, rounds: int, workdir: Path) -> ShapeReport:
    """Seed both stores, serve them, build each in full per source, ``rounds`` times."""
    databases = ["shape_warmup"] + [
        _database(shape, source, index)
        for index in range(rounds)
        for source in SOURCES
        for shape in ("few", "many")
    ]
    for database in databases:  # a previous run's, before their folders go
        spark.sql(f"DROP DATABASE IF EXISTS {database} CASCADE")
    if workdir.exists():
        shutil.rmtree(workdir)
    stores = {
        shape: seed_store(workdir / shape, runs=runs, experiments=count, best_runs=0)
        for shape, count in (("few", few), ("many", many))
    }
    servers = {shape: LocalMlflowServer(workdir / shape) for shape in stores}
    report = ShapeReport(runs, few, many)
    try:
        for server in servers.values():
            server.start()
        # Not measured: the first Delta writes of a session pay for class loading.
        _job(spark, stores["few"], servers["few"].url, "db", "shape_warmup", workdir)
        for index in range(rounds):
            for source in SOURCES:
                for shape, seeded in stores.items():
                    database = _database(shape, source, index)
                    for kind in KINDS:  # the first build creates the tables; then again
                        seconds = _job(spark, seeded, servers[shape].url, source, database, workdir)
                        report.seconds.setdefault(f"{shape}_{source}_{kind}", []).append(seconds)
                        print(
                            f"    round {index + 1}: {shape} ({len(seeded.experiments)} "
                            f"experiments), {source}, {LABELS[kind]}: {seconds:.1f} s",
                            flush=True,
                        )
    finally:
        for server in servers.values():
            server.stop()
    return report


def main() -> int:
    logging.basicConfig(level=os.environ.get("BENCH_LOG_LEVEL", "WARNING"))
    from mlflow_fun.session import build_spark_session

    runs = int(os.environ.get("BENCH_SHAPE_RUNS", "20000"))
    few = int(os.environ.get("BENCH_SHAPE_FEW", "10"))
    many = int(os.environ.get("BENCH_SHAPE_MANY", "200"))
    rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
    workdir = ROOT / ".bench" / "shape"
    spark = build_spark_session(data_dir=str(workdir.parent / "spark-shape"), master="local[2]")
    report = run(spark, runs, few, many, rounds, workdir)
    print("\n".join(report.lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
