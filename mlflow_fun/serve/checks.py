"""What the SQL endpoint checks before and after it starts; each failure is one line."""

from __future__ import annotations

import errno
import logging
import os
import socket
import time
from typing import TYPE_CHECKING

from mlflow_fun.errors import ConfigError, MlflowFunError
from mlflow_fun.metastore_pool import CLASSPATH_KEY
from mlflow_fun.serve.settings import (
    DELTA_CATALOG,
    HIVE_ENV_OVERRIDES,
    HOST_KEY,
    PORT_KEY,
    WILDCARD_HOSTS,
    EndpointConfig,
)
from mlflow_fun.session import METASTORE_URL_KEY, embedded_derby

# py4j, pyspark: the optional [spark] extras, imported inside the functions that use them.
if TYPE_CHECKING:
    from pyspark.sql import SparkSession

logger = logging.getLogger(__name__)


def check_hive_env(config: EndpointConfig) -> None:
    wanted = {"port": str(config.port), "host": config.host}
    for variable, what in HIVE_ENV_OVERRIDES.items():
        value = os.environ.get(variable)
        if value and value != wanted[what]:
            raise ConfigError(
                f"the environment variable {variable}={value} would override --{what} "
                f"{wanted[what]}; unset it or pass the same value"
            )


def check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise ConfigError(f"port {port} on {host} is in use; choose another --port") from e
            raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror or e}") from e


def check_session(spark: SparkSession, config: EndpointConfig) -> None:
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


def check_database(spark: SparkSession, config: EndpointConfig) -> None:
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
    if embedded_derby(spark.sparkContext.getConf().get(METASTORE_URL_KEY)):
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


def wait_listening(host: str, port: int, timeout: float) -> None:
    target = "127.0.0.1" if host in WILDCARD_HOSTS else host
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
