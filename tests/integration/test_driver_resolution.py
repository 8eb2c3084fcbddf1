"""A machine whose Ivy lacks the metastore's JDBC driver: the session resolves it before
its JVM starts, so that the JVM can pool the metastore's connections
(`mlflow_fun.metastore_pool`). Resolved by the session itself, the driver came too late:
a build and read of 250 experiments on a PostgreSQL metastore opened 2,078 connections
(140 s) where a pooled one opens a few."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from mlflow_fun.metastore_pool import (
    CLASSPATH_KEY,
    POOLING_KEY,
    pooled_driver_conf,
    unresolved_packages,
)
from mlflow_fun.spark_jars import ivy_home, resolve_packages
from tests.db_servers import POSTGRES_DRIVER

REPO = Path(__file__).resolve().parents[2]


def test_a_driver_missing_from_ivy_is_resolved_before_a_pooled_session(tmp_path: Path) -> None:
    settings = yaml.safe_load((REPO / "conf" / "metastore-postgres.yaml").read_text())["spark_conf"]
    assert settings["spark.jars.packages"] == POSTGRES_DRIVER
    ivy = tmp_path / "ivy"
    # Ivy's own cache of the driver's files (no download where they are there), no jars.
    for group in ("org.postgresql", "org.checkerframework"):
        cached = Path(ivy_home()) / "cache" / group
        if cached.is_dir():
            shutil.copytree(cached, ivy / "cache" / group)
    assert unresolved_packages(settings, str(ivy)) == [POSTGRES_DRIVER]
    assert pooled_driver_conf(settings, str(ivy)) == {}

    resolve_packages(POSTGRES_DRIVER, str(ivy))

    assert unresolved_packages(settings, str(ivy)) == []
    pooled = pooled_driver_conf(settings, str(ivy))
    assert pooled[POOLING_KEY] == "HikariCP"
    assert pooled[CLASSPATH_KEY] == str(ivy / "jars" / "org.postgresql_postgresql-42.7.14.jar")
