"""`TableWriter`: replace and MERGE a table, Parquet swaps, side rows, status rows."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from chispa import assert_df_equality
from pyspark.sql import types as T

from mlflow_fun.extract.incremental import FULL, INCREMENTAL, RefreshState
from mlflow_fun.load.commits import write_states
from mlflow_fun.load.plan import names_by_key
from mlflow_fun.load.results import ExperimentResult, status_row
from mlflow_fun.load.side_batch import SideBatch
from mlflow_fun.load.side_tables import read_states, state_schema
from mlflow_fun.load.writer import TableWriter
from mlflow_fun.model import Experiment
from mlflow_fun.transform.flatten import flatten_runs
from tests.spark.conftest import engines_of, location_of, make_run

SCHEMA = T.StructType(
    [T.StructField("run_id", T.StringType()), T.StructField("_m_rmse", T.DoubleType())]
)
WIDER = T.StructType([*SCHEMA.fields, T.StructField("_p_beta", T.IntegerType())])


def test_replace_then_merge_updates_inserts_and_adds_columns(
    spark: Any, data_dir: Path, database: str
) -> None:
    writer = TableWriter(spark, database, str(data_dir), "delta")
    writer.create_database()
    writer.replace("exp_1", spark.createDataFrame([("r1", 0.5), ("r2", 0.7)], SCHEMA))
    existing = writer.existing_schema("exp_1")
    assert existing is not None and existing.fieldNames() == ["run_id", "_m_rmse"]
    changed = spark.createDataFrame([("r2", 0.6, 3), ("r3", 0.9, 4)], WIDER)

    assert writer.merge("exp_1", changed, existing) == (3, 3)

    expected = spark.createDataFrame([("r1", 0.5, None), ("r2", 0.6, 3), ("r3", 0.9, 4)], WIDER)
    table = spark.table(f"{database}.exp_1").orderBy("run_id")
    assert_df_equality(table, expected, ignore_nullable=True)
    location = spark.sql(f"DESCRIBE DATABASE {database}").collect()
    assert any(str(data_dir / "warehouse") in str(row[1]) for row in location)
    assert writer.existing_schema("exp_9") is None


def test_merge_runs_is_delta_rs_with_or_without_new_columns(
    spark: Any, data_dir: Path, database: str
) -> None:
    writer = TableWriter(spark, database, str(data_dir), "delta")
    writer.create_database()
    runs = [make_run(r, "4", t, {"rmse": 0.5}, {"alpha": "1"}) for r, t in (("a", 1), ("b", 2))]
    writer.replace_runs("exp_4", flatten_runs([*runs, make_run("c", "4", 3, {"acc": 0.1})]), False)
    existing = writer.existing_schema("exp_4")
    assert existing is not None
    names = names_by_key(existing)
    changed = flatten_runs([make_run("b", "4", 2, {"rmse": 0.4}, {"alpha": "2"}),
                            make_run("d", "4", 4, {"rmse": 0.3})], names)  # fmt: skip

    assert writer.merge_runs("exp_4", changed, existing, deleted=["c", "gone"]) == (3, 13)
    assert writer.merge_runs("exp_4", None, existing, deleted=["gone"]) == (3, 13)  # no commit
    table = spark.table(f"{database}.exp_4")
    assert table.schema == existing  # names, types, comments, MLflow keys: unchanged
    rows = {r["run_id"]: (r["_m_rmse"], r["_p_alpha"], r["_m_acc"]) for r in table.collect()}
    assert rows == {"a": (0.5, 1, None), "b": (0.4, 2, None), "d": (0.3, None, None)}

    # New keys: new columns at the end, with their comments and MLflow keys; the table's
    # columns keep theirs. A run that had a value and no longer has it: NULL. (A run id
    # that is not `plain` takes delta-rs's MERGE instead of its replaceWhere.)
    wider = flatten_runs(
        [make_run("e", "4", 5, {"loss": 0.2}, {"beta.x": "b"}), make_run("b", "4", 2, {}),
         make_run("it's", "4", 6, {"rmse": 0.1})], names,
    )  # fmt: skip
    assert writer.merge_runs("exp_4", wider, existing) == (5, 15)
    table = spark.table(f"{database}.exp_4")
    assert table.schema.fields[:13] == existing.fields
    added = {f.name: (f.dataType.simpleString(), f.metadata) for f in table.schema.fields[13:]}
    assert added == {
        "_m_loss": ("double", {"comment": "loss", "mlflow_key": "loss", "mlflow_kind": "metric"}),
        "_p_beta_x": (
            "string", {"comment": "beta.x", "mlflow_key": "beta.x", "mlflow_kind": "param"}
        ),
    }  # fmt: skip
    rows = {r["run_id"]: (r["_m_rmse"], r["_m_loss"], r["_p_beta_x"]) for r in table.collect()}
    assert rows == {
        "a": (0.5, None, None), "b": (None, None, None), "d": (0.3, None, None),
        "e": (None, 0.2, "b"), "it's": (0.1, None, None),
    }  # fmt: skip
    # A run id a delta-rs predicate cannot hold as is: Spark's DELETE.
    assert writer.merge_runs("exp_4", None, table.schema, deleted=["it's"]) == (4, 15)
    assert engines_of(spark, f"{database}.exp_4") == ["delta-rs"] * 4 + ["spark"]


def test_an_existing_delta_table_is_replaced_at_its_location_in_one_commit(
    spark: Any, data_dir: Path, database: str
) -> None:
    writer = TableWriter(spark, database, str(data_dir), "delta")
    writer.create_database()
    writer.replace("exp_3", spark.createDataFrame([("r1", 0.5), ("r2", 0.7)], SCHEMA))
    location = location_of(spark, f"{database}.exp_3")
    wider = spark.createDataFrame([("r3", 0.1, 7)], WIDER)
    narrower = T.StructType([SCHEMA.fields[0], T.StructField("_m_acc", T.DoubleType())])

    writer.replace("exp_3", wider, exists=True)
    assert_df_equality(spark.table(f"{database}.exp_3"), wider, ignore_nullable=True)
    writer.replace("exp_3", spark.createDataFrame([("r4", 0.9)], narrower), exists=True)

    table = spark.table(f"{database}.exp_3")
    assert table.schema.fieldNames() == ["run_id", "_m_acc"]  # the schema is the new one
    assert [tuple(r) for r in table.collect()] == [("r4", 0.9)]
    assert location_of(spark, f"{database}.exp_3") == location
    history = spark.sql(f"DESCRIBE HISTORY {database}.exp_3").collect()
    assert [r["version"] for r in history] == [2, 1, 0]


def test_a_parquet_table_moves_to_a_fresh_folder_and_the_old_one_goes(
    spark: Any, data_dir: Path, database: str
) -> None:
    writer = TableWriter(spark, database, str(data_dir), "parquet")
    writer.create_database()
    writer.replace("exp_2", spark.createDataFrame([("r1", 0.5)], SCHEMA))
    first = location_of(spark, f"{database}.exp_2")
    writer.replace("exp_2", spark.createDataFrame([("r1", 0.4), ("r2", 0.3)], SCHEMA))
    second = location_of(spark, f"{database}.exp_2")

    assert first != second and not os.path.exists(first) and os.path.isdir(second)
    assert sorted(tuple(r) for r in spark.table(f"{database}.exp_2").collect()) == [
        ("r1", 0.4),
        ("r2", 0.3),
    ]


def _writer_with_two_experiments(
    spark: Any, data_dir: Path, database: str
) -> tuple[TableWriter, SideBatch]:
    """A writer of a new database and a batch of experiments 1 (runs a, b) and 2 (run c)."""
    writer = TableWriter(spark, database, str(data_dir), "delta")
    writer.create_database()
    batch = SideBatch()
    first = [make_run("a", "1", 1_000, {"rmse": 0.5}), make_run("b", "1", 2_000, {"rmse": 0.4})]
    batch.add("1", FULL, first, None, RefreshState("1", 2_010))
    batch.add("2", FULL, [make_run("c", "2", 500, {"acc": 0.9})], None, RefreshState("2", 510))
    return writer, batch


def test_side_rows_replace_an_experiment_then_merge_its_changes(
    spark: Any, data_dir: Path, database: str
) -> None:
    writer, batch = _writer_with_two_experiments(spark, data_dir, database)
    writer.write_side_rows(batch)
    batch.clear()
    assert batch.empty and batch.rows == 0

    batch.add("1", INCREMENTAL, [make_run("b", "1", 2_000, {"rmse": 0.3})], None,
              RefreshState("1", 3_000))  # fmt: skip
    writer.write_side_rows(batch)

    runs = spark.table(f"{database}.runs")
    metrics = sorted((r.experiment_id, r.run_id, dict(r.metrics)) for r in runs.collect())
    assert metrics == [
        ("1", "a", {"rmse": 0.5}),
        ("1", "b", {"rmse": 0.3}),
        ("2", "c", {"acc": 0.9}),
    ]
    states = read_states(spark, database)
    assert {k: s.watermark_ms for k, s in states.items()} == {"1": 3_000, "2": 510}


def test_later_side_commits_are_delta_rs_and_read_as_sparks(
    spark: Any, data_dir: Path, database: str
) -> None:
    writer, batch = _writer_with_two_experiments(spark, data_dir, database)
    batch.add("x'1", FULL, [make_run("e", "x'1", 9, {"acc": 0.1})], None, RefreshState("x'1", 9))
    writer.write_side_rows(batch)  # created by delta-rs: runs and mlflow_state, version 0
    batch.clear()
    batch.add("1", FULL, [make_run("d", "1", 3_000, {"rmse": 0.2})], None,
              RefreshState("1", 3_010))  # fmt: skip
    batch.add("2", INCREMENTAL, [make_run("c", "2", 500, {"acc": 0.95})], None,
              RefreshState("2", 600, settled={"c": 510}))  # fmt: skip
    writer.write_side_rows(batch)  # replaceWhere, MERGE of runs; MERGE of states
    batch.clear()
    batch.add("x'1", FULL, [make_run("f", "x'1", 9, {"acc": 0.2})], None, RefreshState("x'1", 19))
    writer.write_side_rows(batch)  # an id delta-rs's predicate may not hold: Spark's
    batch.clear()
    batch.add("2", INCREMENTAL, [], None, RefreshState("2", 700), deleted=["c"])
    writer.write_side_rows(batch)  # a run deleted since: its row goes, by delta-rs
    one = Experiment("1", "one", creation_time=5, tags={"b": "2", "a": "1"})
    for experiments in ([one], [one], [replace(one, name="uno"), Experiment("2", "two")]):
        writer.upsert_experiments(experiments)  # created, unchanged (no commit), MERGEd
    at = dt.datetime(2026, 1, 2, tzinfo=dt.timezone.utc)
    for seconds in (1.0, 2.0):
        writer.append_status([status_row(ExperimentResult("1", "one", "exp_1", 1, 5, at,
                                                          seconds, "ok"), "")])  # fmt: skip

    runs = spark.table(f"{database}.runs").collect()
    assert sorted((r.experiment_id, r.run_id, dict(r.metrics)) for r in runs) == [
        ("1", "d", {"rmse": 0.2}),
        ("x'1", "f", {"acc": 0.2}),
    ]
    assert read_states(spark, database) == {
        "1": RefreshState("1", 3_010),
        "2": RefreshState("2", 700),
        "x'1": RefreshState("x'1", 19),
    }
    assert writer.read_states() == read_states(spark, database)  # delta-rs's read, Spark's
    status = spark.table(f"{database}.mlflow_status").collect()
    assert sorted(r.duration_s for r in status) == [1.0, 2.0]
    engines = {t: engines_of(spark, f"{database}.{t}") for t in ("runs", "mlflow_state")}
    assert engines == {
        "runs": ["delta-rs", "delta-rs", "delta-rs", "spark", "delta-rs"],
        "mlflow_state": ["delta-rs", "delta-rs", "delta-rs", "delta-rs"],
    }
    assert engines_of(spark, f"{database}.mlflow_status") == ["delta-rs", "delta-rs"]
    experiments = spark.table(f"{database}.experiments").orderBy("experiment_id").collect()
    assert [(e.name, dict(e.tags)) for e in experiments] == [("uno", one.tags), ("two", {})]
    assert engines_of(spark, f"{database}.experiments") == ["delta-rs", "delta-rs"]


def test_a_state_table_without_settled_runs_reads_and_gets_the_column(
    spark: Any, database: str
) -> None:
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {database}")
    older = T.StructType([f for f in state_schema().fields if f.name != "settled"])
    row = ("1", 2_000, [], [], False, {"a": "f1"}, dt.datetime(2026, 1, 1))
    spark.createDataFrame([row], older).write.format("delta").saveAsTable(
        f"{database}.mlflow_state"
    )
    assert read_states(spark, database)["1"] == RefreshState("1", 2_000, fingerprints={"a": "f1"})
    writer = TableWriter(spark, database, None, "delta")
    assert writer.read_states() == read_states(spark, database)  # by delta-rs

    written = [RefreshState("1", 3_000, settled={"a": 2_500}), RefreshState("2", 10)]
    write_states(spark, database, written)
    assert spark.table(f"{database}.mlflow_state").columns[-1] == "settled"
    assert read_states(spark, database) == {"1": written[0], "2": written[1]}
    writer.write_states([RefreshState("2", 20)])
    assert read_states(spark, database)["2"] == RefreshState("2", 20)  # now of its schema:
    assert engines_of(spark, f"{database}.mlflow_state") == ["spark", "spark", "delta-rs"]


def test_status_rows_are_appended_without_credentials(
    spark: Any, data_dir: Path, database: str
) -> None:
    writer = TableWriter(spark, database, str(data_dir), "delta")
    writer.create_database()
    at = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    ok = ExperimentResult("1", "one", "exp_1", 2, 5, at, 1.5, "ok")
    failed = ExperimentResult("2", "two", "exp_2", 0, 0, at, 0.5, "failed", "boom")
    uri = "http://user:secret@127.0.0.1:5000"
    writer.append_status([status_row(ok, uri), status_row(failed, uri)])
    writer.append_status([])

    rows = spark.table(f"{database}.mlflow_status").orderBy("experiment_id").collect()
    assert [(r.experiment_id, r.status, r.error, r.run_count) for r in rows] == [
        ("1", "ok", None, 2),
        ("2", "failed", "boom", 0),
    ]
    assert {r.tracking_uri for r in rows} == {"http://127.0.0.1:5000"}
