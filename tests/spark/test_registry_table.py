"""`write_model_versions`: an empty registry, NULLs, and a Parquet table replaced whole."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from mlflow_fun.extract.registry import ModelVersionRecord
from mlflow_fun.load.registry import write_model_versions
from mlflow_fun.load.writer import TableWriter

BARE = ModelVersionRecord("m", 3, None, None, None, None, None, ())
FULL = ModelVersionRecord(
    "m", 4, "r1", "m-1", "runs:/r1/model", "READY", "None", ("a", "b"), {"k": "v"}, 1000, 2500, ""
)


@pytest.mark.parametrize("table_format", ["delta", "parquet"])
def test_empty_then_rows_then_fewer_rows(
    spark: Any, data_dir: Path, database: str, table_format: str
) -> None:
    TableWriter(spark, database, str(data_dir), table_format).create_database()
    table = f"{database}.model_versions"

    write_model_versions(spark, database, [], table_format)
    assert spark.table(table).count() == 0
    assert spark.table(table).schema.simpleString() == (
        "struct<name:string,version:int,run_id:string,model_id:string,source:string,"
        "status:string,current_stage:string,aliases:array<string>,tags:map<string,string>,"
        "creation_time:timestamp,last_updated_time:timestamp,description:string>"
    )

    write_model_versions(spark, database, [BARE, FULL], table_format)
    rows = spark.sql(
        f"select *, unix_millis(creation_time) as c, unix_millis(last_updated_time) as u "
        f"from {table} order by version"
    ).collect()
    assert [(r["c"], r["u"]) for r in rows] == [(None, None), (1000, 2500)]
    bare, full = (r.asDict() for r in rows)
    assert {k: v for k, v in bare.items() if v is not None} == {
        "name": "m",
        "version": 3,
        "aliases": [],
        "tags": {},
    }
    assert (full["run_id"], full["model_id"], full["aliases"], full["tags"]) == (
        "r1",
        "m-1",
        ["a", "b"],
        {"k": "v"},
    )
    assert isinstance(full["creation_time"], dt.datetime)

    write_model_versions(spark, database, [FULL], table_format)
    assert [r["version"] for r in spark.table(table).collect()] == [4]
