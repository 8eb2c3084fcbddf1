"""Name a Delta table the job has just written in Spark's session catalog, in one
metastore call.

``CREATE TABLE … USING DELTA LOCATION`` runs Delta's create command: Spark parses and
plans the statement, Delta loads the table's log and checks it, then the metastore stores
the entry. For a table delta-rs has just written (the job knows its log: one commit, the
schema it wrote) all but the last step is repeated work: 170 ms a table against 74 ms for
the metastore's own create, on this project's 2-core machine with the embedded Derby
metastore. A store's first build registers every experiment's table, so that difference
was most of a first build of many small experiments.

Spark's Hive catalog stores such a table with a placeholder location,
``<database folder>/<name>-__PLACEHOLDER__`` (SPARK-15269), that the metastore creates and
Spark deletes right after. Without Hadoop's native library (pyspark has none) the
metastore's ``mkdir`` forks a ``chmod`` process per table; where the database's folder is
local, `create` makes the placeholder itself (the metastore makes none where one exists),
about 4 ms of a 26 ms registration.

`CatalogEntries` stores the entry Delta's command stores for such a table (an external
table of provider ``delta`` at the location, no columns in the metastore, as the Delta log
holds them; partitions tracked by the catalog) through ``SessionCatalog.createTable``,
the same call Delta ends with. Where Spark's classes do not look as expected (another
Spark version) it says so by `CatalogEntries.open` returning None, and the caller runs the
SQL statement instead.

Example:
    >>> entries = CatalogEntries.open(spark)
    >>> entries.create("mlflow_metrics", "exp_1", "file:/srv/warehouse/mlflow_metrics.db/exp_1")
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any, ClassVar

# pyspark (py4j): the optional [spark] extra, imported inside the function that uses it.
if TYPE_CHECKING:
    from pyspark.sql import SparkSession

logger = logging.getLogger(__name__)

_CATALOG = "org.apache.spark.sql.catalyst.catalog"
_REQUIRED = ("identifier", "tableType", "storage", "schema")  # CatalogTable's, no default


class CatalogEntries:
    """Builds and stores Delta tables' catalog entries for one Spark session (Spark's
    classes looked up once; safe to share between threads)."""

    # id of a session's JVM object -> (that object, kept so that its id stays its own;
    # its entries, None where this module cannot build them)
    _opened: ClassVar[dict[int, tuple[Any, CatalogEntries | None]]] = {}
    _lock = threading.Lock()

    def __init__(self, spark: SparkSession) -> None:
        jvm: Any = spark.sparkContext._jvm
        package = getattr(jvm, _CATALOG)
        # The classes `create` uses, looked up here: each name py4j resolves is a round trip
        # to the JVM per part of its package (about 15 a table otherwise).
        self._some = jvm.scala.Some
        self._identifier = jvm.org.apache.spark.sql.catalyst.TableIdentifier
        self._to_uri = package.CatalogUtils.stringToURI
        self._catalog = spark._jsparkSession.sessionState().catalog()
        self._tables = getattr(getattr(package, "CatalogTable$"), "MODULE$")
        self._storage = getattr(getattr(package, "CatalogStorageFormat$"), "MODULE$").empty()
        external = getattr(getattr(package, "CatalogTableType$"), "MODULE$").EXTERNAL()
        arity = max(
            method.getParameterCount()
            for method in jvm.java.lang.Class.forName(f"{_CATALOG}.CatalogTable$").getMethods()
            if method.getName() == "apply"
        )
        defaults = [getattr(self._tables, f"apply$default${k}")() for k in range(5, arity + 1)]
        probe = self._tables.apply(
            self._identifier("probe", self._some("probe")),
            external,
            self._storage,
            jvm.org.apache.spark.sql.types.StructType(),
            *defaults,
        )
        self._names = [probe.productElementName(i) for i in range(probe.productArity())]
        if tuple(self._names[:4]) != _REQUIRED or "provider" not in self._names:
            raise ValueError(f"unexpected CatalogTable fields: {self._names}")
        self._fixed: list[Any] = [None, external, None, probe.schema(), *defaults]
        self._fixed[self._names.index("provider")] = self._some("delta")
        if "tracksPartitionsInCatalog" in self._names:
            self._fixed[self._names.index("tracksPartitionsInCatalog")] = True
        self._created = self._names.index("createTime") if "createTime" in self._names else -1
        storage_arity = probe.storage().productArity()
        self._storage_rest = [
            getattr(self._storage, f"copy$default${k}")() for k in range(2, storage_arity + 1)
        ]
        if probe.storage().productElementName(0) != "locationUri":
            raise ValueError("unexpected CatalogStorageFormat fields")
        self._folders: dict[str, str | None] = {}  # database -> its local folder, if any

    @classmethod
    def open(cls, spark: SparkSession) -> CatalogEntries | None:
        """The entries of ``spark``'s session, or None where Spark's classes differ from
        what this module builds (the reason logged at debug level)."""
        session = spark._jsparkSession
        with cls._lock:
            if id(session) not in cls._opened:
                entries: CatalogEntries | None = None
                try:
                    entries = cls(spark)
                except Exception as e:  # py4j or a class's shape: the SQL statement instead
                    logger.debug("catalog entries unavailable reason=%s", e)
                cls._opened[id(session)] = (session, entries)
            return cls._opened[id(session)][1]

    def create(self, database: str, name: str, location: str) -> None:
        """Name the Delta table at ``location`` (a URI with its scheme) ``database.name``;
        nothing where that name exists already (as ``CREATE TABLE IF NOT EXISTS``).

        Raises:
            py4j.protocol.Py4JJavaError: The metastore refused it (no such database, ...).
        """
        uri = self._to_uri(location)  # as SQL's LOCATION turns it into a URI
        values = list(self._fixed)
        values[0] = self._identifier(name, self._some(database))
        values[2] = self._storage.copy(self._some(uri), *self._storage_rest)
        if self._created >= 0:
            values[self._created] = int(time.time() * 1000)
        placeholder = self._placeholder(database, name)
        try:
            self._catalog.createTable(self._tables.apply(*values), True, False)
        finally:
            if placeholder is not None:
                _remove_folder(placeholder)  # where Spark's own delete did not run

    def _placeholder(self, database: str, name: str) -> str | None:
        """The placeholder folder Spark names for ``database.name``, made here, where the
        database's folder is local (None elsewhere, or where it could not be made)."""
        if database not in self._folders:
            uri = self._catalog.getDatabaseMetadata(database).locationUri()
            path = uri.getPath() if uri.getScheme() == "file" else None
            self._folders[database] = path if path and os.path.isdir(path) else None
        folder = self._folders[database]
        if folder is None:
            return None
        placeholder = os.path.join(folder, f"{name}-__PLACEHOLDER__")
        try:
            os.mkdir(placeholder)
        except OSError:  # there already (another job's), or not ours to make: Hive makes it
            return None
        return placeholder


def _remove_folder(path: str) -> None:
    """Remove the empty folder ``path``; nothing where it is gone already."""
    with contextlib.suppress(FileNotFoundError):
        os.rmdir(path)
