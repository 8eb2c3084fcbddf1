"""The jars a local Spark session needs and where they come from: Delta's package, resolved
once from Maven Central into this project's Ivy cache (`ivy_home`), then passed as files.

`delta_jar_conf` gives a session's settings for them, `spark_submit_jar_args` the same as
``spark-submit`` arguments; `resolve_packages` resolves packages a JVM needs on its class
path before it starts (the SQL endpoint's Delta jars, a pooled metastore's JDBC driver).
"""

from __future__ import annotations

import glob
import logging
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence

# pyspark: the optional [spark] extra, imported inside the function that uses it.
from mlflow_fun.errors import ConfigError
from mlflow_fun.metastore_pool import missing_jars

logger = logging.getLogger(__name__)

# delta-spark 4.4.1 on PyPI has no 4.4.1 jar on Maven Central; 4.4.0 is the newest jar
# built for Spark 4.2, and the Python package only calls into its JVM classes.
DELTA_PACKAGE = "io.delta:delta-spark_4.2_2.13:4.4.0"


def ivy_home() -> str:
    """Where Ivy resolves a local session's packages (Delta's, a metastore's JDBC driver):
    ``MLFLOW_FUN_IVY_HOME`` or a user cache."""
    return os.environ.get("MLFLOW_FUN_IVY_HOME") or os.path.expanduser("~/.cache/mlflow-fun/ivy")


def delta_jar_conf() -> dict[str, str]:
    """Spark settings that put the Delta jars on the classpath.

    The first session resolves them from Maven Central into `ivy_home` (Ivy prints its
    report once); later sessions pass the resolved files as ``spark.jars``, which is
    quiet, faster and works offline. Only the files Spark lacks are passed: Delta's
    dependencies also resolve Hadoop's client, Jackson, Parquet and others that pyspark
    ships in newer versions, which Spark's own class loader finds first anyway; passing
    them cost every local session a copy and a ``chmod`` of 87 MB of jars (1.4 s of a
    session's 8.3 s start on the project's 2-core machine).
    """
    if not missing_jars(ivy_home(), [DELTA_PACKAGE]):
        jars_dir = os.path.join(ivy_home(), "jars")
        resolved = sorted(glob.glob(os.path.join(jars_dir, "*.jar")))
        names = jars_spark_lacks([os.path.basename(j) for j in resolved], _spark_jar_names())
        return {"spark.jars": ",".join(os.path.join(jars_dir, n) for n in names)}
    return {"spark.jars.packages": DELTA_PACKAGE, "spark.jars.ivy": ivy_home()}


_RESOLVE = (
    "import sys\n"
    "from pyspark.sql import SparkSession\n"
    "SparkSession.builder.master('local[1]').appName('mlflow-fun-resolve')"
    ".config('spark.ui.enabled', 'false').config('spark.jars.packages', sys.argv[1])"
    ".config('spark.jars.ivy', sys.argv[2]).getOrCreate().stop()\n"
)


def resolve_packages(packages: str, ivy: str) -> None:
    """Resolve Maven ``packages`` (``group:artifact:version``, comma-separated) from Maven
    Central into ``ivy``, by a short Spark start in a subprocess: a JVM's class path is
    fixed when it starts, so a jar a session needs there (the SQL endpoint's Delta jars, a
    pooled metastore's driver) is resolved before it. Ivy's report goes nowhere.

    Raises:
        ConfigError: Ivy could not resolve them (the last lines it wrote say why).
    """
    logger.warning("resolving %s once into %s (first run on this machine)", packages, ivy)
    with tempfile.TemporaryDirectory(prefix="mlflow-fun-resolve-") as workdir:
        result = subprocess.run(
            [sys.executable, "-c", _RESOLVE, packages, ivy],
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    if result.returncode != 0:
        tail = " | ".join(result.stderr.strip().splitlines()[-3:])
        raise ConfigError(f"resolving {packages} into {ivy} failed: {tail}")


def resolve_before_start(packages: str, ivy: str) -> None:
    """`resolve_packages`, or a warning where it fails: the session then resolves them
    itself (and runs unpooled), or fails with Spark's own account of why."""
    try:
        resolve_packages(packages, ivy)
    except (ConfigError, OSError, subprocess.TimeoutExpired) as e:
        logger.warning("%s; the metastore's connections will not be pooled", e)


# A jar's artifact and version: Ivy's <organisation>_<artifact>-<revision>[-<classifier>]
# once the organisation is cut off, and Spark's own <artifact>-<version>.jar.
_JAR_NAME = re.compile(r"^(?P<artifact>.+?)-\d[^-]*(?:-[^-]+)?\.jar$")


def jars_spark_lacks(ivy_names: Sequence[str], spark_names: Sequence[str]) -> list[str]:
    """The jars of ``ivy_names`` (Ivy's file names) whose artifact is not in ``spark_names``.

    Example:
        >>> jars_spark_lacks(
        ...     ["io.delta_delta-spark_4.2_2.13-4.4.0.jar",
        ...      "org.apache.hadoop_hadoop-client-api-3.4.2.jar"],
        ...     ["hadoop-client-api-3.5.0.jar", "spark-core_2.13-4.2.0.jar"])
        ['io.delta_delta-spark_4.2_2.13-4.4.0.jar']
    """
    shipped = {_artifact(name) for name in spark_names}
    return [n for n in ivy_names if _artifact(n.split("_", 1)[-1]) not in shipped]


def _artifact(jar_name: str) -> str:
    match = _JAR_NAME.match(jar_name)
    return match.group("artifact") if match else jar_name


def _spark_jar_names() -> list[str]:
    """The file names in pyspark's own jars folder (none where it has no such folder)."""
    import pyspark

    folder = os.path.join(os.path.dirname(os.path.abspath(pyspark.__file__)), "jars")
    return os.listdir(folder) if os.path.isdir(folder) else []


def spark_submit_jar_args() -> list[str]:
    """The ``spark-submit`` arguments that add Delta, as `delta_jar_conf` does."""
    conf = delta_jar_conf()
    if "spark.jars" in conf:
        return ["--jars", conf["spark.jars"]]
    return ["--packages", DELTA_PACKAGE, "--conf", f"spark.jars.ivy={conf['spark.jars.ivy']}"]
