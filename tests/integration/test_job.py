"""The job against a real mlflow server, a real local Spark, Delta tables and a metastore."""

from __future__ import annotations

import json
import logging
import os
import pwd
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from chispa import assert_df_equality
from mlflow import MlflowClient
from mlflow.entities import Param

from mlflow_fun.config import JobConfig
from mlflow_fun.errors import JobFailedError
from mlflow_fun.extract.local_server import free_port
from mlflow_fun.load.job import run_job
from mlflow_fun.query.builders import FastDataframeBuilder
from mlflow_fun.query.spark_tables import best_run_from_table
from tests.fault_proxy import fault_proxy
from tests.scripted_http import Reply
from tests.seed import TYPED_TYPES, Seeded, _run

SCRIPT = Path(sys.executable).parent / "mlflow-fun"


def _types(df: Any) -> list[tuple[str, str]]:
    return [(f.name, f.dataType.simpleString()) for f in df.schema.fields]


def _job(spark: Any, seeded: Seeded, database: str, *ids: str) -> Any:
    config = JobConfig(database=database, experiment_ids=ids, tracking_uri=seeded.url)
    return run_job(config, spark=spark, progress=False)


def test_tables_typed_commented_and_equal_to_the_builder(spark: Any, seeded: Seeded) -> None:
    result = _job(spark, seeded, "job_basic", seeded.typed, seeded.best, seeded.empty)
    assert [(r.experiment_id, r.status, r.run_count) for r in result.results] == [
        (seeded.typed, "ok", 4),
        (seeded.best, "ok", 7),
        (seeded.empty, "ok", 0),
    ]
    table = spark.table(f"job_basic.exp_{seeded.typed}")
    spark_types = {"int": "int", "bigint": "bigint", "double": "double", "boolean": "boolean"}
    expected_params = [
        (f"_p_{k}", spark_types.get(TYPED_TYPES[k], "string")) for k in sorted(TYPED_TYPES)
    ]
    assert _types(table)[10:] == [*expected_params, ("_t_mlflow_runName", "string")]
    built = FastDataframeBuilder(spark, seeded.url).build_dataframe(seeded.typed)
    assert_df_equality(table, built, ignore_metadata=True, allow_nan_equality=True)
    comments = {
        r["col_name"]: r["comment"]
        for r in spark.sql(f"describe table job_basic.exp_{seeded.typed}").collect()
    }
    assert comments["_t_mlflow_runName"] == "mlflow.runName"
    assert comments["_p_p_int"] == "p_int"
    assert spark.table(f"job_basic.exp_{seeded.empty}").count() == 0
    status = spark.table("job_basic.mlflow_status").orderBy("experiment_id").collect()
    assert [
        (r.experiment_id, r.experiment_name, r.table_name, r.run_count, r.status, r.error)
        for r in status
    ] == sorted(
        [
            (seeded.typed, "typed", f"exp_{seeded.typed}", 4, "ok", None),
            (seeded.best, "best", f"exp_{seeded.best}", 7, "ok", None),
            (seeded.empty, "empty", f"exp_{seeded.empty}", 0, "ok", None),
        ]
    )
    assert {(r.tracking_uri, r.job_version) for r in status} == {(seeded.url, "0.1.0")}
    assert best_run_from_table(spark, "job_basic", seeded.best, "rmse") == (
        seeded.best_runs["a"],
        0.5,
    )


def test_second_run_is_identical(spark: Any, seeded: Seeded) -> None:
    table = f"job_twice.exp_{seeded.odd_keys}"
    _job(spark, seeded, "job_twice", seeded.odd_keys)
    first = spark.table(table).collect()
    first_schema = spark.table(table).schema
    (unchanged,) = _job(spark, seeded, "job_twice", seeded.odd_keys).results
    assert (unchanged.mode, unchanged.run_count) == ("incremental", len(first))
    assert len(spark.sql(f"describe history {table}").collect()) == 1  # nothing to write
    config = JobConfig(
        database="job_twice",
        experiment_ids=(seeded.odd_keys,),
        tracking_uri=seeded.url,
        full_refresh=True,
    )
    (rebuilt,) = run_job(config, spark=spark, progress=False).results
    assert rebuilt.mode == "full"
    second = spark.table(table)
    assert second.schema == first_schema
    assert_df_equality(second, spark.createDataFrame(first, first_schema))
    assert len(spark.sql(f"describe history {table}").collect()) == 2


