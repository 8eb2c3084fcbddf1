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

import argparse
import errno
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any

from mlflow_fun.errors import ConfigError, MlflowFunError
from mlflow_fun.naming import validate_identifier

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 10000
DEFAULT_DATABASE = "mlflow_metrics"
START_TIMEOUT = 120.0
THRIFT_SERVER = "org.apache.spark.sql.hive.thriftserver.HiveThriftServer2"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
PORT_KEY = "spark.hadoop.hive.server2.thrift.port"
HOST_KEY = "spark.hadoop.hive.server2.thrift.bind.host"
CLASSPATH_KEY = "spark.driver.extraClassPath"
METASTORE_URL_KEY = "spark.hadoop.javax.jdo.option.ConnectionURL"
# HiveServer2 reads these before its configuration; they would silently win over --port.
HIVE_ENV_OVERRIDES = {
    "HIVE_SERVER2_THRIFT_PORT": "port",
    "HIVE_SERVER2_THRIFT_BIND_HOST": "host",
}
_ENV_REFERENCE = re.compile(r"\$\{env\.([A-Za-z_][A-Za-z0-9_]*)(:?-[^}]*)?\}")
_WILDCARD_HOSTS = ("0.0.0.0", "::", "")


@dataclass(frozen=True)
class EndpointConfig:
    """Where the endpoint listens and which metastore and tables it serves.

    Attributes:
        host: Address to bind; 127.0.0.1 by default (the endpoint has no authentication).
        port: TCP port of the HiveServer2 protocol.
        database: Database clients start in (the job's ``--database``).
        data_dir: Home of the embedded default (as given to the job); None for the
            metastore and warehouse in ``spark_conf`` or Spark's own settings.
        spark_conf: Extra Spark settings, as in the job's conf files.
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    database: str = DEFAULT_DATABASE
    data_dir: str | None = None
    spark_conf: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate_identifier(self.database, "database")
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"port {self.port} must be between 1 and 65535")
        if any(c.isspace() for c in self.host):
            raise ConfigError(f"host {self.host!r} must not contain spaces")

    @property
    def jdbc_url(self) -> str:
        """``jdbc:hive2://<host>:<port>/<database>`` (the machine's name for 0.0.0.0)."""
        host = socket.gethostname() if self.host in _WILDCARD_HOSTS else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"jdbc:hive2://{host}:{self.port}/{self.database}"


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


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``mlflow-fun serve``; each multi-word flag has both spellings."""
    parser.add_argument(
        "--host", default=None, help=f"address to bind (default: {DEFAULT_HOST}, this machine only)"
    )
    parser.add_argument(
        "--port", type=int, default=None, help=f"TCP port (default: {DEFAULT_PORT})"
    )
    parser.add_argument(
        "--database", default=None, help=f"database clients start in (default: {DEFAULT_DATABASE})"
    )
    parser.add_argument(
        "--data_dir",
        "--data-dir",
        dest="data_dir",
        default=None,
        help="home of the embedded default, as given to `mlflow-fun build`",
    )
    parser.add_argument(
        "--conf",
        default=None,
        help="the job's YAML settings file (database, data_dir, spark_conf), e.g. "
        "conf/metastore-postgres.yaml; flags override it",
    )


def config_from_args(args: argparse.Namespace) -> EndpointConfig:
    """The file from ``--conf`` (if any) with the flags applied over it.

    Raises:
        ConfigError, InvalidIdentifierError: The file or a flag is invalid.
    """
    from mlflow_fun.config import JobConfig, load_config

    base = load_config(args.conf) if args.conf else JobConfig()
    return EndpointConfig(
        host=args.host if args.host is not None else DEFAULT_HOST,
        port=args.port if args.port is not None else DEFAULT_PORT,
        database=args.database or base.database,
        data_dir=args.data_dir or base.data_dir,
        spark_conf=dict(base.spark_conf),
    )


def serve_until_stopped(args: argparse.Namespace, on_ready: Callable[[str], None]) -> None:
    """Start the endpoint, call ``on_ready(jdbc_url)``, serve until SIGTERM/SIGINT.

    Returns after a clean stop on SIGTERM or SIGINT.

    Raises:
        MlflowFunError: Bad settings, a busy port, or a server that did not start.
    """
    config = config_from_args(args)
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
    _check_hive_env(config)
    if config.host not in ("127.0.0.1", "::1", "localhost"):
        logger.warning(
            "the SQL endpoint listens on %s without authentication: anyone who can reach the "
            "port can read every table",
            config.host,
        )
    _check_port_free(config.host, config.port)
    owns_spark = spark is None
    if spark is None:
        from pyspark import SparkContext

        from mlflow_fun.spark_session import build_spark_session

        # A session already running in this process is reused, not owned: never stop it.
        owns_spark = SparkContext._active_spark_context is None

        spark = build_spark_session(
            data_dir=config.data_dir,
            app_name="mlflow-fun-serve",
            conf=endpoint_spark_conf(config),
        )
    try:
        _check_session(spark, config)
        _check_database(spark, config)
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
        _wait_listening(config.host, config.port, timeout)
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
    from mlflow_fun.spark_session import delta_jar_conf, ivy_home

    jars = delta_jar_conf().get("spark.jars")
    if jars is None:
        _resolve_delta_jars()
        jars = delta_jar_conf().get("spark.jars")
        if jars is None:
            raise ConfigError(f"the Delta jars could not be resolved into {ivy_home()}")
    delta = [j for j in jars.split(",") if os.path.basename(j).startswith("io.delta_")]
    return os.pathsep.join(delta)


def check_env_references(spark_conf: Mapping[str, str], source: str = "spark_conf") -> None:
    """Check that every ``${env.NAME}`` without a default names a set environment variable.

    Hadoop expands ``${env.NAME}`` (and ``${env.NAME:-default}``) in ``spark.hadoop.*``
    settings when they are read, so a conf file can name a password without holding it.

    Example:
        >>> check_env_references({"spark.hadoop.x": "${env.HOME}"})

    Raises:
        ConfigError: Such a variable is unset or empty; the message names the setting and
            the variable, never a value.
    """
    for key, value in spark_conf.items():
        for match in _ENV_REFERENCE.finditer(value):
            name, default = match.group(1), match.group(2)
            if default is None and not os.environ.get(name):
                raise ConfigError(
                    f"{source} setting {key} needs the environment variable {name}, which "
                    "is not set"
                )


def _resolve_delta_jars() -> None:
    from mlflow_fun.spark_session import ivy_home

    logger.warning("resolving the Delta jars once into %s (first run on this machine)", ivy_home())
    code = (
        "from mlflow_fun.spark_session import build_spark_session\n"
        "build_spark_session(app_name='mlflow-fun-resolve', master='local[1]',"
        " conf={'spark.ui.enabled': 'false'}).stop()\n"
    )
    with tempfile.TemporaryDirectory(prefix="mlflow-fun-resolve-") as workdir:
        result = subprocess.run(
            [sys.executable, "-c", code],
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    if result.returncode != 0:
        tail = " | ".join(result.stderr.strip().splitlines()[-3:])
        raise ConfigError(f"resolving the Delta jars failed: {tail}")


def _check_hive_env(config: EndpointConfig) -> None:
    wanted = {"port": str(config.port), "host": config.host}
    for variable, what in HIVE_ENV_OVERRIDES.items():
        value = os.environ.get(variable)
        if value and value != wanted[what]:
            raise ConfigError(
                f"the environment variable {variable}={value} would override --{what} "
                f"{wanted[what]}; unset it or pass the same value"
            )


def _check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise ConfigError(f"port {port} on {host} is in use; choose another --port") from e
            raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror or e}") from e


def _check_session(spark: SparkSession, config: EndpointConfig) -> None:
    conf = spark.sparkContext.getConf()
    if conf.get(PORT_KEY) != str(config.port) or conf.get(HOST_KEY) != config.host:
        raise ConfigError(
            "the SparkSession was started without this endpoint's host and port (a session "
            "already ran in this process?); build it with endpoint_spark_conf(config), or "
            "run `mlflow-fun serve` in a fresh process"
        )
    if conf.get("spark.sql.catalog.spark_catalog") != DELTA_CATALOG:
        return
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    from py4j.protocol import Py4JJavaError

    try:
        jvm.java.lang.ClassLoader.getSystemClassLoader().loadClass(DELTA_CATALOG)
    except Py4JJavaError as e:
        raise ConfigError(
            "the Delta jars are not on the driver's class path, so JDBC sessions could not "
            f"load {DELTA_CATALOG}; set {CLASSPATH_KEY} (endpoint_spark_conf does) or use "
            "spark-submit --driver-class-path"
        ) from e


def _check_database(spark: SparkSession, config: EndpointConfig) -> None:
    from py4j.protocol import Py4JJavaError
    from pyspark.errors import PySparkException

    try:
        exists = spark.catalog.databaseExists(config.database)
    except (PySparkException, Py4JJavaError) as e:
        text = str(e)
        if "Another instance of Derby" in text or "Failed to start database" in text:
            raise ConfigError(
                f"the embedded metastore under {config.data_dir!r} is open in another process "
                "(a running `mlflow-fun build`?); Derby allows one process at a time: wait "
                "for it, or share a metastore (conf/metastore-postgres.yaml)"
            ) from e
        first = text.strip().splitlines()[0] if text.strip() else type(e).__name__
        raise ConfigError(f"cannot open the metastore: {first}") from e
    if exists:
        return
    url = str(spark.sparkContext.getConf().get(METASTORE_URL_KEY, "jdbc:derby:"))
    if url.startswith("jdbc:derby:"):
        raise ConfigError(
            f"database {config.database!r} does not exist in the embedded metastore"
            f"{' under ' + repr(config.data_dir) if config.data_dir else ''}; run "
            "`mlflow-fun build` with the same --data_dir first"
        )
    logger.warning(
        "database %s does not exist yet; clients connecting to %s fail until a job creates it",
        config.database,
        config.jdbc_url,
    )


def _wait_listening(host: str, port: int, timeout: float) -> None:
    target = "127.0.0.1" if host in _WILDCARD_HOSTS else host
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((target, port), timeout=2.0):
                return
        except OSError as e:
            if time.monotonic() > deadline:
                raise MlflowFunError(
                    f"the SQL endpoint did not listen on {host}:{port} within {timeout:.0f} s "
                    f"({e.strerror or e}); see the Spark log above"
                ) from e
            time.sleep(0.2)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mlflow_fun.serve``: the same as ``mlflow-fun serve``."""
    from mlflow_fun.cli import serve_main

    return serve_main(argv)


if __name__ == "__main__":
    sys.exit(main())
