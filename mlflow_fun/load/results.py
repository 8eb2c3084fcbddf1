"""What a build did: one result per experiment, the status rows."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlflow_fun import __version__
from mlflow_fun.extract.http import strip_credentials
from mlflow_fun.extract.incremental import FULL, INCREMENTAL
from mlflow_fun.model import Experiment

# pyspark: the optional [spark] extra, imported inside the functions that use it.
if TYPE_CHECKING:
    from pyspark.sql.types import StructType

logger = logging.getLogger(__name__)


def job_version() -> str:
    """The running mlflow-fun version."""
    return __version__


@dataclass(frozen=True)
class ExperimentResult:
    """What the job did for one experiment (one row of the status table)."""

    experiment_id: str
    experiment_name: str
    table_name: str
    run_count: int
    column_count: int
    refreshed_at: dt.datetime
    duration_s: float
    status: str
    error: str | None = None
    mode: str = FULL
    runs_pulled: int = 0


def finished(
    experiment: Experiment,
    table: str,
    mode: str,
    counts: tuple[int, int, int],
    seconds: float,
    error: str | None,
) -> ExperimentResult:
    """The result of one experiment's table: written (``error`` None, logged as ``table
    written``) or failed. ``counts`` are its runs, columns and runs pulled."""
    run_count, column_count, runs_pulled = counts
    if error is None:
        logger.info(
            "table written experiment_id=%s table=%s mode=%s runs=%d pulled=%d columns=%d "
            "seconds=%.2f",
            experiment.experiment_id,
            table,
            mode,
            run_count,
            runs_pulled,
            column_count,
            seconds,
        )
    return ExperimentResult(
        experiment.experiment_id,
        experiment.name,
        table,
        run_count,
        column_count,
        dt.datetime.now(dt.timezone.utc),
        seconds,
        "ok" if error is None else "failed",
        error,
        mode,
        runs_pulled,
    )


@dataclass(frozen=True)
class BuildResult:
    """The outcome of one job run."""

    results: tuple[ExperimentResult, ...]
    seconds: float
    skipped: int = 0

    @property
    def failed(self) -> dict[str, str]:
        """experiment id -> error, for each experiment that failed."""
        return {r.experiment_id: r.error or "" for r in self.results if r.status != "ok"}

    @property
    def run_count(self) -> int:
        """Runs written, over all experiments that succeeded."""
        return sum(r.run_count for r in self.results if r.status == "ok")

    @property
    def runs_pulled(self) -> int:
        """Runs pulled from the source, over all experiments that succeeded."""
        return sum(r.runs_pulled for r in self.results if r.status == "ok")

    def summary(self) -> str:
        """One line: tables, runs, seconds, failures."""
        ok = [r for r in self.results if r.status == "ok"]
        incremental = sum(1 for r in ok if r.mode == INCREMENTAL)
        line = (
            f"{len(ok)} of {len(self.results)} table(s) written "
            f"({incremental} incremental), {self.run_count} run(s), "
            f"{self.runs_pulled} pulled, {self.seconds:.1f} s"
        )
        if self.failed:
            line += f"; failed: {', '.join(sorted(self.failed))}"
        if self.skipped:
            line += f"; stopped before {self.skipped} more"
        return line


def status_schema() -> StructType:
    """Schema of ``<database>.mlflow_status``: one row per experiment per job run."""
    from pyspark.sql import types as T

    return T.StructType(
        [
            T.StructField("experiment_id", T.StringType()),
            T.StructField("experiment_name", T.StringType()),
            T.StructField("table_name", T.StringType()),
            T.StructField("run_count", T.LongType()),
            T.StructField("column_count", T.IntegerType()),
            T.StructField("refreshed_at", T.TimestampType()),
            T.StructField("duration_s", T.DoubleType()),
            T.StructField("tracking_uri", T.StringType()),
            T.StructField("job_version", T.StringType()),
            T.StructField("status", T.StringType()),
            T.StructField("error", T.StringType()),
            T.StructField("refresh_mode", T.StringType()),
            T.StructField("runs_pulled", T.LongType()),
        ]
    )


def status_row(result: ExperimentResult, tracking_uri: str) -> tuple[Any, ...]:
    """``result`` as a row of `status_schema` (credentials stripped from the URI)."""
    return (
        result.experiment_id,
        result.experiment_name,
        result.table_name,
        result.run_count,
        result.column_count,
        result.refreshed_at,
        result.duration_s,
        strip_credentials(tracking_uri),
        job_version(),
        result.status,
        result.error,
        result.mode,
        result.runs_pulled,
    )


def ok_ids(results: Sequence[ExperimentResult]) -> set[str]:
    """The ids of the experiments that succeeded."""
    return {r.experiment_id for r in results if r.status == "ok"}
