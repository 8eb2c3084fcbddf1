"""The one place that builds a SparkSession: Delta, Hive metastore, warehouse, UTC.

With ``data_dir`` set, the session is the project's embedded default: tables under
``<data_dir>/warehouse`` and an embedded Derby metastore in ``<data_dir>/metastore_db``
(one process at a time). Without it, Spark's own settings apply (a cluster's metastore,
``spark.sql.warehouse.dir`` from ``spark-defaults.conf`` or ``--conf``).

Under ``spark-submit`` the Delta jar comes from ``--packages`` (the README shows the
line); in a plain Python process it is resolved from Maven Central at session start.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

logger = logging.getLogger(__name__)

# delta-spark 4.4.1 on PyPI has no 4.4.1 jar on Maven Central; 4.4.0 is the newest jar
# built for Spark 4.2, and the Python package only calls into its JVM classes.
DELTA_PACKAGE = "io.delta:delta-spark_4.2_2.13:4.4.0"

BASE_CONF: dict[str, str] = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    "spark.sql.session.timeZone": "UTC",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
}


def embedded_conf(data_dir: str) -> dict[str, str]:
    """Settings for the embedded default: warehouse and Derby metastore under ``data_dir``."""
    home = os.path.abspath(data_dir)
    return {
        "spark.sql.warehouse.dir": os.path.join(home, "warehouse"),
        "spark.hadoop.javax.jdo.option.ConnectionURL": (
            f"jdbc:derby:;databaseName={os.path.join(home, 'metastore_db')};create=true"
        ),
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={home}",
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
    from pyspark.sql import SparkSession

    settings: dict[str, str] = dict(BASE_CONF)
    if data_dir is not None:
        os.makedirs(data_dir, exist_ok=True)
        settings.update(embedded_conf(data_dir))
    settings.update(conf or {})
    if not _running_under_spark_submit():
        packages = settings.get("spark.jars.packages")
        settings["spark.jars.packages"] = (
            f"{packages},{DELTA_PACKAGE}" if packages else DELTA_PACKAGE
        )
    builder = SparkSession.builder.appName(app_name).enableHiveSupport()
    if master:
        builder = builder.master(master)
    elif not _running_under_spark_submit():
        builder = builder.master("local[*]")
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("MLFLOW_FUN_SPARK_LOG_LEVEL", "ERROR"))
    return spark


def _running_under_spark_submit() -> bool:
    from pyspark import SparkContext

    return SparkContext._active_spark_context is not None or "PYSPARK_GATEWAY_PORT" in os.environ
