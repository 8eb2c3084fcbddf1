"""The analyst views over a tiny ``runs`` table: directions by rule, ties, NaN skipped."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from chispa import assert_df_equality
from pyspark.sql import types as T

from mlflow_fun.extract.incremental import FULL, RefreshState
from mlflow_fun.load.directions import write_directions
from mlflow_fun.load.side_batch import SideBatch
from mlflow_fun.load.views import (
    FINGERPRINT_PROPERTY,
    best_runs_sql,
    create_analyst_views,
    fingerprint,
    resolve_directions,
)
from mlflow_fun.load.writer import TableWriter
from tests.spark.conftest import engines_of, make_run


def test_best_runs_picks_by_the_longest_rule_skips_nan_and_breaks_ties(
    spark: Any, data_dir: Path, database: str, tmp_path: Path
) -> None:
    writer = TableWriter(spark, database, str(data_dir), "delta")
    writer.create_database()
    batch = SideBatch()
    runs = [
        make_run("a", "1", 1_000, {"val_loss": 0.5, "val_accuracy": 0.7}),
        make_run("b", "1", 2_000, {"val_loss": 0.5, "val_accuracy": math.nan}),
        make_run("c", "1", 500, {"val_loss": math.nan, "val_accuracy": 0.6}),
        make_run("d", "2", None, {"val_loss": 0.1}),
    ]
    batch.add("1", FULL, runs[:3], None, RefreshState("1", 2_010))
    batch.add("2", FULL, runs[3:], None, RefreshState("2", 0))
    writer.write_side_rows(batch)
    empty = tmp_path / "directions.yaml"
    empty.write_text("{}\n")

    create_analyst_views(spark, database, {"loss": "min", "accuracy": "max"}, directions_file=empty)

    best = spark.sql(
        f"select experiment_id, metric, direction, run_id, value from {database}.best_runs"
    ).orderBy("experiment_id", "metric")
    expected = spark.createDataFrame(
        [
            ("1", "val_accuracy", "max", "a", 0.7),
            ("1", "val_loss", "min", "a", 0.5),  # a tie: the earlier start wins
            ("2", "val_loss", "min", "d", 0.1),
        ],
        "experiment_id string, metric string, direction string, run_id string, value double",
    )
    assert_df_equality(best, expected, ignore_nullable=True, ignore_metadata=True)
    long = spark.table(f"{database}.metrics_long")
    assert long.count() == 7
    assert long.schema["value"].dataType == T.DoubleType()


def test_a_runs_table_from_before_inputs_gets_the_column_and_then_the_inputs(
    spark: Any, data_dir: Path, database: str, tmp_path: Path
) -> None:
    from dataclasses import replace

    from mlflow_fun.extract.incremental import INCREMENTAL
    from mlflow_fun.load.side_tables import runs_schema
    from mlflow_fun.model import DatasetInput

    writer = TableWriter(spark, database, str(data_dir), "delta")
    writer.create_database()
    old_schema = T.StructType([f for f in runs_schema().fields if f.name != "inputs"])
    old_row = ("a", "1", "name-a", "ann", "FINISHED", "active", None, None, None, {}, {}, {})
    spark.createDataFrame([old_row], old_schema).write.format("delta").saveAsTable(
        f"{database}.runs"
    )
    empty = tmp_path / "directions.yaml"
    empty.write_text("{}\n")

    create_analyst_views(spark, database, directions_file=empty)  # adds the column

    assert spark.table(f"{database}.runs").schema["inputs"] == runs_schema()["inputs"]
    assert spark.table(f"{database}.run_inputs").count() == 0
    batch = SideBatch()
    inputs = (DatasetInput("wine", "d1", "local", "train"), DatasetInput("wine", "d2", "http"))
    run = replace(make_run("a", "1", 5, {}), inputs=inputs)
    batch.add("1", INCREMENTAL, [run], None, RefreshState("1", 9))  # a MERGE into the old table
    writer.write_side_rows(batch)
    rows = spark.sql(
        f"select run_id, experiment_id, dataset_name, dataset_digest, dataset_source_type, "
        f"context from {database}.run_inputs order by dataset_digest"
    ).collect()
    assert [tuple(r) for r in rows] == [
        ("a", "1", "wine", "d1", "local", "train"),
        ("a", "1", "wine", "d2", "http", None),
    ]


def test_the_direction_rules_are_read_and_rewritten_by_delta_rs_and_read_as_sparks(
    spark: Any, data_dir: Path, database: str, tmp_path: Path
) -> None:
    empty = _new_database(spark, data_dir, database, tmp_path)
    table = f"{database}.metric_directions"

    def stored() -> dict[str, str]:
        return {r["name"]: r["direction"] for r in spark.table(table).collect()}

    assert write_directions(spark, database, {"loss": "min"})  # created
    assert not write_directions(spark, database, {"loss": "min"})  # unchanged: no commit
    assert write_directions(spark, database, {"loss": "min", "acc": "max"})  # rewritten
    assert stored() == {"loss": "min", "acc": "max"}
    assert engines_of(spark, table) == ["delta-rs", "delta-rs"]

    create_analyst_views(spark, database, {"acc": "min"}, directions_file=empty)
    assert stored() == resolve_directions({"acc": "min"}, empty)
    assert engines_of(spark, table) == ["delta-rs", "delta-rs", "delta-rs"]


def test_a_job_run_creates_only_the_views_missing_or_changed(
    spark: Any, data_dir: Path, database: str, tmp_path: Path
) -> None:
    empty = _new_database(spark, data_dir, database, tmp_path)
    create_analyst_views(spark, database, directions_file=empty)
    for view in ("metrics_long", "best_runs", "run_inputs"):  # a mark a re-creation drops
        spark.sql(f"ALTER VIEW {database}.{view} SET TBLPROPERTIES ('mark' = 'kept')")
    spark.sql(f"DROP VIEW {database}.metrics_long")
    spark.sql(
        f"ALTER VIEW {database}.best_runs SET TBLPROPERTIES ('{FINGERPRINT_PROPERTY}' = 'old')"
    )

    create_analyst_views(spark, database, directions_file=empty)

    marks = {
        view: dict(
            (r["key"], r["value"])
            for r in spark.sql(f"SHOW TBLPROPERTIES {database}.{view}").collect()
        )
        for view in ("metrics_long", "best_runs", "run_inputs")
    }
    assert {view: props.get("mark") for view, props in marks.items()} == {
        "metrics_long": None,  # missing: created
        "best_runs": None,  # another statement's: recreated
        "run_inputs": "kept",  # unchanged: left as it was
    }
    assert marks["best_runs"][FINGERPRINT_PROPERTY] == fingerprint(best_runs_sql(database))
    assert spark.table(f"{database}.metrics_long").columns == [
        "experiment_id", "run_id", "run_name", "metric", "value"
    ]  # fmt: skip


def _new_database(spark: Any, data_dir: Path, database: str, tmp_path: Path) -> Path:
    """Create ``database``; an empty directions file (the default rules alone)."""
    TableWriter(spark, database, str(data_dir), "delta").create_database()
    empty = tmp_path / "directions.yaml"
    empty.write_text("{}\n")
    return empty
