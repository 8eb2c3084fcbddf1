"""`pooled_driver_conf`: which settings get a pooled metastore connection, on jars in a
temporary Ivy folder; `unresolved_packages`: what a session resolves before it starts."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from mlflow_fun.metastore_pool import (
    CLASSPATH_KEY,
    DRIVER_KEY,
    POOLING_KEY,
    pooled_driver_conf,
    unresolved_packages,
)

PACKAGES = "org.checkerframework:checker-qual:3.55.1,org.postgresql:postgresql:42.7.14"
DRIVER_JAR = "org.postgresql_postgresql-42.7.14.jar"


@pytest.fixture
def ivy(tmp_path: Path) -> Path:
    """An Ivy folder whose jars are the driver's and one without a driver class."""
    jars = tmp_path / "jars"
    jars.mkdir()
    for name, entry in [
        (DRIVER_JAR, "org/postgresql/Driver.class"),
        ("org.checkerframework_checker-qual-3.55.1.jar", "org/checkerframework/Nullable.class"),
    ]:
        with zipfile.ZipFile(jars / name, "w") as jar:
            jar.writestr(entry, b"\xca\xfe\xba\xbe")
    return tmp_path


def _settings(**changes: str) -> dict[str, str]:
    settings = {
        "spark.jars.packages": PACKAGES,
        DRIVER_KEY: "org.postgresql.Driver",
        POOLING_KEY: "None",
    }
    settings.update(changes)
    return settings


def test_the_jar_holding_the_driver_goes_on_the_class_path_with_a_pool(ivy: Path) -> None:
    assert pooled_driver_conf(_settings(), str(ivy)) == {
        CLASSPATH_KEY: str(ivy / "jars" / DRIVER_JAR),
        POOLING_KEY: "HikariCP",
        "spark.hadoop.datanucleus.connectionPool.maxPoolSize": "4",
        "spark.hadoop.datanucleus.connectionPool.minIdle": "1",
        "spark.hadoop.datanucleus.connectionPool.connectionWaitTimeout": "500",
    }


def test_pool_settings_given_are_kept(ivy: Path) -> None:
    given = "spark.hadoop.datanucleus.connectionPool.maxPoolSize"
    conf = pooled_driver_conf(_settings(**{given: "8"}), str(ivy))
    assert given not in conf
    assert conf[POOLING_KEY] == "HikariCP"


@pytest.mark.parametrize(
    "changes",
    [
        {POOLING_KEY: "HikariCP"},  # a pool chosen already
        {POOLING_KEY: ""},  # the settings said nothing about pools
        {CLASSPATH_KEY: "/opt/drivers/postgresql.jar"},  # the class path is the user's
        {"spark.jars.packages": "org.postgresql:postgresql:42.7.15"},  # not resolved yet
        {DRIVER_KEY: "com.mysql.cj.jdbc.Driver"},  # in none of the jars
        {DRIVER_KEY: ""},
        {"spark.jars.packages": "not-a-coordinate"},
    ],
)
def test_no_pool_unless_every_condition_holds(ivy: Path, changes: dict[str, str]) -> None:
    assert pooled_driver_conf(_settings(**changes), str(ivy)) == {}


def test_packages_missing_from_ivy_are_resolved_before_a_pooled_session(ivy: Path) -> None:
    assert unresolved_packages(_settings(), str(ivy)) == []
    (ivy / "jars" / DRIVER_JAR).unlink()
    assert unresolved_packages(_settings(), str(ivy)) == ["org.postgresql:postgresql:42.7.14"]
    newer = _settings(**{"spark.jars.packages": f"{PACKAGES}, org.postgresql:postgresql:42.7.15"})
    assert unresolved_packages(newer, str(ivy)) == [
        "org.postgresql:postgresql:42.7.14",
        "org.postgresql:postgresql:42.7.15",
    ]


@pytest.mark.parametrize(
    "changes",
    [
        {POOLING_KEY: "HikariCP"},  # no pool to wait for: Spark resolves them at its start
        {CLASSPATH_KEY: "/opt/drivers/postgresql.jar"},
        {DRIVER_KEY: ""},
        {"spark.jars.packages": "not-a-coordinate"},  # Spark's to refuse
    ],
)
def test_nothing_is_resolved_ahead_where_no_pool_would_follow(
    ivy: Path, changes: dict[str, str]
) -> None:
    (ivy / "jars" / DRIVER_JAR).unlink()
    assert unresolved_packages(_settings(**changes), str(ivy)) == []
