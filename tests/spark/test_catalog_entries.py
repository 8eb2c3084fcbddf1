"""`register`: a delta-rs table named in one metastore call holds the entry Delta's own
``CREATE TABLE … LOCATION`` stores, and reads the same."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from chispa import assert_df_equality
from pyspark.errors import AnalysisException

from mlflow_fun.catalog import local_path
from mlflow_fun.load import delta_files
from mlflow_fun.load.catalog_entries import CatalogEntries
from mlflow_fun.load.commits import register
from mlflow_fun.load.writer import TableWriter
from tests.spark.conftest import location_of


def _table(data_dir: Path, database: str, name: str) -> str:
    """A Delta table written by delta-rs in the database's folder; its location."""
    location = f"file:{data_dir / 'warehouse' / (database + '.db') / name}"
    rows = pa.table({"run_id": ["r1", "r2"], "_m_rmse": [0.5, 0.25], "_p_a b": ["1", None]})
    delta_files.create(str(local_path(location)), rows)
    return location


def _entry(spark: Any, database: str, name: str) -> list[str]:
    """The table's metastore entry as SHOW TABLE EXTENDED gives it, without what differs
    between two tables by design (name, time, location)."""
    information = spark.sql(f"SHOW TABLE EXTENDED IN {database} LIKE '{name}'").collect()
    lines = str(information[0]["information"]).splitlines()
    varying = ("Table:", "Created Time:", "Location:")
    return [line for line in lines if not line.startswith(varying)]


def test_a_table_named_in_one_call_is_the_one_deltas_create_names(
    spark: Any, data_dir: Path, database: str
) -> None:
    spark.sql(f"CREATE DATABASE {database}")
    entries = CatalogEntries.open(spark)
    assert entries is not None  # Spark 4's classes: the one-call path is the one taken
    ours, deltas = _table(data_dir, database, "ours"), _table(data_dir, database, "d")

    register(spark, database, "ours", ours)
    spark.sql(f"CREATE TABLE {database}.deltas USING DELTA LOCATION '{deltas}'")

    assert _entry(spark, database, "ours") == _entry(spark, database, "deltas")
    assert "Provider: delta" in _entry(spark, database, "ours")
    assert "Partition Provider: Catalog" in _entry(spark, database, "ours")
    assert location_of(spark, f"{database}.ours") == ours.removeprefix("file:")
    assert_df_equality(
        spark.table(f"{database}.ours"), spark.table(f"{database}.deltas"), ignore_row_order=True
    )
    assert spark.table(f"{database}.ours").columns == ["run_id", "_m_rmse", "_p_a b"]


def test_a_name_taken_is_left_as_it_is(spark: Any, data_dir: Path, database: str) -> None:
    spark.sql(f"CREATE DATABASE {database}")
    first, second = _table(data_dir, database, "a"), _table(data_dir, database, "b")

    register(spark, database, "exp_1", first)
    register(spark, database, "exp_1", second)  # as CREATE TABLE IF NOT EXISTS: nothing

    assert location_of(spark, f"{database}.exp_1") == first.removeprefix("file:")


def test_a_refusal_is_sparks_error(spark: Any, data_dir: Path, database: str) -> None:
    location = _table(data_dir, database, "exp_1")  # its database never created

    with pytest.raises(AnalysisException, match=f"`{database}`"):
        register(spark, database, "exp_1", location)


def test_a_location_with_a_space_is_stored_as_sqls_location_stores_it(
    spark: Any, data_dir: Path, database: str
) -> None:
    spark.sql(f"CREATE DATABASE {database}")
    location = _table(data_dir, database, "a folder")
    entries = CatalogEntries.open(spark)
    assert entries is not None

    entries.create(database, "ours", location)  # the one call alone, no statement after it
    spark.sql(f"CREATE TABLE {database}.deltas USING DELTA LOCATION '{location}'")

    assert location_of(spark, f"{database}.ours") == location_of(spark, f"{database}.deltas")
    assert spark.table(f"{database}.ours").count() == 2


def test_the_placeholder_spark_names_is_made_here_and_left_nowhere(
    spark: Any, data_dir: Path, database: str
) -> None:
    spark.sql(f"CREATE DATABASE {database}")
    folder = data_dir / "warehouse" / f"{database}.db"
    entries = CatalogEntries.open(spark)
    assert entries is not None
    first, second = _table(data_dir, database, "exp_1"), _table(data_dir, database, "exp_2")
    (folder / "exp_2-__PLACEHOLDER__").mkdir()  # as another job's registration leaves it

    entries.create(database, "exp_1", first)
    entries.create(database, "exp_2", second)
    entries.create(database, "exp_1", second)  # the name taken: nothing

    assert sorted(path.name for path in folder.iterdir()) == ["exp_1", "exp_2"]
    assert location_of(spark, f"{database}.exp_2") == second.removeprefix("file:")
    assert spark.table(f"{database}.exp_1").count() == 2


def test_a_rebuild_reads_the_tables_locations_ahead_by_name_pattern(
    spark: Any, data_dir: Path, database: str
) -> None:
    spark.sql(f"CREATE DATABASE {database}")
    names = [f"exp_{i}" for i in range(1, 21)]  # two chunks: 16 names, then 4
    for name in names:
        register(spark, database, name, _table(data_dir, database, name))
    writer = TableWriter(spark, database, str(data_dir), "delta")

    writer.read_locations_ahead([*reversed(names), "exp_99"])  # exp_99: no such table

    for name in names:
        found = writer._table_dir(name) or ""
        assert found.removeprefix("file:") == location_of(spark, f"{database}.{name}"), name
    assert writer._table_dir("exp_99") is None
    assert writer.schema("exp_3").fieldNames() == ["run_id", "_m_rmse", "_p_a b"]
    writer.stop_reading_ahead()
