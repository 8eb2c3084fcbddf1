"""A SQL endpoint for BI tools: Spark's Thrift JDBC/ODBC server (HiveServer2 protocol).

`start_sql_endpoint` starts Spark's ``HiveThriftServer2`` inside this process, on a
SparkSession built like the job's (Delta, Hive metastore, same ``data_dir`` or ``--conf``),
so Beeline, DBeaver, Tableau, Power BI or any Hive JDBC / Spark ODBC client can query the
``exp_<id>`` tables, ``mlflow_status`` and the analyst views::

    jdbc:hive2://127.0.0.1:10000/mlflow_metrics

Two metastores:

* the embedded default (``--data_dir``): a Derby metastore that one process at a time can
  open, so the endpoint runs while no job does (stop it, build, start it again);
* a shared metastore, e.g. PostgreSQL (``--conf conf/metastore-postgres.yaml``): the job
  refreshes tables while the endpoint serves; a reader sees a Delta table's old or new
  version, never a partial one.

The endpoint has no authentication of its own and binds to 127.0.0.1 unless told
otherwise. Two things Spark does not do by itself are handled here: each JDBC session
loads the Delta catalog through the JVM's system class loader, so the Delta jars go on
``spark.driver.extraClassPath`` (`delta_driver_classpath`); and ``${env.NAME}`` references
in ``spark_conf`` (how the PostgreSQL password is given) are checked before Spark starts
(`check_env_references`); Hadoop expands them when the metastore connects.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

from mlflow_fun.config import check_env_references
from mlflow_fun.errors import ConfigError, MlflowFunError
from mlflow_fun.metastore_pool import CLASSPATH_KEY
from mlflow_fun.serve.checks import (
    check_database,
    check_hive_env,
    check_port_free,
    check_session,
    wait_listening,
)
from mlflow_fun.serve.settings import HOST_KEY, PORT_KEY, START_TIMEOUT, EndpointConfig
from mlflow_fun.session import build_spark_session
from mlflow_fun.spark_jars import DELTA_PACKAGE, delta_jar_conf, ivy_home, resolve_packages

# py4j, pyspark: the optional [spark] extras, imported inside the functions that use them.
if TYPE_CHECKING:
    from pyspark.sql import SparkSession

logger = logging.getLogger(__name__)


class SqlEndpoint:
    """A running Thrift JDBC/ODBC server in this process; `stop` it when done.

    Example:
        >>> with start_sql_endpoint(EndpointConfig(data_dir=".demo/data")) as endpoint:
        ...     print(endpoint.jdbc_url)
        jdbc:hive2://127.0.0.1:10000/mlflow_metrics
    """

    def __init__(
        self, spark: SparkSession, server: Any, config: EndpointConfig, owns_spark: bool
    ) -> None:
        self.spark = spark
        self.config = config
        self._server = server
        self._owns_spark = owns_spark
        self._stopped = False

    @property
    def jdbc_url(self) -> str:
        """The JDBC URL clients connect to."""
        return self.config.jdbc_url

    def is_running(self) -> bool:
        """True while the server and its Spark JVM are up."""
        if self._stopped:
            return False
        try:
            return not bool(self.spark.sparkContext._jsc.sc().isStopped())
        except Exception:  # the JVM is gone: py4j raises connection errors of several kinds
            return False

    def stop(self) -> None:
        """Stop the server, then Spark if the endpoint started it. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        from py4j.protocol import Py4JError

        try:
            self._server.stop()
            if self._owns_spark:
                self.spark.stop()
        except (Py4JError, ConnectionError) as e:
            # A SIGTERM sent to the whole process group also reached the JVM, whose
            # shutdown hooks already stopped the server and Spark.
            logger.info("sql endpoint JVM already gone error=%s", type(e).__name__)
        logger.info("sql endpoint stopped url=%s", self.jdbc_url)

    def __enter__(self) -> SqlEndpoint:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def serve_until_stopped(config: EndpointConfig, on_ready: Callable[[str], None]) -> None:
    """Start the endpoint, call ``on_ready(jdbc_url)``, serve until SIGTERM/SIGINT.

    Returns after a clean stop on SIGTERM or SIGINT.

    Raises:
        MlflowFunError: Bad settings, a busy port, or a server that did not start.
    """
    stop_requested = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        logger.info("stop requested signal=%s", signal.Signals(signum).name)
        stop_requested.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with start_sql_endpoint(config) as endpoint:
            # Starting Spark replaced the SIGINT handler with one that raises KeyboardInterrupt.
            for sig in previous:
                signal.signal(sig, request_stop)
            on_ready(endpoint.jdbc_url)
            while not stop_requested.wait(2.0):
                if not endpoint.is_running():
                    if stop_requested.is_set():
                        break
                    raise MlflowFunError(
                        f"the SQL endpoint at {endpoint.jdbc_url} stopped: its Spark JVM exited"
                    )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def start_sql_endpoint(
    config: EndpointConfig, spark: SparkSession | None = None, timeout: float = START_TIMEOUT
) -> SqlEndpoint:
    """Start Spark's Thrift JDBC/ODBC server in this process and wait until it listens.

    Example:
        >>> endpoint = start_sql_endpoint(EndpointConfig(data_dir=".demo/data", port=10001))
        >>> endpoint.jdbc_url
        'jdbc:hive2://127.0.0.1:10001/mlflow_metrics'
        >>> endpoint.stop()

    Args:
        config: Host, port, database and the job's metastore settings.
        spark: A session built with `endpoint_spark_conf` (host, port and Delta jars are
            fixed when the JVM starts); None builds one, and `SqlEndpoint.stop` stops it.
        timeout: Seconds to wait for the port to accept connections.

    Raises:
        ConfigError: A ``${env.NAME}`` in ``spark_conf`` is unset, the port is busy,
            HIVE_SERVER2_THRIFT_PORT/BIND_HOST disagree, the session lacks the endpoint
            settings, the metastore cannot be opened, or the embedded database is missing.
        MlflowFunError: The server did not listen within ``timeout``.
    """
    check_env_references(config.spark_conf)
    check_hive_env(config)
    if config.host not in ("127.0.0.1", "::1", "localhost"):
        logger.warning(
            "the SQL endpoint listens on %s without authentication: anyone who can reach the "
            "port can read every table",
            config.host,
        )
    check_port_free(config.host, config.port)
    owns_spark = spark is None
    if spark is None:
        from pyspark import SparkContext

        # A session already running in this process is reused, not owned: never stop it.
        owns_spark = SparkContext._active_spark_context is None

        spark = build_spark_session(
            data_dir=config.data_dir,
            app_name="mlflow-fun-serve",
            conf=endpoint_spark_conf(config),
        )
    try:
        check_session(spark, config)
        check_database(spark, config)
        started = time.monotonic()
        jvm = spark.sparkContext._jvm
        assert jvm is not None
        thrift_server = jvm.org.apache.spark.sql.hive.thriftserver.HiveThriftServer2
        server = thrift_server.startWithContext(spark._jsparkSession.sqlContext())
    except BaseException:
        if owns_spark:
            spark.stop()
        raise
    endpoint = SqlEndpoint(spark, server, config, owns_spark)
    try:
        wait_listening(config.host, config.port, timeout)
    except BaseException:
        endpoint.stop()
        raise
    logger.info(
        "sql endpoint ready url=%s host=%s port=%d database=%s seconds=%.1f",
        config.jdbc_url,
        config.host,
        config.port,
        config.database,
        time.monotonic() - started,
    )
    return endpoint


