"""The job's Delta tables read without a JVM: delta-rs (``deltalake``) into pandas.

A best-run query over the tables answers in milliseconds; starting Spark for it takes
10-30 s. Under the embedded default (``--data_dir DIR``) the job writes every table of
database ``DB`` under ``DIR/warehouse/DB.db/<table>``, which is where these functions
look. A table that is not there as Delta (Parquet tables, a metastore of its own, another
location), or that delta-rs does not read (a table feature it lacks, such as deletion
vectors), is a `TableNotLocalError`: the caller asks Spark instead, so the metastore still
decides where every other table lives.

Example:
    >>> df = read_experiment_frame(".demo/data", "mlflow_metrics", "1")
    >>> best_runs(df, parse_order_by("rmse"))
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from mlflow_fun.catalog import is_delta
from mlflow_fun.errors import ExperimentNotFoundError, MlflowFunError, one_line
from mlflow_fun.transform.frames import arrow_to_pandas
from mlflow_fun.transform.naming import STATUS_TABLE, ColumnKey, validate_identifier

# deltalake: imported inside the functions that read a table (a Rust extension, loaded only then).
if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    from deltalake import DeltaTable


_KIND, _KEY = "mlflow_kind", "mlflow_key"


class TableNotLocalError(MlflowFunError):
    """A table is not a Delta table under the data dir; Spark's metastore has to answer."""


class UnreadableTableError(TableNotLocalError):
    """The Delta table is there, but delta-rs does not read it; Spark has to."""


# Reader features delta-rs reads as Spark does; a table with any other is left to Spark.
READ_FEATURES = frozenset({"timestampNtz"})


@contextlib.contextmanager
def delta_rs_reading(path: str) -> Iterator[None]:
    """Turn delta-rs's failure to read the table at ``path`` into `UnreadableTableError`.

    Raises:
        UnreadableTableError: delta-rs failed (a reader feature it lacks, a log it cannot
            read); Spark reads the table and gives its own error if there is one.
    """
    from deltalake.exceptions import DeltaError

    try:
        yield
    except DeltaError as e:
        raise UnreadableTableError(f"delta-rs does not read {path}: {one_line(e)}") from e


def open_delta(path: str) -> DeltaTable:
    """The Delta table at ``path``, opened by delta-rs where it reads it as Spark does.

    delta-rs checks reader features only from reader version 3 on: a table with column
    mapping (reader 2, ``delta.columnMapping.mode``, what a renamed or dropped column
    leaves) opens, and its columns read as NULL. Such a table is refused here.

    Raises:
        UnreadableTableError: delta-rs does not read the table as Spark does.
    """
    from deltalake import DeltaTable

    with delta_rs_reading(path):
        table = DeltaTable(path)
        protocol = table.protocol()
        mapping = table.metadata().configuration.get("delta.columnMapping.mode", "none")
    features = set(protocol.reader_features or ())
    if mapping != "none":
        reason = f"column mapping mode {mapping}"
    elif protocol.min_reader_version not in (1, 3) or not features <= READ_FEATURES:
        reason = f"reader version {protocol.min_reader_version}, features {sorted(features)}"
    else:
        return table
    raise UnreadableTableError(f"delta-rs does not read {path} as Spark does: {reason}")


def database_dir(data_dir: str, database: str) -> str:
    """``DIR/warehouse/<database>.db``, where the job puts the database's tables."""
    validate_identifier(database, "database")
    return os.path.join(os.path.abspath(data_dir), "warehouse", f"{database}.db")


def table_path(data_dir: str, database: str, table: str) -> str:
    """The Delta table's folder.

    Raises:
        TableNotLocalError: There is no Delta table there.
    """
    path = os.path.join(database_dir(data_dir, database), validate_identifier(table, "table"))
    if not is_delta(path):
        raise TableNotLocalError(f"no Delta table {database}.{table} under {data_dir}")
    return path


