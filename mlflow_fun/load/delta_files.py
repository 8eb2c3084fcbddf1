"""Whole-table replaces of the experiment tables through delta-rs (``deltalake``).

A full refresh replaces an experiment's Delta table in one commit. Through Spark that
commit costs half a second or more even for a table of four runs (a Spark job, a snapshot,
the catalog); delta-rs writes the same Arrow table in the same one commit in a few
milliseconds, and Spark's catalog is asked only to register a new table (about 0.1 s).
With hundreds of small experiments that fixed cost was most of a build.

Taken only where delta-rs writes what Spark would: a table on the local file system
(``file:``) that is a Delta table whose protocol delta-rs writes (reader 1, writer 2 at
most, no table features: what Spark gives a new table here), or a new table whose folder
is absent or empty. Anything else (HDFS, S3, DBFS, newer table features, Parquet) is
written by Spark, as before.

Example:
    >>> path = local_path("file:/srv/mlflow-fun/warehouse/mlflow_metrics.db/exp_1")
    >>> if path and writable(path):
    ...     overwrite(path, to_arrow(flat))
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

# deltalake, pyspark: imported inside the functions (the job's optional [spark] extra, and a
# Rust extension loaded only when the job writes).
if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql.types import StructType

_LOG = "_delta_log"


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


def writable(path: str) -> bool:
    """True if delta-rs may replace the table at ``path`` the way Spark would.

    A Delta table: its protocol is reader 1 and writer 2 at most, with no table features.
    No Delta log: the folder is absent or empty (else it holds something else, e.g. a
    Parquet table's files, left to Spark and its errors).
    """
    if not is_delta(path):
        return not os.path.exists(path) or not os.listdir(path)
    from deltalake import DeltaTable

    protocol = DeltaTable(path).protocol()
    return (
        protocol.min_reader_version == 1
        and protocol.min_writer_version <= 2
        and not protocol.reader_features
        and not protocol.writer_features
    )


def is_delta(path: str) -> bool:
    """True if ``path`` holds a Delta table (a ``_delta_log`` folder)."""
    return os.path.isdir(os.path.join(path, _LOG))


def spark_schema(path: str) -> StructType:
    """The Spark schema of the Delta table at ``path``, read from its log (the Delta
    protocol keeps the schema in Spark's JSON form: names, types, nullability, metadata)."""
    from deltalake import DeltaTable
    from pyspark.sql.types import StructType

    return StructType.fromJson(json.loads(DeltaTable(path).schema().to_json()))


def shape(path: str) -> tuple[int, int] | None:
    """Rows and columns of the Delta table at ``path``, from its log (each data file's
    record count), or None when the log cannot say (a file without its count, or table
    features such as deletion vectors, whose files' counts include deleted rows)."""
    import pyarrow as pa
    from deltalake import DeltaTable

    if not writable(path):
        return None
    table = DeltaTable(path)
    counts = pa.table(table.get_add_actions(flatten=True)).column("num_records").to_pylist()
    if any(count is None for count in counts):
        return None
    return sum(counts), len(table.schema().fields)


def overwrite(path: str, table: pa.Table) -> None:
    """Replace the table at ``path`` by ``table`` in one commit (its schema is the new one).

    Raises:
        deltalake.exceptions.CommitFailedError: Another writer's commit conflicted
            (`mlflow_fun.load.commits.committed` retries it).
    """
    from deltalake import write_deltalake

    write_deltalake(path, table, mode="overwrite", schema_mode="overwrite")


def conflict_errors() -> tuple[type[Exception], ...]:
    """The errors of a commit that lost to another writer's (worth retrying)."""
    from deltalake.exceptions import CommitFailedError

    return (CommitFailedError,)