def endpoint_spark_conf(config: EndpointConfig) -> dict[str, str]:
    """``config.spark_conf`` plus the Thrift server's host and port and the Delta class path.

    Example:
        >>> endpoint_spark_conf(EndpointConfig(port=10001))["spark.hadoop.hive.server2.thrift.port"]
        '10001'
    """
    conf = dict(config.spark_conf)
    conf[PORT_KEY] = str(config.port)
    conf[HOST_KEY] = config.host
    classpath = delta_driver_classpath()
    if classpath:
        extra = conf.get(CLASSPATH_KEY)
        conf[CLASSPATH_KEY] = f"{extra}{os.pathsep}{classpath}" if extra else classpath
    return conf


def delta_driver_classpath() -> str:
    """The Delta jars (only ``io.delta_*``), joined for ``spark.driver.extraClassPath``.

    Spark's Thrift server opens each JDBC session with a class loader whose parent is the
    JVM's system class loader, which does not see ``spark.jars``; without Delta there,
    every connection fails with "Cannot find catalog plugin class ... DeltaCatalog". Only
    Delta's own jars go there: its dependencies are in pyspark already, in other versions.
    On a machine that never resolved the jars, they are resolved first (once, from
    Maven Central, by a short Spark run in a subprocess).

    Raises:
        ConfigError: The jars could not be resolved.
    """

    jars = delta_jar_conf().get("spark.jars")
    if jars is None:
        resolve_packages(DELTA_PACKAGE, ivy_home())
        jars = delta_jar_conf().get("spark.jars")
        if jars is None:
            raise ConfigError(f"the Delta jars could not be resolved into {ivy_home()}")
    delta = [j for j in jars.split(",") if os.path.basename(j).startswith("io.delta_")]
    return os.pathsep.join(delta)
