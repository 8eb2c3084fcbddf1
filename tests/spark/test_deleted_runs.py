"""Runs deleted since the last refresh: delta-rs's reading of the tables gives Spark's
answers (`mlflow_fun.load.deleted_runs`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlflow_fun.extract.incremental import FULL, INCREMENTAL, Pull, RefreshState
from mlflow_fun.load.deleted_runs import (
    keys_of_runs,
    read_where,
    rewrite_for_deletes,
    run_ids_in,
    staying_keys,
)
from mlflow_fun.load.side_batch import SideBatch
from mlflow_fun.load.writer import TableWriter
from mlflow_fun.model import RunRecord
from mlflow_fun.transform.flatten import flatten_runs
from tests.spark.conftest import make_run

RUN_COLUMNS = ["metrics", "params", "tags"]


def _written(spark: Any, data_dir: Path, database: str) -> tuple[TableWriter, list[RunRecord]]:
    """Experiment 1 (four runs: keys, param values and a tag only some have) and 2, in
    ``runs`` and ``exp_1``, written by delta-rs."""
    writer = TableWriter(spark, database, str(data_dir), "delta")
    writer.create_database()
    runs = [
        make_run("a", "1", 1, {"rmse": 0.5}, {"alpha": "1", "l1": "0.5"}),
        make_run("b", "1", 2, {"rmse": 0.4}, {"alpha": "2"}),
        make_run("c", "1", 3, {"acc": 0.9}, {"alpha": "2"}),
        make_run("d", "1", 4, {"rmse": 0.3}, {"alpha": "x y"}),
    ]
    runs[3].tags["team"] = "ml"
    batch = SideBatch()
    batch.add("1", FULL, runs, None, RefreshState("1", 10))
    batch.add("2", FULL, [make_run("e", "2", 5, {"loss": 1.0}, {"alpha": "7"})], None,
              RefreshState("2", 10))  # fmt: skip
    writer.write_side_rows(batch)
    writer.replace_runs("exp_1", flatten_runs(runs), exists=False)
    return writer, runs


def test_the_staying_runs_keys_and_the_deleted_ids_read_as_spark_reads_them(
    spark: Any, data_dir: Path, database: str
) -> None:
    writer, _ = _written(spark, data_dir, database)
    table_path, runs_path = writer.delete_paths("exp_1")
    assert table_path is not None and runs_path is not None

    for without in (set(), {"a"}, {"a", "d"}, {"a", "b", "c", "d"}):
        ours = keys_of_runs(read_where(runs_path, RUN_COLUMNS, "1", without))
        assert sorted(ours, key=str) == sorted(
            staying_keys(spark, database, "1", without), key=str
        ), without
    assert sorted(keys_of_runs(read_where(runs_path, RUN_COLUMNS, "1", {"b", "c"})), key=str) == [
        ("metric", "rmse", None), ("param", "alpha", "1"), ("param", "alpha", "x y"),
        ("param", "l1", "0.5"), ("tag", "team", None),
    ]  # fmt: skip
    assert run_ids_in(read_where(table_path, ["run_id"], run_ids=["b", "gone", "d"])) == {"b", "d"}


def test_the_verdicts_by_delta_rs_are_sparks(spark: Any, data_dir: Path, database: str) -> None:
    writer, _ = _written(spark, data_dir, database)
    columns = {("metric", "rmse"): "double", ("metric", "acc"): "double",
               ("param", "alpha"): "string", ("param", "l1"): "double",
               ("tag", "team"): "string"}  # fmt: skip
    untagged = {key: kind for key, kind in columns.items() if key != ("tag", "team")}

    def verdicts(deleted: str, columns: dict[tuple[str, str], str]) -> set[str | None]:
        """delta-rs's verdict and Spark's, as a set: one element when they agree."""
        gone = frozenset([deleted])
        pull = Pull("1", INCREMENTAL, (), gone, gone, 0, 10, frozenset(), {}, {})
        args = (spark, database, "exp_1", pull, columns)
        return {
            rewrite_for_deletes(*args, writer.delete_paths("exp_1")),
            rewrite_for_deletes(*args),
        }

    assert verdicts("gone", columns) == {None}  # not in the table: nothing to delete
    assert verdicts("b", columns) == {None}  # every key and type stays
    assert verdicts("a", columns) == {
        "1 run(s) deleted: no run left has param 'l1': its column goes"
    }
    assert verdicts("d", columns) == {
        "1 run(s) deleted: no run left has tag 'team': its column goes"
    }
    assert verdicts("d", untagged) == {"1 run(s) deleted: param 'alpha' would be int, not string"}