def test_new_keys_add_columns_and_types_widen(spark: Any, seeded: Seeded) -> None:
    client = MlflowClient(seeded.url)
    experiment_id = client.create_experiment("evolve")
    _run(client, experiment_id, 1000, params={"p": "1"})
    _job(spark, seeded, "job_evolve", experiment_id)
    table = f"job_evolve.exp_{experiment_id}"
    assert ("_p_p", "int") in _types(spark.table(table))

    _run(client, experiment_id, 2000, params={"p": "0.5", "q": "x"}, metrics={"m": 1.0})
    _job(spark, seeded, "job_evolve", experiment_id)
    assert {("_p_p", "double"), ("_p_q", "string"), ("_m_m", "double")} <= set(
        _types(spark.table(table))
    )
    assert [r["_p_p"] for r in spark.table(table).orderBy("start_time").collect()] == [1.0, 0.5]

    _run(client, experiment_id, 3000, params={"p": "abc"})
    _job(spark, seeded, "job_evolve", experiment_id)
    assert ("_p_p", "string") in _types(spark.table(table))
    values = [r["_p_p"] for r in spark.table(table).orderBy("start_time").collect()]
    assert values == ["1", "0.5", "abc"]


def test_failing_experiment_is_isolated(spark: Any, seeded: Seeded) -> None:
    _job(spark, seeded, "job_fail", seeded.typed, seeded.best)
    table = f"job_fail.exp_{seeded.best}"
    before = spark.table(table).collect()
    versions = len(spark.sql(f"describe history {table}").collect())
    failing = f'"experiment_ids": ["{seeded.best}"]'.encode()

    def fail_best(method: str, path: str, body: bytes) -> Reply | None:
        if path.endswith("/runs/search") and failing in body:
            return Reply(500, b'{"error_code": "INTERNAL_ERROR", "message": "disk on fire"}')
        return None

    with fault_proxy(seeded.url, fail_best) as proxy_url:
        config = JobConfig(
            database="job_fail",
            experiment_ids=(seeded.typed, seeded.best, seeded.empty),
            tracking_uri=proxy_url,
        )
        with pytest.raises(JobFailedError) as caught:
            run_job(config, spark=spark, progress=False)
    assert list(caught.value.failed) == [seeded.best]
    assert str(caught.value) == f"1 experiment(s) failed: {seeded.best}"
    assert caught.value.failed[seeded.best] == (
        f"the tracking server at {proxy_url} answered HTTP 500 on runs/search: disk on fire"
    )
    assert spark.table(f"job_fail.exp_{seeded.typed}").count() == 4
    assert spark.table(f"job_fail.exp_{seeded.empty}").count() == 0
    assert_df_equality(
        spark.table(table),
        spark.createDataFrame(before, spark.table(table).schema),
        allow_nan_equality=True,
    )
    assert len(spark.sql(f"describe history {table}").collect()) == versions
    status = spark.table("job_fail.mlflow_status").where("tracking_uri != '" + seeded.url + "'")
    by_id = {r.experiment_id: r for r in status.collect()}
    assert (by_id[seeded.best].status, by_id[seeded.best].run_count) == ("failed", 0)
    assert by_id[seeded.best].error == caught.value.failed[seeded.best]
    assert by_id[seeded.typed].status == "ok"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, timeout=600, env=dict(os.environ)
    )


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_unknown_experiment_ids_touch_nothing(seeded: Seeded, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    result = _cli(
        "build", "--data_dir", str(data_dir), "--tracking_uri", seeded.url,
        "--experiment_ids", f"{seeded.typed},9998,9999",
    )  # fmt: skip
    assert _one_error_line(result) == (
        f"mlflow-fun: error: experiment id(s) 9998, 9999 do not exist at {seeded.url}; "
        "nothing was written"
    )
    assert sorted(os.listdir(data_dir)) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--database", "bad-name"],
            "mlflow-fun: error: database name 'bad-name' is not a valid identifier: use "
            "letters, digits and _, starting with a letter or _, at most 128 characters",
        ),
        (
            ["--experiment_ids", "1,,2"],
            "mlflow-fun: error: experiment id '' in '1,,2' is not valid: give ids like 1,2,9",
        ),
    ],
)
def test_bad_arguments(seeded: Seeded, tmp_path: Path, args: list[str], message: str) -> None:
    result = _cli("build", "--data_dir", str(tmp_path), "--tracking_uri", seeded.url, *args)
    assert _one_error_line(result) == message
    assert os.listdir(tmp_path) == []


