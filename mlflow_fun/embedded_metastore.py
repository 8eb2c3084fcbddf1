"""The embedded Derby metastore follows its data dir when the dir is moved or copied.

The metastore under ``<data_dir>/metastore_db`` stores every database's and table's
location as an absolute path. A data dir copied elsewhere would read (and the job would
write) the original's tables, or fail once the original is gone. The metastore keeps the
warehouse it was created with as the ``default`` database's location; when that is not
the data dir's own ``warehouse``, every location under the old one is rewritten to the
same place under the new one, before Spark's Hive client first opens the metastore.

Spark's ``ALTER DATABASE ... SET LOCATION`` is refused by its Hive client ("Hive
metastore does not support altering database location"), so the rewrite goes to the
metastore's tables (``DBS``, ``SDS``, and the ``path`` of datasource tables in
``SERDE_PARAMS``) over JDBC, in the driver JVM, in one transaction.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from mlflow_fun.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

logger = logging.getLogger(__name__)

# (table, column, extra condition): where the Hive schema keeps locations.
_LOCATIONS = (
    ("DBS", "DB_LOCATION_URI", ""),
    ("SDS", "LOCATION", ""),
    ("SERDE_PARAMS", "PARAM_VALUE", " AND PARAM_KEY = 'path'"),
)


def warehouse_location(data_dir: str) -> str:
    """The data dir's warehouse as the metastore writes it: ``file:<absolute path>``."""
    return "file:" + os.path.join(os.path.abspath(data_dir), "warehouse")


def follow_moved_data_dir(spark: SparkSession, data_dir: str) -> str | None:
    """Rewrite the metastore's locations if ``data_dir`` moved since its metastore began.

    Call it before anything asks the catalog (Spark opens the metastore lazily).

    Example:
        >>> follow_moved_data_dir(spark, "/copy/of/data")
        'file:/original/data/warehouse'

    Returns:
        The old warehouse location if the locations were rewritten, else None.

    Raises:
        ConfigError: The metastore cannot be opened (another process holds it).
    """
    metastore = os.path.join(os.path.abspath(data_dir), "metastore_db")
    if not os.path.isdir(metastore):
        return None  # a new data dir: nothing to follow
    from py4j.protocol import Py4JJavaError

    jvm: Any = spark.sparkContext._jvm
    try:
        connection = jvm.java.sql.DriverManager.getConnection(
            f"jdbc:derby:;databaseName={metastore}"
        )
    except Py4JJavaError as e:
        cause = str(e.java_exception.getMessage()).strip().splitlines()[0]
        raise ConfigError(
            f"cannot open the metastore {metastore}: {cause} (is another process, e.g. "
            "`mlflow-fun serve`, using this data dir?)"
        ) from e
    try:
        created = _single_value(
            connection, "SELECT DB_LOCATION_URI FROM DBS WHERE NAME = 'default'"
        )
        new = warehouse_location(data_dir)
        old = (created or new).rstrip("/")
        if old == new:
            return None
        logger.warning("data dir moved: relocating its tables from=%s to=%s", old, new)
        connection.setAutoCommit(False)
        for table, column, condition in _LOCATIONS:
            statement = connection.prepareStatement(
                f"UPDATE {table} SET {column} = CAST(? AS VARCHAR(4000)) || "
                f"SUBSTR({column}, {len(old) + 1}) "
                f"WHERE LOCATE(CAST(? AS VARCHAR(4000)), {column}) = 1{condition}"
            )
            statement.setString(1, new)
            statement.setString(2, old)
            statement.executeUpdate()
            statement.close()
        connection.commit()
        return old
    finally:
        connection.close()


def _single_value(connection: Any, query: str) -> str | None:
    statement = connection.createStatement()
    try:
        rows = statement.executeQuery(query)
        return str(rows.getString(1)) if rows.next() else None
    finally:
        statement.close()
