"""A connection pool for a metastore database whose JDBC driver Ivy has resolved.

Without a pool, Hive's metastore client (DataNucleus) opens a new JDBC connection for each
transaction: on PostgreSQL a new server process and a password handshake, several times
for each table a job registers. The pools DataNucleus offers (HikariCP, which pyspark
ships) load the driver class through the JVM's own class path, where a driver given as
``spark.jars.packages`` is not (it is on Spark's class loader), so a metastore on another
database has to run without one (``connectionPoolingType: None``, as
``conf/metastore-postgres.yaml`` says).

For a local session `pooled_driver_conf` puts the jar that holds the driver class, once
Ivy has resolved it, on the driver JVM's class path as well and turns HikariCP on: a first
build of 100 experiments on a PostgreSQL metastore took 13 s instead of 32 s on this
project's 2-core machine. On a machine whose Ivy lacks the jar, `unresolved_packages`
names what to resolve before the session starts (`mlflow_fun.session` does, once: a
session that resolves it itself cannot pool, its class path fixed at its start).

Example:
    >>> conf = pooled_driver_conf({
    ...     "spark.jars.packages": "org.postgresql:postgresql:42.7.14",
    ...     "spark.hadoop.javax.jdo.option.ConnectionDriverName": "org.postgresql.Driver",
    ...     "spark.hadoop.datanucleus.connectionPoolingType": "None",
    ... }, ivy="/root/.cache/mlflow-fun/ivy")
    >>> conf["spark.driver.extraClassPath"], conf[POOLING_KEY]
    ('/root/.cache/mlflow-fun/ivy/jars/org.postgresql_postgresql-42.7.14.jar', 'HikariCP')
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterable, Mapping

POOLING_KEY = "spark.hadoop.datanucleus.connectionPoolingType"
DRIVER_KEY = "spark.hadoop.javax.jdo.option.ConnectionDriverName"
CLASSPATH_KEY = "spark.driver.extraClassPath"
_POOL = "spark.hadoop.datanucleus.connectionPool."
# A job's metastore calls are one at a time (Spark's Hive client takes one call at a
# time); DataNucleus keeps two pools (transactions and value generation), so a call waits
# for a connection only where none can be made: the metastore's database down, or slow to
# accept one. A call that fails waits about 20 times inside Hive and DataNucleus (a first
# build's registration with the database stopped, one try: 37 s at 2 s a wait, 11 s at
# 0.5 s, 6.5 s at 0.25 s), so the wait sets how soon a job sees a lost metastore. Hive
# retries each call (10 tries 2 s apart by default): a database back within them is
# ridden over, a slow connection retried. HikariCP's default is 30 s.
POOL_DEFAULTS = {
    f"{_POOL}maxPoolSize": "4",
    f"{_POOL}minIdle": "1",
    f"{_POOL}connectionWaitTimeout": "500",
}


def pooled_driver_conf(settings: Mapping[str, str], ivy: str) -> dict[str, str]:
    """The settings that pool the metastore's connections, or none.

    Only for settings that ask for no pool (``None``), leave the driver JVM's class path
    to this project, and name a driver class found in a jar of ``spark.jars.packages``
    already resolved under ``ivy``'s ``jars`` folder (Ivy's ``<org>_<artifact>-<version>``
    file names).
    """
    if not _poolable(settings):
        return {}
    jar = _jar_holding(settings[DRIVER_KEY].strip(), settings.get("spark.jars.packages", ""), ivy)
    if jar is None:
        return {}
    pooled = {CLASSPATH_KEY: jar, POOLING_KEY: "HikariCP"}
    pooled.update({key: value for key, value in POOL_DEFAULTS.items() if key not in settings})
    return pooled


def unresolved_packages(settings: Mapping[str, str], ivy: str) -> list[str]:
    """The packages of ``spark.jars.packages`` not yet under ``ivy`` where `pooled_driver_conf`
    would pool once they are (settings that ask for no pool and name a driver), else none.

    A JVM's class path is fixed when it starts: resolved by the session itself, the
    driver's jar comes too late to pool that session's connections.

    Example:
        >>> unresolved_packages({
        ...     "spark.jars.packages": "org.postgresql:postgresql:42.7.14",
        ...     DRIVER_KEY: "org.postgresql.Driver", POOLING_KEY: "None",
        ... }, ivy="/nowhere")
        ['org.postgresql:postgresql:42.7.14']
    """
    if not _poolable(settings):
        return []
    return missing_jars(ivy, settings.get("spark.jars.packages", "").split(","))


def missing_jars(ivy: str, coordinates: Iterable[str]) -> list[str]:
    """The ``group:artifact:version`` coordinates whose jar is not under ``ivy`` yet (what
    is not a coordinate is left to Spark to refuse).

    Example:
        >>> missing_jars("/nowhere", ["io.delta:delta-spark_4.2_2.13:4.4.0", "not-one"])
        ['io.delta:delta-spark_4.2_2.13:4.4.0']
    """
    stripped = (c.strip() for c in coordinates)
    return [c for c in stripped if (path := ivy_jar(ivy, c)) and not os.path.exists(path)]


def _poolable(settings: Mapping[str, str]) -> bool:
    """Settings that ask for no pool, name a driver class and leave the driver JVM's class
    path to this project."""
    return (
        settings.get(POOLING_KEY, "").strip().lower() == "none"
        and CLASSPATH_KEY not in settings
        and bool(settings.get(DRIVER_KEY, "").strip())
    )


def ivy_jar(ivy: str, coordinate: str) -> str | None:
    """Where Ivy puts the jar of a ``group:artifact:version`` coordinate under ``ivy``
    (``jars/<group>_<artifact>-<version>.jar``); None for anything else.

    Example:
        >>> ivy_jar("/ivy", "org.postgresql:postgresql:42.7.14")
        '/ivy/jars/org.postgresql_postgresql-42.7.14.jar'
    """
    parts = coordinate.strip().split(":")
    if len(parts) != 3:
        return None
    return os.path.join(ivy, "jars", f"{parts[0]}_{parts[1]}-{parts[2]}.jar")


def _jar_holding(driver: str, packages: str, ivy: str) -> str | None:
    """The resolved jar of ``packages`` (``g:a:v`` coordinates) that holds the class."""
    entry = driver.replace(".", "/") + ".class"
    for path in filter(None, (ivy_jar(ivy, p) for p in packages.split(","))):
        try:
            with zipfile.ZipFile(path) as jar:
                jar.getinfo(entry)
        except (OSError, KeyError, zipfile.BadZipFile):
            continue
        return path
    return None
