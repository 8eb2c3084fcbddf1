"""Whole-table replaces of the experiment tables, and the side tables' commits, through
delta-rs (``deltalake``).

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
    >>> path = catalog.local_path("file:/srv/mlflow-fun/warehouse/mlflow_metrics.db/exp_1")
    >>> if path and writable(path):
    ...     overwrite(path, to_arrow(flat))
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mlflow_fun.catalog import DELTA_LOG, is_delta
from mlflow_fun.load.log_files import after_commit, checksum, column_values, plain_protocol

# deltalake, pyspark: imported inside the functions (the optional [spark] extra, loaded to write).
if TYPE_CHECKING:
    import pyarrow as pa
    from deltalake import DeltaTable
    from deltalake.table import ProtocolVersions
    from pyspark.sql.types import StructType

_COMMIT = re.compile(r"[0-9]{20}\.json")  # a commit file of the log

# A MERGE rewrites a file holding a matched row through a join that holds the file: 1,200
# changed runs in a 400,000-row file of a 1.2 million-run ``runs`` table took 990 MiB and
# 1.8 s; replacing those keys' rows (an overwrite with a predicate, one commit) streams it:
# 350 MiB, 1.0 s. The commit keeps the predicate, so up to this many keys; MERGE beyond.
REPLACE_KEYS_MAX = 5_000
# A writer holds a Parquet row group until it is full (a million rows by default: every
# file whole); the same replace with this many rows a group: 230 MiB.
ROW_GROUP_ROWS = 65_536


def writable(path: str) -> bool:
    """True if delta-rs may replace the table at ``path`` the way Spark would.

    A Delta table: its protocol is reader 1 and writer 2 at most, with no table features.
    No Delta log: the folder is absent or empty (else it holds something else, e.g. a
    Parquet table's files, left to Spark and its errors). The protocol is read from the
    latest version's checksum file where there is one (Spark's and ours), else from the
    loaded log.
    """
    if not is_delta(path):
        return not os.path.exists(path) or not os.listdir(path)
    logged = _latest_checksum(path).get("protocol")
    if isinstance(logged, dict):  # a file read, where loading the table takes 8-17 ms
        return plain_protocol(logged)
    from deltalake import DeltaTable

    return plain_protocol(_as_logged(DeltaTable(path).protocol()))


def _latest_checksum(path: str) -> dict[str, dict[str, object]]:
    """The checksum file of the table's latest commit, or {} when that commit has none
    (written by a tool that writes none, or its file not yet renamed into place)."""
    log = os.path.join(path, DELTA_LOG)
    versions = [int(name[:20]) for name in os.listdir(log) if _COMMIT.fullmatch(name)]
    return checksum(log, max(versions)) if versions else {}


def _as_logged(protocol: ProtocolVersions) -> dict[str, object]:
    """delta-rs's view of a protocol as the log's ``protocol`` action writes it."""
    return {
        "minReaderVersion": protocol.min_reader_version,
        "minWriterVersion": protocol.min_writer_version,
        "readerFeatures": protocol.reader_features,
        "writerFeatures": protocol.writer_features,
    }


def _opened(path: str) -> DeltaTable | None:
    """The Delta table at ``path``, loaded once for a write and its checksum; None when
    there is none yet (the write creates it)."""
    from deltalake import DeltaTable

    return DeltaTable(path) if is_delta(path) else None


def spark_schema(path: str) -> StructType:
    """The Spark schema of the Delta table at ``path`` (the Delta protocol keeps the
    schema in Spark's JSON form: names, types, nullability, metadata).

    Read from the latest version's checksum file where it has the table's metadata, as
    Spark does (0.3 ms), else from the log loaded by delta-rs (10 ms a table).
    """
    from pyspark.sql.types import StructType

    metadata = _latest_checksum(path).get("metadata")
    logged = metadata.get("schemaString") if isinstance(metadata, dict) else None
    if not isinstance(logged, str):
        from deltalake import DeltaTable

        logged = DeltaTable(path).schema().to_json()
    return StructType.fromJson(json.loads(logged))


def shape(path: str) -> tuple[int, int] | None:
    """Rows and columns of the Delta table at ``path``, from its log (each data file's
    record count), or None when the log cannot say (a file without its count, or table
    features such as deletion vectors, whose files' counts include deleted rows)."""
    from deltalake import DeltaTable

    table = DeltaTable(path)  # one read of the log: its protocol, files and schema
    if not plain_protocol(_as_logged(table.protocol())):
        return None
    counts = column_values(table.get_add_actions(flatten=True), "num_records")
    if any(count is None for count in counts):
        return None
    return sum(counts), len(table.schema().fields)


def overwrite(path: str, table: pa.Table) -> None:
    """Replace the table at ``path`` by ``table`` in one commit (its schema is the new
    one), then what Spark writes beside a commit (`log_files.after_commit`).

    Raises:
        deltalake.exceptions.CommitFailedError: Another writer's commit conflicted
            (`mlflow_fun.load.commits.committed` retries it).
    """
    from deltalake import write_deltalake

    delta = _opened(path)
    write_deltalake(
        delta or path, table, mode="overwrite", schema_mode="overwrite", **_writer_options()
    )
    after_commit(path, delta)


def create(path: str, table: pa.Table) -> None:
    """Create a Delta table at ``path`` holding ``table`` in one commit, then its checksum
    file; a table already there is an error, as for Spark's ``saveAsTable``.

    Raises:
        deltalake.exceptions.DeltaError: A table is there already.
    """
    from deltalake import write_deltalake

    write_deltalake(path, table, mode="error", **_writer_options())
    after_commit(path)


def replace_where(
    path: str, table: pa.Table, column: str, values: Sequence[str], new_columns: bool = False
) -> None:
    """Replace the rows whose ``column`` is one of ``values`` by ``table`` (one commit, as
    Spark's ``replaceWhere``), then its `after_commit` files. The values must be `plain`.
    ``new_columns``: ``table`` ends with columns the table lacks, added to its schema
    (NULL in the rows kept).

    Raises:
        deltalake.exceptions.CommitFailedError: Another writer's commit conflicted.
    """
    from deltalake import write_deltalake

    delta = _opened(path)
    predicate = _one_of(column, values)
    write_deltalake(
        delta or path,
        table,
        mode="overwrite",
        predicate=predicate,
        schema_mode="merge" if new_columns else None,
        **_writer_options(),
    )
    after_commit(path, delta)


def delete_where(path: str, column: str, values: Sequence[str]) -> None:
    """Delete the rows whose ``column`` is one of ``values`` (`plain`) in one commit, then
    its `after_commit` files; no commit when no row matches (as Spark's DELETE).

    Raises:
        deltalake.exceptions.CommitFailedError: Another writer's commit conflicted.
    """
    from deltalake import DeltaTable

    delta = DeltaTable(path)
    if delta.delete(_one_of(column, values))["num_deleted_rows"]:
        after_commit(path, delta)


def _one_of(column: str, values: Sequence[str]) -> str:
    """The delta-rs predicate ``column IN ('a', 'b')``; the values must be `plain`."""
    literals = ", ".join(f"'{_plain_value(v)}'" for v in values)
    return f"{_plain_value(column)} IN ({literals})"


def upsert(path: str, table: pa.Table, keys: Sequence[str], new_columns: bool = False) -> None:
    """MERGE ``table`` into the table at ``path`` by ``keys``: update the rows that match,
    insert the others (one commit), then its `after_commit` files. ``new_columns``:
    ``table`` ends with columns the table lacks, added to its schema (NULL in the rows the
    MERGE leaves).

    One key whose values in ``table`` are distinct and `plain` (`REPLACE_KEYS_MAX` at
    most) is written by `replace_where`: the same rows, in less memory.

    Raises:
        deltalake.exceptions.CommitFailedError: Another writer's commit conflicted.
    """
    from deltalake import DeltaTable

    values = _replaceable(table, keys)
    if values is not None:
        replace_where(path, table, keys[0], values, new_columns)
        return
    condition = " AND ".join(f"t.{_plain_value(k)} = s.{k}" for k in keys)
    delta = DeltaTable(path)
    merger = delta.merge(
        table,
        condition,
        source_alias="s",
        target_alias="t",
        merge_schema=new_columns,
        **_writer_options(),
    )
    merger.when_matched_update_all().when_not_matched_insert_all().execute()
    after_commit(path, delta)


def insert_new(path: str, table: pa.Table, keys: Sequence[str]) -> None:
    """Insert the rows of ``table`` that the table at ``path`` does not hold yet, by
    ``keys`` compared NULL-safe (NULL matches NULL, NaN matches NaN and 0.0 matches -0.0,
    as Spark's ``<=>``), in one commit (none when every row is there), then its
    `after_commit` files.

    Raises:
        deltalake.exceptions.CommitFailedError: Another writer's commit conflicted.
    """
    from deltalake import DeltaTable

    condition = " AND ".join(
        f"(t.{_plain_value(k)} IS NOT DISTINCT FROM s.{_plain_value(k)})" for k in keys
    )
    delta = DeltaTable(path)
    merger = delta.merge(table, condition, source_alias="s", target_alias="t", **_writer_options())
    if merger.when_not_matched_insert_all().execute()["num_target_rows_inserted"]:
        after_commit(path, delta)


def append(path: str, table: pa.Table) -> None:
    """Append ``table`` to the table at ``path`` (one commit), then its `after_commit` files."""
    from deltalake import write_deltalake

    delta = _opened(path)
    write_deltalake(delta or path, table, mode="append", **_writer_options())
    after_commit(path, delta)


def _replaceable(table: pa.Table, keys: Sequence[str]) -> list[str] | None:
    """The values of ``table``'s one key when a `replace_where` of them is its MERGE."""
    if len(keys) != 1 or not 0 < table.num_rows <= REPLACE_KEYS_MAX:
        return None
    values = table.column(keys[0]).to_pylist()
    if len(set(values)) < len(values) or not all(isinstance(v, str) and plain(v) for v in values):
        return None
    return values


def _writer_options() -> dict[str, Any]:
    from deltalake import WriterProperties  # the optional Rust extension, as above

    return {"writer_properties": WriterProperties(max_row_group_size=ROW_GROUP_ROWS)}


def read(path: str) -> pa.Table:
    """The rows of the Delta table at ``path``, as an Arrow table."""
    from deltalake import DeltaTable

    return DeltaTable(path).to_pyarrow_table()


def has_schema(path: str, schema: StructType) -> bool:
    """True if the Delta table at ``path`` has exactly Spark's ``schema`` (names, types,
    nullability, metadata): delta-rs appends and MERGEs rows of it without evolving it."""
    return spark_schema(path) == schema


def plain(value: str) -> bool:
    """True if ``value`` may stand in a delta-rs predicate as is: letters, digits, ``_``
    and ``-`` (experiment ids, column names). Anything else is left to Spark's SQL.

    Example:
        >>> plain("12"), plain("it's")
        (True, False)
    """
    return bool(value) and all(c.isascii() and (c.isalnum() or c in "_-") for c in value)


def _plain_value(value: str) -> str:
    if not plain(value):
        raise ValueError(f"{value!r} may not stand in a delta-rs predicate")
    return value


def conformed(tables: Sequence[pa.Table], schema: StructType) -> pa.Table:
    """Same-shaped Arrow ``tables`` as one table of Spark's ``schema`` (its column order
    and types, timestamps in UTC: what Spark would write)."""
    import pyarrow as pa
    from pyspark.sql.pandas.types import to_arrow_schema

    arrow = to_arrow_schema(schema, timezone="UTC")
    return pa.concat_tables(tables).select(arrow.names).cast(arrow)


def rows_table(rows: Sequence[Sequence[Any]], schema: StructType) -> pa.Table:
    """Rows (values in the order of Spark's ``schema``) as an Arrow table of it."""
    import pyarrow as pa
    from pyspark.sql.pandas.types import to_arrow_schema

    arrow = to_arrow_schema(schema, timezone="UTC")
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in arrow]
    arrays = [pa.array(list(c), type=f.type) for c, f in zip(columns, arrow, strict=True)]
    return pa.table(arrays, schema=arrow)


def delta_rs_errors() -> tuple[type[Exception], ...]:
    """Every error delta-rs raises (none where ``deltalake`` is not installed)."""
    try:
        from deltalake.exceptions import DeltaError
    except ImportError:
        return ()
    return (DeltaError,)


def conflict_errors() -> tuple[type[Exception], ...]:
    """The errors of a commit that lost to another writer's (worth retrying)."""
    from deltalake.exceptions import CommitFailedError

    return (CommitFailedError,)
