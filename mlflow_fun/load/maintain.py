"""Table maintenance for a job that refreshes every few minutes for months.

A refresh every 5 minutes is ~8,600 commits a month to each changed table, each adding
small files. What stays bounded, and how:

- **The Delta log**: a checkpoint every 10 commits (Spark's own; after delta-rs's commits,
  ``log_files.after_commit``) and, at Spark's checkpoints and delta-rs's own (every 100
  commits), log files older than ``delta.logRetentionDuration`` (30 days) are removed:
  bounded by itself.
- **Data files**: ``OPTIMIZE`` compacts each table's small files into few; ``VACUUM``
  then deletes the files no version younger than the retention reads (default 168 hours,
  Delta's own: a query or a time-travel read started within the last week still finds
  its files). Both are Delta commits that readers never see half-done. ``VACUUM ... LITE``
  finds the files to delete in the Delta log instead of listing the table's folder (1.3-2.7 s
  a small table here, 4-6 s with the listing); when the log no longer reaches back to the
  last VACUUM, a full VACUUM runs instead. A table already in one file is not OPTIMIZEd.
- **mlflow_status**: one row per experiment per job run; rows older than ``status_days``
  are deleted, the latest row of each experiment is always kept.

`maintain` takes the job's lock, so it never runs beside a refresh.

Example:
    >>> results = maintain(spark, MaintenanceOptions(database="mlflow_metrics"))
    >>> print("\\n".join(r.line() for r in results))
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlflow_fun.errors import ConfigError
from mlflow_fun.transform.naming import STATUS_TABLE, qualified_table, quote_identifier

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

logger = logging.getLogger(__name__)

# Delta's own default: below it Delta refuses VACUUM unless its safety check is turned off.
DEFAULT_RETAIN_HOURS = 168
# Shorter than any job run or query is asking for broken readers.
MIN_RETAIN_HOURS = 1
DEFAULT_STATUS_DAYS = 90


@dataclass(frozen=True)
class MaintenanceOptions:
    """What `maintain` does.

    Attributes:
        database: The job's database.
        retain_hours: ``VACUUM ... RETAIN``: files unread by every version this young stay.
        status_days: ``mlflow_status`` rows older than this go (the latest per experiment stays).
        optimize: Compact small files first.
    """

    database: str
    retain_hours: float = DEFAULT_RETAIN_HOURS
    status_days: int = DEFAULT_STATUS_DAYS
    optimize: bool = True

    def __post_init__(self) -> None:
        if self.retain_hours < MIN_RETAIN_HOURS:
            raise ConfigError(
                f"retain_hours {self.retain_hours} must be at least {MIN_RETAIN_HOURS}: a "
                "shorter VACUUM deletes files that a query or refresh in flight still reads"
            )
        if self.status_days < 0:
            raise ConfigError(f"status_days {self.status_days} must be 0 or more")


@dataclass(frozen=True)
class TableMaintenance:
    """One table before and after: its files and its log length."""

    table: str
    files_before: int
    files_after: int
    version: int
    seconds: float
    status_rows_deleted: int = 0

    def line(self) -> str:
        """One line for the command's output."""
        deleted = f", {self.status_rows_deleted} old status row(s) deleted" * bool(
            self.status_rows_deleted
        )
        return (
            f"{self.table}: {self.files_before} -> {self.files_after} file(s), "
            f"version {self.version}{deleted} ({self.seconds:.1f} s)"
        )


def maintain(spark: SparkSession, options: MaintenanceOptions) -> list[TableMaintenance]:
    """Compact, vacuum and trim every Delta table of ``options.database``.

    Raises:
        ConfigError: The database does not exist.
    """
    database = options.database
    if not spark.catalog.databaseExists(database):
        raise ConfigError(f"database {database!r} does not exist; run `mlflow-fun build` first")
    if options.retain_hours < DEFAULT_RETAIN_HOURS:
        spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "false")
    if (spark.sparkContext.master or "").startswith("local"):
        # VACUUM lists a table's folders in this many tasks: 10,000 by default, minutes of
        # task overhead on one machine for tables of a few files.
        parallelism = str(max(2, spark.sparkContext.defaultParallelism))
        spark.conf.set("spark.sql.sources.parallelPartitionDiscovery.parallelism", parallelism)
    results = []
    for name in _delta_tables(spark, database):
        started = time.monotonic()
        qualified = qualified_table(database, name)
        before = _files(spark, qualified)
        deleted = _trim_status(spark, qualified, options.status_days) if name == STATUS_TABLE else 0
        if options.optimize and before > 1:
            spark.sql(f"OPTIMIZE {qualified}")
        _vacuum(spark, qualified, options.retain_hours)
        result = TableMaintenance(
            name,
            before,
            _files(spark, qualified),
            _version(spark, qualified),
            time.monotonic() - started,
            deleted,
        )
        logger.info("maintained %s", result.line())
        results.append(result)
    return results


def _vacuum(spark: SparkSession, qualified: str, hours: float) -> None:
    """VACUUM from the Delta log (LITE); a full listing when the log no longer reaches back."""
    try:
        spark.sql(f"VACUUM {qualified} LITE RETAIN {hours} HOURS")
    except Exception as error:  # noqa: BLE001 - Delta's error class is a JVM one
        first_line = str(error).splitlines()[0]
        logger.info("VACUUM LITE of %s not possible (%s); a full VACUUM", qualified, first_line)
        spark.sql(f"VACUUM {qualified} RETAIN {hours} HOURS")


def _delta_tables(spark: SparkSession, database: str) -> Sequence[str]:
    """The database's Delta tables, by name (views and Parquet tables are left alone)."""
    quoted = quote_identifier(database)
    views = {r["viewName"] for r in spark.sql(f"SHOW VIEWS IN {quoted}").collect()}
    rows = spark.sql(f"SHOW TABLES IN {quoted}").collect()
    names = sorted(r["tableName"] for r in rows if not r["isTemporary"])
    names = [name for name in names if name not in views]
    delta = []
    for name in names:
        detail = spark.sql(f"DESCRIBE DETAIL {qualified_table(database, name)}").collect()
        if detail and detail[0]["format"] == "delta":
            delta.append(name)
    return delta


def _files(spark: SparkSession, qualified: str) -> int:
    return int(spark.sql(f"DESCRIBE DETAIL {qualified}").collect()[0]["numFiles"])


def _version(spark: SparkSession, qualified: str) -> int:
    return int(spark.sql(f"DESCRIBE HISTORY {qualified} LIMIT 1").collect()[0]["version"])


def _trim_status(spark: SparkSession, qualified: str, days: int) -> int:
    """Delete status rows older than ``days``, but each experiment's latest; return how many."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    table = spark.table(qualified)
    latest = table.groupBy("experiment_id").agg(F.max("refreshed_at").alias("latest"))
    old = (
        table.join(latest, "experiment_id")
        .where(F.col("refreshed_at") < F.expr(f"current_timestamp() - INTERVAL {int(days)} DAYS"))
        .where(F.col("refreshed_at") < F.col("latest"))
        .select("experiment_id", "refreshed_at")
        .distinct()
        .cache()
    )
    count = old.count()
    if count:  # a MERGE: Delta's DELETE takes no subquery
        DeltaTable.forName(spark, qualified).alias("t").merge(
            old.alias("o"), "t.experiment_id = o.experiment_id AND t.refreshed_at = o.refreshed_at"
        ).whenMatchedDelete().execute()
    old.unpersist()
    return count
