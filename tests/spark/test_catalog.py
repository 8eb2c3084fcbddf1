"""`mlflow_fun.catalog` asks Spark's session catalog, not SQL statements: the same answers
as ``SHOW TABLES``, ``SHOW TABLE EXTENDED``, ``DESCRIBE DATABASE`` and
``spark.catalog.tableExists`` give, over a Delta table, a Parquet table, a view and a
temporary view of the same pattern."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pyspark.errors import AnalysisException

from mlflow_fun import catalog
from mlflow_fun.load import delta_files


@pytest.fixture
def tables(spark: Any, data_dir: Path, database: str) -> str:
    """``database`` with exp_1 (Delta, written by delta-rs, named in the metastore),
    exp_2 (Parquet), exp_view (a view with a property) and a temporary view exp_temp."""
    folder = data_dir / "warehouse" / f"{database}.db"
    spark.sql(f"CREATE DATABASE {database} LOCATION '{folder}'")
    delta_files.create(str(folder / "exp_1"), pa.table({"run_id": ["r1"], "_m_rmse": [0.5]}))
    spark.sql(f"CREATE TABLE {database}.exp_1 USING DELTA LOCATION '{folder / 'exp_1'}'")
    spark.sql(f"CREATE TABLE {database}.exp_2 (run_id STRING) USING PARQUET")
    spark.sql(
        f"CREATE VIEW {database}.exp_view TBLPROPERTIES ('mark' = 'x') AS "
        f"SELECT run_id FROM {database}.exp_1"
    )
    spark.sql("CREATE OR REPLACE TEMPORARY VIEW exp_temp AS SELECT 1 AS one")
    return database


def _statement(spark: Any, database: str, pattern: str) -> dict[str, list[str]]:
    rows = spark.sql(f"SHOW TABLE EXTENDED IN {database} LIKE '{pattern}'").collect()
    return {
        r["tableName"]: str(r["information"]).splitlines() for r in rows if not r["isTemporary"]
    }


_READ = ("Table: ", "Type: ", "Provider: ", "Location: ", "Table Properties: ")  # lines used


@pytest.mark.parametrize("pattern", ["*", "exp_1|exp_view", "exp_2", "nothing"])
def test_table_information_gives_the_statements_lines(
    spark: Any, tables: str, pattern: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(catalog, "_BATCH", 2)  # three tables: two calls for their entries
    fast = catalog.table_information(spark, tables, pattern)
    statement = _statement(spark, tables, pattern)
    assert sorted(fast) == sorted(statement)
    for name in statement:
        assert [x for x in fast[name] if x.startswith(_READ)] == [
            x for x in statement[name] if x.startswith(_READ)
        ]
    if pattern == "*":
        assert sorted(fast) == ["exp_1", "exp_2", "exp_view"]  # not the temporary view
        assert catalog.provider_of(fast["exp_1"]) == "delta"
        location = f"{catalog.database_location(spark, tables)}/exp_1"
        assert catalog.location_of(fast["exp_1"]) == location
        # Read from the session catalog's entries (a statement's also name the catalog).
        assert statement["exp_1"][0] == "Catalog: spark_catalog" != fast["exp_1"][0]
        assert any("mark=x" in x for x in fast["exp_view"] if x.startswith("Table Properties: "))


def test_names_existence_and_location_are_the_statements(spark: Any, tables: str) -> None:
    rows = spark.sql(f"SHOW TABLES IN {tables}").collect()
    assert (
        catalog.table_names(spark, tables)
        == {r["tableName"] for r in rows if not r["isTemporary"]}
        == {"exp_1", "exp_2", "exp_view"}
    )
    assert catalog.table_names(spark, "no_such_database") == frozenset()
    info = {r[0]: r[1] for r in spark.sql(f"DESCRIBE DATABASE {tables}").collect()}
    assert catalog.database_location(spark, tables) == info["Location"]
    for name in ("exp_1", "exp_2", "exp_view", "exp_temp", "missing"):
        expected = spark.catalog.tableExists(f"{tables}.{name}")
        assert catalog.table_exists(spark, tables, name) is expected, name
    assert catalog.table_exists(spark, tables, "EXP_1")  # the metastore's names: any case
    assert not catalog.table_exists(spark, "no_such_database", "exp_1")
    assert catalog.database_exists(spark, tables)
    assert not catalog.database_exists(spark, "no_such_database")


def test_a_missing_database_is_sparks_error(spark: Any) -> None:
    with pytest.raises(AnalysisException, match="no_such_database"):
        catalog.table_information(spark, "no_such_database", "*")
