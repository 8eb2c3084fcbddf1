"""Which Delta jars a local session passes to Spark, and which class archive it maps."""

from __future__ import annotations

from pathlib import Path

import pyspark
import pytest

from mlflow_fun.session import (
    CLASSPATH_ENV,
    METASTORE_URL_KEY,
    _archivable,
    _archive_key,
    metastore_kind,
    spark_home,
)
from mlflow_fun.spark_jars import jars_spark_lacks

# Ivy's names for part of what io.delta:delta-spark_4.2_2.13:4.4.0 resolves to.
IVY = [
    "com.fasterxml.jackson.core_jackson-databind-2.13.5.jar",
    "com.fasterxml.jackson.datatype_jackson-datatype-jdk8-2.13.5.jar",
    "com.github.luben_zstd-jni-1.5.7-3.jar",
    "io.delta_delta-spark_4.2_2.13-4.4.0.jar",
    "io.delta_delta-storage-4.4.0.jar",
    "io.unitycatalog_unitycatalog-hadoop-0.6.0.jar",
    "org.apache.hadoop_hadoop-client-runtime-3.4.2.jar",
    "org.apache.logging.log4j_log4j-slf4j2-impl-2.25.3.jar",
    "org.roaringbitmap_RoaringBitmap-0.9.25.jar",
    "org.roaringbitmap_shims-0.9.25.jar",
]
# Part of pyspark 4.2's jars folder (newer versions of some of the above), and one made-up
# jar whose artifact starts like Delta's: a prefix is not a match.
SPARK = [
    "delta-storage-s3-dynamodb-9.9.9.jar",
    "hadoop-client-runtime-3.5.0.jar",
    "jackson-databind-2.21.2.jar",
    "log4j-slf4j2-impl-2.25.4.jar",
    "RoaringBitmap-1.6.10.jar",
    "spark-core_2.13-4.2.0.jar",
    "zstd-jni-1.5.7-7.jar",
]


def test_a_session_passes_only_the_jars_whose_artifact_spark_lacks() -> None:
    assert jars_spark_lacks(IVY, SPARK) == [
        "com.fasterxml.jackson.datatype_jackson-datatype-jdk8-2.13.5.jar",
        "io.delta_delta-spark_4.2_2.13-4.4.0.jar",
        "io.delta_delta-storage-4.4.0.jar",
        "io.unitycatalog_unitycatalog-hadoop-0.6.0.jar",
        "org.roaringbitmap_shims-0.9.25.jar",
    ]


def test_without_sparks_jars_folder_every_jar_is_passed() -> None:
    assert jars_spark_lacks(IVY, []) == IVY


def test_sessions_on_other_metastores_keep_separate_class_archives() -> None:
    """The archive holds the classes its writer loaded (Derby's, or a JDBC driver's)."""
    postgres = {METASTORE_URL_KEY: "${env.MLFLOW_FUN_METASTORE_URL:-jdbc:postgresql://h/db}"}
    assert metastore_kind(postgres) == "jdbc"
    assert metastore_kind({METASTORE_URL_KEY: "jdbc:derby:;databaseName=/d/metastore_db"}) == (
        "derby"
    )
    assert metastore_kind({}) == "derby"  # Spark's own default
    assert metastore_kind({"spark.hadoop.hive.metastore.uris": "thrift://ms:9083"}) == "thrift"


@pytest.mark.parametrize("name", CLASSPATH_ENV)
def test_a_launcher_classpath_setting_gets_its_own_class_archive(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Spark's launcher puts these folders on the classpath; the JVM refuses an archive
    written under another classpath, so one shared archive would be rewritten each time."""
    for other in CLASSPATH_ENV:
        monkeypatch.delenv(other, raising=False)
    plain = _archive_key({})
    monkeypatch.setenv(name, "/etc/spark-elsewhere")
    assert _archive_key({}) != plain
    assert _archive_key({}) == _archive_key({})


def test_no_class_archive_under_a_conf_folder_with_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Java cannot write an archive when a folder with files precedes the jars on the
    classpath ("Cannot have non-empty directory in paths"); Spark's conf folder does."""
    conf = tmp_path / "conf"
    monkeypatch.setenv("SPARK_CONF_DIR", str(conf))
    assert _archivable()  # no folder
    conf.mkdir()
    assert _archivable()  # an empty one
    (conf / "spark-defaults.conf").write_text("spark.ui.enabled false\n")
    assert not _archivable()


def test_spark_home_is_the_pyspark_package_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a local session exports before `spark-submit` runs, so that the script does
    not start `python3` to find it."""
    monkeypatch.delenv("SPARK_HOME", raising=False)
    home = Path(spark_home())
    assert (home / "bin" / "spark-submit").is_file() and (home / "jars").is_dir()
    assert home == Path(pyspark.__file__).parent
    monkeypatch.setenv("SPARK_HOME", "/opt/spark")
    assert spark_home() == "/opt/spark"
