"""`TableWriter.replace_runs`: delta-rs writes what Spark would, where it can; Spark elsewhere."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from chispa import assert_df_equality

from mlflow_fun.catalog import local_path
from mlflow_fun.load import delta_files
from mlflow_fun.load.writer import TableWriter
from mlflow_fun.transform.flatten import FlatRuns, flatten_runs
from mlflow_fun.transform.frames import to_spark
from tests.spark.conftest import make_run

ODD_KEYS = {"123": 1.0, "true": 2.0, "null": 3.0, "a b/c": 4.0, '{"k":1}': 5.0}


def _flat(*run_ids: str, extra: str | None = None) -> FlatRuns:
    runs = [
        make_run(r, "7", 1_700_000_000_000 + i, {**ODD_KEYS, "rmse": 0.1 * i}, {"alpha": str(i)})
        for i, r in enumerate(run_ids)
    ]
    if extra:
        runs.append(make_run(extra, "7", None, {"acc": 0.5}, {"alpha": "0.5", "flag": "true"}))
    return flatten_runs(runs)


def _history(spark: Any, table: str) -> list[str]:
    rows = spark.sql(f"DESCRIBE HISTORY {table}").collect()
    return [r["operation"] for r in sorted(rows, key=lambda r: r["version"])]


def test_delta_rs_writes_the_table_spark_would(spark: Any, data_dir: Path, database: str) -> None:
    writer = TableWriter(spark, database, str(data_dir), "delta")
    writer.create_database()
    flat = _flat("r1", "r2", extra="r3")

    writer.replace_runs("exp_7", flat, exists=False)  # delta-rs, then registered
    writer.replace("exp_8", to_spark(spark, flat))  # Spark's own write, for comparison

    ours, spark_own = spark.table(f"{database}.exp_7"), spark.table(f"{database}.exp_8")
    assert_df_equality(ours, spark_own, ignore_row_order=True)
    assert [f.metadata for f in ours.schema.fields] == [f.metadata for f in spark_own.schema.fields]
    assert {f.metadata["mlflow_key"] for f in ours.schema.fields} >= set(ODD_KEYS)
    location = _location(spark, f"{database}.exp_7")
    assert location == f"file:{data_dir / 'warehouse' / (database + '.db') / 'exp_7'}"
    assert _history(spark, f"{database}.exp_7") == ["WRITE"]  # delta-rs's one commit


def test_an_existing_table_is_replaced_in_one_commit_at_its_place(
    spark: Any, data_dir: Path, database: str
) -> None:
    writer = TableWriter(spark, database, str(data_dir), "delta")
    writer.create_database()
    writer.replace("exp_7", to_spark(spark, _flat("r1")))  # written by Spark first
    location = _location(spark, f"{database}.exp_7")
    wider = _flat("r1", "r2", extra="r3")

    writer.replace_runs("exp_7", wider, exists=True)

    table = spark.table(f"{database}.exp_7")
    assert_df_equality(table, to_spark(spark, wider), ignore_row_order=True)
    assert _location(spark, f"{database}.exp_7") == location
    assert _history(spark, f"{database}.exp_7") == ["CREATE OR REPLACE TABLE AS SELECT", "WRITE"]
    narrower = _flat("r9")
    writer.replace_runs("exp_7", narrower, exists=True)
    assert spark.table(f"{database}.exp_7").columns == list(narrower.data)
    assert [r["run_id"] for r in spark.table(f"{database}.exp_7").collect()] == ["r9"]


def test_the_schema_and_shape_read_from_the_log_are_sparks(
    spark: Any, data_dir: Path, database: str
) -> None:
    writer = TableWriter(spark, database, str(data_dir), "delta")
    writer.create_database()
    writer.replace_runs("exp_7", _flat("r1", extra="r2"), exists=False)  # by delta-rs
    writer.replace("exp_8", to_spark(spark, _flat("r3")))  # by Spark
    parquet = TableWriter(spark, database, str(data_dir), "parquet")
    parquet.replace("exp_9", to_spark(spark, _flat("r4")))
    fresh = TableWriter(spark, database, str(data_dir), "delta")  # asks the metastore anew

    for name in ("exp_7", "exp_8", "exp_9"):
        table = spark.table(f"{database}.{name}")
        assert fresh.schema(name) == table.schema
        assert fresh.shape(name) == (table.count(), len(table.columns))
    assert fresh.shape("exp_7") == (2, len(_flat("r1", extra="r2").columns))
    keys = {f.metadata["mlflow_key"] for f in fresh.schema("exp_7").fields}
    assert keys >= {"acc", "flag", "alpha", "rmse", *ODD_KEYS}


def test_each_delta_rs_version_has_the_checksum_spark_would_write(
    spark: Any, data_dir: Path, database: str
) -> None:
    writer = TableWriter(spark, database, str(data_dir), "delta")
    writer.create_database()
    writer.replace_runs("exp_7", _flat("r1", "r2", extra="r3"), exists=False)  # version 0
    writer.replace_runs("exp_7", _flat("r4", "r5", extra="r6"), exists=True)  # 1: same schema
    writer.replace_runs("exp_7", _flat("r7", "r8"), exists=True)  # 2: fewer columns
    log = data_dir / "warehouse" / f"{database}.db" / "exp_7" / "_delta_log"

    checksums = [json.loads((log / f"{v:020d}.crc").read_text()) for v in (0, 1, 2)]
    for version, ours in enumerate(checksums):
        files = _added(log, version)  # an overwrite's files are its own adds
        assert (ours["numFiles"], ours["tableSizeBytes"]) == (len(files), sum(files.values()))
        assert all((log.parent / f).stat().st_size == size for f, size in files.items())
        assert ours["protocol"] == {"minReaderVersion": 1, "minWriterVersion": 2}
    logged = [[a["metaData"] for a in _actions(log, v) if "metaData" in a] for v in (0, 1, 2)]
    assert [len(m) for m in logged] == [1, 0, 1]
    for version in (0, 2):  # the metadata as logged, its text too (Spark compares them)
        as_logged = {k: v for k, v in logged[version][0].items() if v is not None}
        assert checksums[version]["metadata"] == as_logged
    assert checksums[1]["metadata"] == checksums[0]["metadata"]  # no metaData of its own
    assert spark.table(f"{database}.exp_7").schema == writer.schema("exp_7")

    # Spark's next commit goes on from our checksum; its own must still match the files.
    spark.sql(f"INSERT INTO {database}.exp_7 SELECT * FROM {database}.exp_7")
    theirs = json.loads((log / f"{3:020d}.crc").read_text())
    files = {**_added(log, 2), **_added(log, 3)}
    assert (theirs["numFiles"], theirs["tableSizeBytes"]) == (len(files), sum(files.values()))
    assert theirs["metadata"]["schemaString"] == checksums[2]["metadata"]["schemaString"]
    assert sorted(r["run_id"] for r in spark.table(f"{database}.exp_7").collect()) == [
        "r7", "r7", "r8", "r8"
    ]  # fmt: skip


def test_delta_rs_commits_checkpoint_where_spark_would_and_spark_reads_from_it(
    spark: Any, data_dir: Path, database: str
) -> None:
    writer = TableWriter(spark, database, str(data_dir), "delta")
    writer.create_database()
    writer.replace_runs("exp_7", _flat("r0"), exists=False)  # version 0
    for version in range(1, 12):  # delta-rs's own interval is 100 commits
        writer.replace_runs("exp_7", _flat(f"r{version}"), exists=True)
    log = data_dir / "warehouse" / f"{database}.db" / "exp_7" / "_delta_log"

    assert [p.name for p in log.glob("*.checkpoint.parquet")] == [f"{10:020d}.checkpoint.parquet"]
    assert json.loads((log / "_last_checkpoint").read_text())["version"] == 10
    for version in range(10):  # a reader needs no commit before the checkpoint
        (log / f"{version:020d}.json").unlink()
    rows = spark.read.format("delta").load(str(log.parent)).collect()
    assert [r["run_id"] for r in rows] == ["r11"]
    assert spark.table(f"{database}.exp_7").schema == writer.schema("exp_7")


def _actions(log: Path, version: int) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (log / f"{version:020d}.json").read_text().splitlines()]


def _added(log: Path, version: int) -> dict[str, int]:
    return {a["add"]["path"]: a["add"]["size"] for a in _actions(log, version) if "add" in a}


def test_a_folder_delta_rs_cannot_own_is_left_to_spark(
    spark: Any, data_dir: Path, database: str
) -> None:
    writer = TableWriter(spark, database, str(data_dir), "delta")
    writer.create_database()
    folder = data_dir / "warehouse" / f"{database}.db" / "exp_5"
    folder.mkdir(parents=True)
    (folder / "stray.txt").write_text("not a table")
    assert not delta_files.writable(str(folder))

    writer.replace_runs("exp_5", _flat("r1"), exists=False)

    assert [r["run_id"] for r in spark.table(f"{database}.exp_5").collect()] == ["r1"]
    assert _history(spark, f"{database}.exp_5") == ["CREATE OR REPLACE TABLE AS SELECT"]  # Spark's
    assert (folder / "stray.txt").read_text() == "not a table"


def test_whether_delta_rs_may_write_is_read_from_the_latest_checksum_as_from_the_log(
    spark: Any, data_dir: Path, database: str
) -> None:
    writer = TableWriter(spark, database, str(data_dir), "delta")
    writer.create_database()
    writer.replace_runs("exp_6", _flat("r1"), exists=False)  # delta-rs: reader 1, writer 2
    featured = data_dir / "featured"  # Spark's, with a table feature (deletion vectors)
    spark.createDataFrame([("r1",)], "run_id string").write.format("delta").option(
        "delta.enableDeletionVectors", "true"
    ).save(str(featured))
    plain = data_dir / "warehouse" / f"{database}.db" / "exp_6"
    for folder, expected in ((plain, True), (featured, False)):
        checksums = sorted((folder / "_delta_log").glob("*.crc"))
        assert checksums, folder
        assert delta_files.writable(str(folder)) is expected
        latest = json.loads(checksums[-1].read_text())  # what is read, not the log:
        latest["protocol"]["writerFeatures"] = ["a feature"]
        checksums[-1].write_text(json.dumps(latest))
        assert not delta_files.writable(str(folder))
        for checksum in checksums:  # none: the table's log is loaded instead
            checksum.unlink()
        assert delta_files.writable(str(folder)) is expected


def test_only_local_locations_are_written_by_delta_rs() -> None:
    assert local_path("file:/srv/w/db.db/exp_1") == "/srv/w/db.db/exp_1"
    assert local_path("file:///srv/w/exp_1") == "/srv/w/exp_1"
    assert local_path("hdfs://nn:8020/w/exp_1") is None
    assert local_path("s3a://bucket/w/exp_1") is None
    assert local_path("dbfs:/user/hive/warehouse/exp_1") is None
    assert local_path("file:/srv/a%20b/exp_1") is None


def _location(spark: Any, table: str) -> str:
    rows = spark.sql(f"DESCRIBE FORMATTED {table}").collect()
    return next(str(r[1]) for r in rows if r[0] == "Location")


def test_the_driver_keeps_a_few_hundred_delta_logs_not_ten_thousand(spark: Any) -> None:
    # Delta's default (10,000 logs and snapshots) filled a 1 GiB driver heap at about 6,000
    # tables of a job over 10,000 experiments (make bench SIZE=1m).
    assert spark.conf.get("spark.databricks.delta.delta.log.cacheSize") == "500"


def test_an_upsert_of_a_few_plain_keys_replaces_their_rows_as_a_merge_would(
    tmp_path: Path,
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from deltalake import DeltaTable

    path = str(tmp_path / "runs")
    rows = 70_000  # two row groups
    delta_files.create(path, pa.table({"run_id": [f"r{i}" for i in range(rows)], "v": range(rows)}))
    delta_files.upsert(path, pa.table({"run_id": ["r1", "new"], "v": [-1, -2]}), ["run_id"])
    delta_files.upsert(path, pa.table({"run_id": ["it's"], "v": [-3]}), ["run_id"])  # MERGE
    delta_files.upsert(path, pa.table({"run_id": ["r2", "it's"], "v": [-4, -5]}), ["run_id"])

    table = DeltaTable(path)
    values = dict(zip(*table.to_pyarrow_table().to_pydict().values(), strict=True))
    assert len(values) == rows + 2
    assert [values[k] for k in ("r0", "r1", "new", "it's", "r2", "r3")] == [0, -1, -2, -5, -4, 3]
    operations = [c["operation"] for c in reversed(table.history())]
    assert operations == ["WRITE", "WRITE", "MERGE", "MERGE"]  # created, replaced, MERGEd
    predicate = table.history(3)[-1]["operationParameters"]["predicate"]
    assert "run_id = 'r1'" in predicate and "run_id = 'new'" in predicate  # those rows only
    groups = [pq.ParquetFile(f).metadata.num_row_groups for f in table.file_uris()]
    assert max(groups) == 2  # the file of 70,000 rows: 65,536 and the rest


def test_inserting_new_history_points_equals_sparks_null_safe_merge(
    spark: Any, data_dir: Path, database: str
) -> None:
    import datetime as dt

    from mlflow_fun.load.commits import insert_new
    from mlflow_fun.load.side_tables import history_keys, history_schema

    schema = history_schema()
    at = dt.datetime(2026, 1, 2, tzinfo=dt.timezone.utc)
    nan = float("nan")
    held = [("1", "a", "m", 1.0, 0, at), ("1", "a", "m", nan, 1, at), ("1", "b", "m", -0.0, 0, at),
            ("1", None, "m", 2.0, 0, at)]  # fmt: skip
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {database}")
    for name in ("history_rs", "history_spark"):
        spark.createDataFrame(held, schema).write.format("delta").saveAsTable(f"{database}.{name}")
    # Every point again (NaN, -0.0 as 0.0, a NULL run id: all there), and two new ones.
    points = [*held[:2], ("1", "b", "m", 0.0, 0, at), held[3], ("1", "b", "m", 2.0, 1, at),
              ("1", "b", "m", nan, 2, at)]  # fmt: skip

    path = local_path(_location(spark, f"{database}.history_rs"))
    assert path is not None
    for batch in (points, points[:4]):  # the second brings nothing new: no commit
        delta_files.insert_new(path, delta_files.rows_table(batch, schema), history_keys())
        insert_new(spark, database, "history_spark", spark.createDataFrame(batch, schema),
                   history_keys())  # fmt: skip

    ours, sparks = spark.table(f"{database}.history_rs"), spark.table(f"{database}.history_spark")
    assert_df_equality(ours, sparks, ignore_row_order=True, allow_nan_equality=True)
    assert ours.count() == 6
    assert _history(spark, f"{database}.history_rs") == ["CREATE TABLE AS SELECT", "MERGE"]
    assert _history(spark, f"{database}.history_spark") == ["CREATE TABLE AS SELECT", "MERGE"]
