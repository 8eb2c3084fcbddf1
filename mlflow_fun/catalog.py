"""What Spark's catalog says about a database's tables, for the job's writes and its reads.

Which tables exist and where they live come from the metastore, through Spark's session
catalog (`session_catalog`: no SQL statement, no table loaded; ``SHOW TABLE EXTENDED``
and the like in another catalog); whether this process may touch a table's files itself
comes from the form of its location (`local_path`). The writer (`mlflow_fun.load`) and
the readers (`mlflow_fun.query`) share these.

Example:
    >>> locations = metastore_locations(spark, "mlflow_metrics", "exp_1|exp_2")
    >>> local_path(locations["exp_1"])
    '/srv/mlflow-fun/warehouse/mlflow_metrics.db/exp_1'
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from mlflow_fun.transform.naming import quote_identifier, sql_literal

SESSION_CATALOG = "spark_catalog"  # Spark's own catalog, over its metastore
_SEPARATOR = "\0"  # between the names or entries the JVM joins into one text
# Entries asked in one metastore call: Hive's own batch (hive.metastore.batch.retrieve.max),
# a query of bounded size whatever the number of tables.
_BATCH = 300

# pyspark: the optional [spark] extra; the callers hold a session already.
if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def session_catalog(spark: SparkSession) -> Any | None:
    """Spark's session catalog (the JVM's ``SessionCatalog``) where the session's current
    catalog is Spark's own (``spark_catalog``: the embedded metastore or a Hive
    metastore), else None (another catalog, such as Unity Catalog's: ask through SQL).

    Its calls ask the metastore only. A SQL statement's first use in a process starts
    Spark's parser and planner, 0.7-0.9 s, and a job whose views are unchanged asks Spark
    nothing else; `pyspark.sql.Catalog.tableExists` loads the table through Delta's
    catalog, 0.4-0.5 s for the first. The catalog wraps the metastore's refusals in
    Spark's ``AnalysisException``, as the statements do.
    """
    if spark.catalog.currentCatalog() != SESSION_CATALOG:
        return None
    return spark._jsparkSession.sessionState().catalog()


def database_exists(spark: SparkSession, database: str) -> bool:
    """True if the metastore has ``database``."""
    catalog = session_catalog(spark)
    if catalog is None:
        return bool(spark.catalog.databaseExists(database))
    return bool(catalog.databaseExists(database))


def table_exists(spark: SparkSession, database: str, name: str) -> bool:
    """True if the metastore names ``database.name`` (a table or a view)."""
    catalog = session_catalog(spark)
    if catalog is None:
        return bool(spark.catalog.tableExists(f"{database}.{name}"))
    jvm: Any = spark.sparkContext._jvm
    identifier = jvm.org.apache.spark.sql.catalyst.TableIdentifier(name, jvm.scala.Some(database))
    return bool(catalog.tableExists(identifier))


def table_names(spark: SparkSession, database: str) -> frozenset[str]:
    """The tables and views of ``database`` in the metastore (none before it exists)."""
    catalog = session_catalog(spark)
    if catalog is None:
        if not spark.catalog.databaseExists(database):
            return frozenset()
        rows = spark.sql(f"SHOW TABLES IN {quote_identifier(database)}").collect()
        return frozenset(row["tableName"] for row in rows if not row["isTemporary"])
    if not catalog.databaseExists(database):
        return frozenset()
    names = catalog.externalCatalog().listTables(database.lower()).mkString(_SEPARATOR)
    return frozenset(names.split(_SEPARATOR)) if names else frozenset()


def database_location(spark: SparkSession, database: str) -> str:
    """Where ``database`` keeps its tables, as ``DESCRIBE DATABASE`` says it."""
    catalog = session_catalog(spark)
    if catalog is None:
        rows = spark.sql(f"DESCRIBE DATABASE {quote_identifier(database)}").collect()
        info = {row[0]: row[1] for row in rows}
        return str(info.get("Location") or info.get("Database Location"))
    jvm: Any = spark.sparkContext._jvm
    uri = catalog.getDatabaseMetadata(database).locationUri()
    return str(jvm.org.apache.spark.sql.catalyst.catalog.CatalogUtils.URIToString(uri))


def table_information(spark: SparkSession, database: str, pattern: str) -> dict[str, list[str]]:
    """Table or view -> the lines of its ``SHOW TABLE EXTENDED`` information (``Location:
    ...``, ``Table Properties: [...]``), for those of ``database`` matching ``pattern``
    (``*`` for any text, ``a|b`` for either). The session's temporary views, which the
    statement lists too, are left out.

    Both ways ask the metastore only: the session catalog's calls (the names, then the
    entries of up to `_BATCH` tables a call, joined into one text by the JVM: one answer)
    or, in another catalog, one ``SHOW TABLE EXTENDED`` (a metastore call per table, 0.7 s
    for 200); a ``DESCRIBE FORMATTED`` per table also reads its Delta log (0.1 s each).

    Raises:
        pyspark.errors.AnalysisException: There is no such database.
    """
    catalog = session_catalog(spark)
    if catalog is not None and catalog.databaseExists(database):
        metastore = catalog.externalCatalog()
        names = metastore.listTables(database.lower(), pattern)
        if names.isEmpty():
            return {}
        found = {}
        entries = _SEPARATOR.join(
            metastore.getTablesByName(
                database.lower(), names.slice(start, start + _BATCH)
            ).mkString(_SEPARATOR)
            for start in range(0, names.size(), _BATCH)
        )
        for entry in entries.split(_SEPARATOR):  # "CatalogTable(\n<its lines>)"
            lines = entry.removeprefix("CatalogTable(").removesuffix(")").strip().splitlines()
            found[_value(lines, "Table") or ""] = lines
        if "" not in found:  # each entry named its table, as this Spark's do
            return found
    rows = spark.sql(
        f"SHOW TABLE EXTENDED IN {quote_identifier(database)} LIKE {sql_literal(pattern)}"
    ).collect()
    return {
        row["tableName"]: str(row["information"]).splitlines()
        for row in rows
        if not row["isTemporary"]
    }


def metastore_locations(spark: SparkSession, database: str, pattern: str) -> dict[str, str]:
    """Table -> location of the tables of ``database`` matching ``pattern``
    (`table_information`)."""
    return {
        name: location
        for name, lines in table_information(spark, database, pattern).items()
        if (location := location_of(lines)) is not None
    }


def location_of(lines: list[str]) -> str | None:
    """The ``Location:`` of one table's `table_information` lines (None: a view)."""
    return _value(lines, "Location")


