"""The one place that builds a SparkSession: Delta, Hive metastore, warehouse, UTC.

With ``data_dir`` set, the session is the project's embedded default: tables under
``<data_dir>/warehouse`` and an embedded Derby metastore in ``<data_dir>/metastore_db``
(one process at a time). Without it, Spark's own settings apply (a cluster's metastore,
``spark.sql.warehouse.dir`` from ``spark-defaults.conf`` or ``--conf``).

Under ``spark-submit`` the Delta jar comes from ``--packages`` (the README shows the
line); in a plain Python process `mlflow_fun.spark_jars` resolves it from Maven Central once.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

# pyspark: the optional [spark] extra, imported inside the functions that use it.
from mlflow_fun.embedded_metastore import follow_moved_data_dir
from mlflow_fun.java_runtime import check_spark_runtime, java_executable
from mlflow_fun.jvm_archive import ArchivePlan, check_mapped, finish_archive, plan_archive
from mlflow_fun.metastore_pool import CLASSPATH_KEY, pooled_driver_conf, unresolved_packages
from mlflow_fun.spark_jars import delta_jar_conf, ivy_home, resolve_before_start

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

logger = logging.getLogger(__name__)

LOG4J_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "log4j2.properties")

BASE_CONF: dict[str, str] = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    "spark.sql.session.timeZone": "UTC",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # Arrow data from Python above 1 MiB becomes an RDD of Arrow batches, not a
    # LocalRelation: a LocalRelation keeps every row in the driver heap and Spark hashes
    # them whenever it plans the query (100k runs in 10 experiments: driver JVM RSS
    # 1,450 -> 1,250 MiB).
    "spark.sql.execution.arrow.localRelationThreshold": str(1024 * 1024),
    # Delta keeps the log and snapshot of up to 10,000 tables in the driver by default: a
    # job over 10,000 experiments filled a 1 GiB heap with them after about 6,000 tables
    # (full GCs back to back, 2 s a table instead of 0.1 s). The job reads each table a
    # few times in a row; a reader rarely needs hundreds at once.
    "spark.databricks.delta.delta.log.cacheSize": "500",
    # An in-process Hive metastore (the embedded Derby one, or one over JDBC) creating a
    # table makes a folder (for a Delta table, a placeholder Spark deletes right after),
    # then by default copies the warehouse's permissions onto it through Hadoop's shell:
    # two more processes forked by the driver for every table registered (a first build
    # of 200 experiments: 40% of each registration). A remote metastore keeps its own.
    "spark.hadoop.hive.warehouse.subdir.inherit.perms": "false",
    # Hive's client makes `<tmp>/<session uuid>_resources` for every session it starts and
    # Spark never closes that session (SPARK-51571): each job, query and endpoint session
    # left an empty folder in /tmp (about 180 a `make test`). One folder per user instead,
    # reused; nothing is downloaded into it unless someone runs `ADD JAR` with a remote URL.
    # Hadoop's configuration expands the JVM's system properties in the value.
    "spark.hadoop.hive.downloaded.resources.dir": (
        "${java.io.tmpdir}/mlflow-fun-${user.name}-hive-resources"
    ),
}

# The driver JVM of a session started from Python (or by `make demo`): the job is a short
# batch on a small heap, so C1 alone compiles enough (C2 took 15 s of CPU in a 70 s job,
# CPU the tracking server needed) and the serial collector needs no concurrent threads
# (the job on 100k runs in 10 experiments: driver JVM CPU 31 -> 17 s, RSS with the Arrow
# setting above 1,500 -> 990 MiB). C1 alone gets a 48 MiB code cache, which a session that
# ran other Spark work first filled (47 of 48 MiB): the sweeper and recompilation took 4 s
# of CPU in the same job; 256 MiB leaves room (17.8 s of JVM CPU again). Under
# spark-submit, pass them with --driver-java-options (docs/cluster.md).
LOCAL_JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -XX:ReservedCodeCacheSize=256m"


# The metastore's JDBC URL: the embedded Derby one unless a conf names another; or the
# address of a metastore service.
METASTORE_URL_KEY = "spark.hadoop.javax.jdo.option.ConnectionURL"
METASTORE_URIS_KEY = "spark.hadoop.hive.metastore.uris"


def embedded_derby(url: str | None) -> bool:
    """True for the embedded Derby metastore's JDBC URL (None: Spark's default, Derby too)."""
    return url is None or url.startswith("jdbc:derby:")


def embedded_conf(data_dir: str) -> dict[str, str]:
    """Settings for the embedded default: warehouse and Derby metastore under ``data_dir``."""
    home = os.path.abspath(data_dir)
    return {
        "spark.sql.warehouse.dir": os.path.join(home, "warehouse"),
        METASTORE_URL_KEY: (
            f"jdbc:derby:;databaseName={os.path.join(home, 'metastore_db')};create=true"
        ),
    }


def build_spark_session(
    *,
    data_dir: str | None = None,
    app_name: str = "mlflow-fun",
    master: str | None = None,
    conf: Mapping[str, str] | None = None,
) -> SparkSession:
    """Return a SparkSession with Delta and Hive support (an existing one is reused).

    Example:
        >>> spark = build_spark_session(data_dir="/tmp/mlflow_fun", master="local[2]")
        >>> spark.sql("show databases").show()

    Args:
        data_dir: Home of the embedded default (warehouse and Derby metastore). None to
            use Spark's own settings.
        app_name: Spark application name.
        master: Spark master; None lets ``spark-submit`` or ``local[*]`` decide.
        conf: More Spark settings; they override the defaults here.
    """
    if not _running_under_spark_submit():
        check_spark_runtime()
    from pyspark.sql import SparkSession

    settings: dict[str, str] = dict(BASE_CONF)
    if data_dir is not None:
        os.makedirs(data_dir, exist_ok=True)
        settings.update(embedded_conf(data_dir))
    settings.update(conf or {})
    archive: ArchivePlan | None = None
    if not _running_under_spark_submit():
        # Without SPARK_HOME, `spark-submit` starts `python3` to find it (through pyenv's
        # shim here: 0.1 CPU-s and 0.24 s of each start); it is the pyspark package.
        os.environ.setdefault("SPARK_HOME", spark_home())
        for key, value in delta_jar_conf().items():
            settings[key] = f"{settings[key]},{value}" if settings.get(key) else value
        if metastore_kind(settings) == "jdbc" and settings.get("spark.jars.packages"):
            # Its driver resolved where this project's Ivy keeps jars (before this
            # session's JVM starts, on a machine that lacks it), and pooled there.
            ivy = settings.setdefault("spark.jars.ivy", ivy_home())
            if missing := unresolved_packages(settings, ivy):
                resolve_before_start(",".join(missing), ivy)
            settings.update(pooled_driver_conf(settings, ivy))
        if "spark.driver.extraJavaOptions" not in settings:
            archive = plan_archive(_archive_key(settings)) if _archivable() else None
            settings["spark.driver.extraJavaOptions"] = " ".join(
                [f"-Dlog4j2.configurationFile={LOG4J_CONFIG}", LOCAL_JVM_OPTIONS]
                + ([archive.java_options] if archive else [])
            )
        # Local Python workers run this interpreter (with this project's packages), not
        # whatever `python3` is first on PATH.
        settings.setdefault("spark.pyspark.python", sys.executable)
        # Delta rebuilds a table's snapshot in 50 tasks by default: on one machine that
        # fixed cost dominated every table write (make bench: 11-13 s against 2.5-3.4 s).
        settings.setdefault("spark.databricks.delta.snapshotPartitions", "2")
        settings.setdefault("spark.sql.shuffle.partitions", "8")
    builder = SparkSession.builder.appName(app_name).enableHiveSupport()
    if master:
        builder = builder.master(master)
    elif not _running_under_spark_submit():
        builder = builder.master("local[*]")
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    if archive is not None:
        _watch_archive(spark, archive)
    if data_dir is not None:
        # Derby writes derby.log under derby.system.home; the metastore starts lazily, so
        # setting it now (also under spark-submit, where the JVM already runs) is in time.
        jvm = spark.sparkContext._jvm
        assert jvm is not None
        jvm.java.lang.System.setProperty("derby.system.home", os.path.abspath(data_dir))
        if METASTORE_URL_KEY not in (conf or {}):
            follow_moved_data_dir(spark, data_dir)  # the embedded metastore: before first use
    spark.sparkContext.setLogLevel(os.environ.get("MLFLOW_FUN_SPARK_LOG_LEVEL", "ERROR"))
    return spark


# Spark's launcher puts these on the driver's classpath (a conf folder first, the others
# after the jars), and the JVM refuses an archive written under another classpath: with
# them out of the key, jobs that alternate a SPARK_CONF_DIR removed and rewrote the one
# archive every time (a 6 s job took 25 s).
CLASSPATH_ENV = ("SPARK_HOME", "SPARK_CONF_DIR", "HADOOP_CONF_DIR", "YARN_CONF_DIR",
                 "SPARK_DIST_CLASSPATH")  # fmt: skip


def spark_home() -> str:
    """``SPARK_HOME``, else the pyspark package (what Spark's scripts find for pip's pyspark)."""
    import pyspark

    return os.environ.get("SPARK_HOME") or os.path.dirname(os.path.abspath(pyspark.__file__))


def spark_conf_dir() -> str:
    """The conf folder Spark's launcher reads and puts first on the driver's classpath:
    ``SPARK_CONF_DIR``, else ``conf`` under `spark_home`."""
    return os.environ.get("SPARK_CONF_DIR") or os.path.join(spark_home(), "conf")


def _archivable() -> bool:
    """False where the driver JVM cannot write a class archive: Java refuses to when a
    folder with files comes before the jars on the classpath ("Cannot have non-empty
    directory in paths", the JVM's exit code 1), as Spark's conf folder does once it holds
    a ``spark-defaults.conf``. Every job would otherwise pay for trying again."""
    try:
        empty = not os.listdir(spark_conf_dir())
    except OSError:
        return True  # no conf folder
    if not empty:
        logger.debug("no jvm class archive: a non-empty conf folder on the classpath")
    return empty


def _archive_key(settings: Mapping[str, str]) -> list[str]:
    """What the driver JVM's class archive depends on: java, Spark's and Delta's jars, the
    launcher's classpath settings, flags, and the kind of metastore.

    The JVM that writes the archive keeps the classes it loaded: an archive written by a
    session on a PostgreSQL metastore lacks Derby's ~950 classes, and each later job on the
    embedded Derby metastore then started 1.2 s slower (18.1 s against 16.9 s for a small
    job on the project's 2-core machine). Each kind gets its own archive.
    """
    import pyspark

    return [
        java_executable() or "java",
        os.path.dirname(os.path.abspath(pyspark.__file__)),
        pyspark.__version__,
        settings.get("spark.jars", settings.get("spark.jars.packages", "")),
        settings.get(CLASSPATH_KEY, ""),  # the endpoint's JVM has its own
        LOCAL_JVM_OPTIONS,
        f"metastore {metastore_kind(settings)}",
        *(f"{name}={os.environ.get(name, '')}" for name in CLASSPATH_ENV),
    ]


def metastore_kind(settings: Mapping[str, str]) -> str:
    """``derby`` (embedded, also Spark's default), ``thrift`` (a metastore service) or
    ``jdbc`` (another database), from a session's settings.

    Example:
        >>> metastore_kind({"spark.hadoop.hive.metastore.uris": "thrift://ms:9083"})
        'thrift'
        >>> metastore_kind({METASTORE_URL_KEY: "jdbc:postgresql://127.0.0.1:5432/hive"})
        'jdbc'
        >>> metastore_kind({})
        'derby'
    """
    if settings.get(METASTORE_URIS_KEY):
        return "thrift"
    return "derby" if embedded_derby(settings.get(METASTORE_URL_KEY)) else "jdbc"


def _watch_archive(spark: SparkSession, archive: ArchivePlan) -> None:
    """Check that the JVM maps the archive; or, if it writes one, keep it when the JVM exits."""
    process = getattr(spark.sparkContext._gateway, "proc", None)
    if process is None:
        return
    if archive.partial is None:
        check_mapped(archive, process.pid)
        return

    def stop_then_keep_archive() -> None:
        spark.stop()
        finish_archive(archive, process)

    _AT_EXIT.append(stop_then_keep_archive)
    atexit.register(stop_then_keep_archive)


# Sessions stopped at exit because their JVM writes its class archive as it exits.
_AT_EXIT: list[Callable[[], None]] = []


def finish_sessions() -> None:
    """Stop now the sessions that would be stopped at exit (their JVM writing its class
    archive): a command that failed calls it before its error line, so that the archive's
    log lines come before that line, not after it."""
    while _AT_EXIT:
        finish = _AT_EXIT.pop()
        atexit.unregister(finish)
        finish()


def _running_under_spark_submit() -> bool:
    from pyspark import SparkContext

    return SparkContext._active_spark_context is not None or "PYSPARK_GATEWAY_PORT" in os.environ