def read_table(data_dir: str, database: str, table: str, **options: Any) -> pa.Table:
    """``<database>.<table>`` under ``data_dir`` as Arrow, read by delta-rs (``options``:
    ``DeltaTable.to_pyarrow_table``'s, e.g. ``columns`` and ``filters``).

    Raises:
        TableNotLocalError: No Delta table there.
        UnreadableTableError: One delta-rs does not read (`open_delta`).
    """
    path = table_path(data_dir, database, table)
    delta = open_delta(path)
    with delta_rs_reading(path):
        return delta.to_pyarrow_table(**options)


def read_experiment_frame(data_dir: str, database: str, experiment_id: str) -> pd.DataFrame:
    """``<database>.exp_<experiment_id>`` as pandas, typed as `PandasDataframeBuilder`'s.

    ``df.attrs["mlflow_keys"]`` maps each metric, param and tag column to its
    ``(kind, MLflow key)``, as the job stored them in the columns' metadata.

    Raises:
        TableNotLocalError: The table is not a Delta table under ``data_dir``.
        UnreadableTableError: delta-rs does not read it (`open_delta`).
    """
    return LocalExperimentTable(table_path(data_dir, database, f"exp_{experiment_id}")).frame()


class LocalExperimentTable:
    """An experiment table in a local Delta folder: its log read, its rows not yet.

    Example:
        >>> table = LocalExperimentTable("/srv/warehouse/mlflow_metrics.db/exp_1")
        >>> table.keys["_m_train_loss"]
        ('metric', 'train/loss')
        >>> table.frame(["run_id", "_m_train_loss"])
    """

    def __init__(self, path: str) -> None:
        """Raises:
        UnreadableTableError: delta-rs does not read the table (`open_delta`)."""
        self.path = path
        self._table = open_delta(path)
        # column -> (kind, MLflow key) of every metric, param and tag column
        self.keys: dict[str, ColumnKey] = {
            field.name: (field.metadata[_KIND], field.metadata.get(_KEY, field.name))
            for field in self._table.schema().fields
            if field.metadata.get(_KIND) not in (None, "info")
        }

    def frame(self, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """The rows as pandas (only ``columns`` where given), ``attrs["mlflow_keys"]`` set
        as in `read_experiment_frame`."""
        with delta_rs_reading(self.path):
            table = self._table.to_pyarrow_table(columns=None if columns is None else list(columns))
        df = arrow_to_pandas(table)
        df.attrs["mlflow_keys"] = dict(self.keys)
        return df


def loaded_experiment_ids(data_dir: str, database: str) -> list[str]:
    """Ids of every experiment with a Delta table ``exp_<id>``, sorted as Spark lists them.

    Raises:
        TableNotLocalError: The database folder does not exist.
    """
    folder = database_dir(data_dir, database)
    if not os.path.isdir(folder):
        raise TableNotLocalError(f"no database folder {folder}")
    names = [
        name
        for name in os.listdir(folder)
        if name.startswith("exp_") and len(name) > 4
        if is_delta(os.path.join(folder, name))
    ]
    return sorted(name[4:] for name in names)


def experiment_id_by_name(data_dir: str, database: str, name: str) -> str:
    """The id of the experiment called ``name``, from the latest successful job run.

    Raises:
        TableNotLocalError: The status table is not a Delta table under ``data_dir``.
        ExperimentNotFoundError: No table was built from an experiment of that name.
    """
    status = read_table(
        data_dir,
        database,
        STATUS_TABLE,
        columns=["experiment_id", "experiment_name", "status", "refreshed_at"],
    )
    rows = [
        row
        for row in status.to_pylist()
        if row["experiment_name"] == name and row["status"] == "ok"
    ]
    if not rows:
        raise ExperimentNotFoundError(
            f"no table in {database!r} was built from an experiment named {name!r}"
        )
    return str(max(rows, key=lambda row: row["refreshed_at"])["experiment_id"])