def provider_of(lines: list[str]) -> str | None:
    """The ``Provider:`` of one table's `table_information` lines (``delta``, ``parquet``)."""
    return _value(lines, "Provider")


def _value(lines: list[str], name: str) -> str | None:
    prefix = f"{name}: "
    return next((line[len(prefix) :] for line in lines if line.startswith(prefix)), None)


DELTA_LOG = "_delta_log"  # a Delta table's log folder


def is_delta(path: str) -> bool:
    """True if the local folder ``path`` holds a Delta table (a ``_delta_log`` folder)."""
    return os.path.isdir(os.path.join(path, DELTA_LOG))


def local_delta_path(location: str | None) -> str | None:
    """The local folder of ``location`` (`local_path`) if a Delta table is there, else None.

    Example:
        >>> local_delta_path(locations["exp_1"])
        '/srv/mlflow-fun/warehouse/mlflow_metrics.db/exp_1'
    """
    path = local_path(location) if location else None
    return path if path is not None and is_delta(path) else None


def local_path(location: str) -> str | None:
    """The local path of a table location (``file:/x`` or ``file:///x``), else None.

    A location with ``%`` is left to Spark: Hadoop's form of a path does not say whether
    it is an escape or the character.

    Example:
        >>> local_path("file:/srv/warehouse/db.db/exp_1")
        '/srv/warehouse/db.db/exp_1'
        >>> local_path("s3a://bucket/warehouse/exp_1") is None
        True
    """
    if not location.startswith("file:") or "%" in location:
        return None
    path = "/" + location[len("file:") :].lstrip("/")
    return os.path.normpath(path)