def test_unwritable_data_dir(seeded: Seeded, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = _cli("build", "--data_dir", str(blocker / "data"), "--tracking_uri", seeded.url)
    assert _one_error_line(result) == (
        f"mlflow-fun: error: data_dir '{blocker / 'data'}' is not writable (Not a directory); "
        "choose another --data_dir"
    )


def test_unreachable_server(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = _cli("build", "--data_dir", str(tmp_path / "d"), "--tracking_uri", url)
    assert _one_error_line(result) == (
        f"mlflow-fun: error: cannot reach the tracking server at {url} (experiments/search): "
        "connection refused; check that the server runs and the URL is right"
    )
    assert os.listdir(tmp_path / "d") == []


@pytest.mark.parametrize("flag", ["--table-format", "--format"])
def test_unknown_table_format_lists_the_valid_ones(tmp_path: Path, flag: str) -> None:
    result = _cli("build", "--data_dir", str(tmp_path), flag, "csv")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: Invalid value for '{flag}'"
        + (" / '--table_format'" if flag == "--table-format" else "")
        + ": 'csv' is not one of 'delta', 'parquet'."
    )


def test_a_job_leaves_only_hives_one_resources_folder_in_the_jvms_tmp(
    seeded: Seeded, tmp_path: Path
) -> None:
    # Hive's client used to leave `<tmp>/<uuid>_resources` behind at every session.
    jvm_tmp = tmp_path / "jvm-tmp"
    jvm_tmp.mkdir()
    env = {**os.environ, "SPARK_SUBMIT_OPTS": f"-Djava.io.tmpdir={jvm_tmp}"}  # the driver's
    build = [
        str(SCRIPT), "build", "--data_dir", str(tmp_path / "data"), "--tracking_uri", seeded.url,
        "--experiment_ids", seeded.typed,
    ]  # fmt: skip
    for _ in range(2):
        result = subprocess.run(build, capture_output=True, text=True, timeout=600, env=env)
        assert result.returncode == 0, result.stderr
    user = pwd.getpwuid(os.getuid()).pw_name  # Java's user.name
    assert [p.name for p in jvm_tmp.iterdir()] == [f"mlflow-fun-{user}-hive-resources"]


def test_job_killed_mid_write_leaves_the_previous_table(
    spark: Any, seeded: Seeded, tmp_path: Path
) -> None:
    client = MlflowClient(seeded.url)
    experiment_id = client.create_experiment("kill-me")
    first_ids = {
        _run(client, experiment_id, 1000 + i, params={f"k{j}": str(i * j) for j in range(20)})
        for i in range(200)
    }
    data_dir = tmp_path / "data"
    build = [
        str(SCRIPT), "build", "--data_dir", str(data_dir), "--tracking_uri", seeded.url,
        "--experiment_ids", experiment_id,
    ]  # fmt: skip
    assert subprocess.run(build, capture_output=True, timeout=600).returncode == 0
    table_dir = data_dir / "warehouse" / "mlflow_metrics.db" / f"exp_{experiment_id}"
    before = {p.name for p in table_dir.iterdir()}
    second_ids = {_run(client, experiment_id, 5000 + i) for i in range(20)}
    # a new key: the second write adds a column (a param logged now to a run that had
    # finished at the first build would not be seen by this incremental refresh)
    client.log_batch(min(second_ids), params=[Param("late", "1")])

    job = subprocess.Popen(
        build, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and job.poll() is None:
        if {p.name for p in table_dir.iterdir()} - before:
            os.killpg(job.pid, signal.SIGKILL)  # the job: Python and its Spark JVM
            break
        time.sleep(0.005)
    job.wait()
    assert job.returncode == -signal.SIGKILL, "the job ended before it started writing"

    after_kill = {r.run_id for r in spark.read.format("delta").load(str(table_dir)).collect()}
    assert after_kill in (first_ids, first_ids | second_ids)

    assert subprocess.run(build, capture_output=True, timeout=600).returncode == 0
    final = spark.read.format("delta").load(str(table_dir))
    assert {r.run_id for r in final.collect()} == first_ids | second_ids
    assert "_p_late" in final.columns


def test_one_experiment_is_pulled_from_both_ends_by_two_streams(
    spark: Any, seeded: Seeded, caplog: pytest.LogCaptureFixture
) -> None:
    # 25 runs in pages of 4: the free stream joins from the highest run id.
    config = JobConfig(
        database="job_two_ends",
        experiment_ids=(seeded.paged,),
        tracking_uri=seeded.url,
        page_size=4,
        parallelism=2,
    )
    with caplog.at_level(logging.INFO, logger="mlflow_fun.extract.two_ended"):
        result = run_job(config, spark=spark, progress=False)
    assert [(r.status, r.run_count, r.runs_pulled) for r in result.results] == [("ok", 25, 25)]
    both = [r.getMessage() for r in caplog.records if "both ends" in r.getMessage()]
    assert len(both) == 1 and f"experiment_id={seeded.paged} runs=25 pages=" in both[0]
    table = spark.table(f"job_two_ends.exp_{seeded.paged}").orderBy("run_id")
    assert [r.run_id for r in table.collect()] == sorted(seeded.paged_run_ids)
    built = FastDataframeBuilder(spark, seeded.url).build_dataframe(seeded.paged)
    assert_df_equality(
        table, built.orderBy("run_id"), ignore_metadata=True, allow_nan_equality=True
    )


def _refuse(token: str) -> None:
    raise AssertionError(f"bare {token} in the JSON output")


def test_sql_command_runs_the_classic_query(
    spark: Any, seeded: Seeded, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlflow_fun.cli.main import main

    _job(spark, seeded, "job_sql", seeded.paged)
    query = (
        "select run_uuid, round(_m_rmse,4) as _m_rmse, _p_alpha from exp_"
        f"{seeded.paged} order by _m_rmse limit 3"
    )
    assert main(["sql", "--database", "job_sql", query]) == 0
    lines = capsys.readouterr().out.splitlines()
    # rmse = (i * 7 % 25) / 100 for run i: the three lowest are i = 0, 18, 11.
    ids = [seeded.paged_run_ids[i] for i in (0, 18, 11)]
    assert lines == [
        "+--------------------------------+-------+--------+",
        "|                        run_uuid|_m_rmse|_p_alpha|",
        "+--------------------------------+-------+--------+",
        f"|{ids[0]}|    0.0|     0.0|",
        f"|{ids[1]}|   0.01|     1.8|",
        f"|{ids[2]}|   0.02|     1.1|",
        "+--------------------------------+-------+--------+",
    ]
    assert main(["sql", "--database", "job_sql", "--format", "csv", query]) == 0
    assert capsys.readouterr().out.splitlines()[:2] == [
        "run_uuid,_m_rmse,_p_alpha",
        f"{ids[0]},0.0,0.0",
    ]
    assert main(["sql", "--database", "job_sql", "--output", "jsonl", query]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == f'{{"run_uuid": "{ids[0]}", "_m_rmse": 0.0, "_p_alpha": 0.0}}'
    assert main(["sql", "--database", "job_sql", "--format", "json", query]) == 0  # old flag
    printed = capsys.readouterr()
    assert printed.err == "mlflow-fun sql: --format is deprecated; use --output\n"
    document = json.loads(printed.out, parse_constant=_refuse)
    assert [row["run_uuid"] for row in document] == ids[:3]
    odd = (
        "select double('NaN') as n, double('Infinity') as i, -double('Infinity') as m, "
        "map('k', double('NaN')) as nested, double(1.5) as x"
    )
    for output in ("json", "jsonl"):
        assert main(["sql", "--database", "job_sql", "--output", output, odd]) == 0
        text = capsys.readouterr().out
        assert text.count("\n") == 1
        parsed = json.loads(text, parse_constant=_refuse)
        assert (parsed[0] if output == "json" else parsed) == {
            "n": "NaN", "i": "Infinity", "m": "-Infinity", "nested": {"k": "NaN"}, "x": 1.5
        }  # fmt: skip

    assert main(["sql", "--database", "job_sql", "select nope from exp_1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mlflow-fun: error: [TABLE_OR_VIEW_NOT_FOUND]")

    argv = ["best", "--source", "table", "--database", "job_sql", "--metric", "rmse"]
    assert main([*argv, "--experiment-name", "paged"]) == 0
    assert capsys.readouterr().out == f"('{ids[0]}', 0.0)\n"
    assert main([*argv, "--experiment-id", seeded.best]) == 1
    assert capsys.readouterr().err == (
        f"mlflow-fun: error: table job_sql.exp_{seeded.best} does not exist; run "
        f"`mlflow-fun build --experiment_ids {seeded.best}` first\n"
    )


def test_parquet_format_tables(spark: Any, seeded: Seeded) -> None:
    config = JobConfig(
        database="job_parquet",
        experiment_ids=(seeded.typed,),
        tracking_uri=seeded.url,
        table_format="parquet",
    )
    run_job(config, spark=spark, progress=False)
    run_job(config, spark=spark, progress=False)
    table = spark.table(f"job_parquet.exp_{seeded.typed}")
    built = FastDataframeBuilder(spark, seeded.url).build_dataframe(seeded.typed)
    assert_df_equality(
        table, built, ignore_metadata=True, allow_nan_equality=True, ignore_row_order=True
    )
    formats = {
        r["col_name"]: r["data_type"]
        for r in spark.sql(f"describe formatted job_parquet.exp_{seeded.typed}").collect()
    }
    assert formats["Provider"] == "parquet"
    folders = os.listdir(Path(formats["Location"].removeprefix("file:")).parent)
    assert len(folders) == 1  # the first version's folder was removed


def test_a_view_that_cannot_be_created_is_one_warning_not_a_failed_build(
    spark: Any, seeded: Seeded, caplog: pytest.LogCaptureFixture
) -> None:
    # A table named like a view: CREATE OR REPLACE VIEW refuses to replace it.
    spark.sql("create database if not exists job_view_blocked")
    spark.sql("create table job_view_blocked.best_runs (x int) using delta")
    with caplog.at_level(logging.WARNING, logger="mlflow_fun.load.job"):
        result = _job(spark, seeded, "job_view_blocked", seeded.best)
    assert [(r.status, r.run_count) for r in result.results] == [("ok", 7)]
    warnings = [r.getMessage() for r in caplog.records if r.name == "mlflow_fun.load.job"]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("analyst views not created database=job_view_blocked error=")
    assert "\n" not in warnings[0]
    assert spark.table(f"job_view_blocked.exp_{seeded.best}").count() == 7
    assert spark.table("job_view_blocked.metrics_long").count() == 11  # created before it
    assert spark.table("job_view_blocked.best_runs").columns == ["x"]
