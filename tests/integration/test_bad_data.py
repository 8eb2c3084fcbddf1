"""Bad data from MLflow, bad input from users, secrets, SQL injection: nothing lost or leaked."""

from __future__ import annotations

import math
import os
import string
import subprocess
import sys
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from mlflow_fun.cli.main import main
from mlflow_fun.config import JobConfig
from mlflow_fun.load.job import run_job
from mlflow_fun.transform.frames import column_keys
from mlflow_fun.transform.typing_rules import convert_param
from tests.seed import Seeded

SCRIPT = Path(sys.executable).parent / "mlflow-fun"
EVERY_CHAR_KEY = "k " + string.ascii_letters + string.digits + "_-.:/x"
LONG_KEY = "L" * 250
EXPERIMENT_NAME = 'it\'s "quoted" — ünïcödé 実験 `x`; drop table y'


@pytest.fixture(scope="module")
def bad_data(seeded: Seeded) -> str:
    client = MlflowClient(seeded.url)
    experiment_id = client.create_experiment(EXPERIMENT_NAME)
    wide = client.create_run(experiment_id, start_time=1).info.run_id
    params = [Param(f"p{i:04d}", str(i)) for i in range(2000)]
    for start in range(0, len(params), 100):
        client.log_batch(wide, params=params[start : start + 100])
    odd = client.create_run(experiment_id, start_time=2).info.run_id
    client.log_batch(
        odd,
        metrics=[
            Metric("nan", math.nan, 0, 0),
            Metric("inf", math.inf, 0, 0),
            Metric("-inf", -math.inf, 0, 0),
            Metric("huge", 1.7e308, 0, 0),
            Metric("tiny", 5e-324, 0, 0),
            Metric("Metric", 1.0, 0, 0),
            Metric("metric", 2.0, 0, 0),
            Metric(EVERY_CHAR_KEY, 3.0, 0, 0),
            Metric("größe/日本語", 4.0, 0, 0),
            Metric(LONG_KEY, 5.0, 0, 0),
        ],
        params=[
            Param("mixed", "12"),
            Param("long", "v" * 6000),
            Param(EVERY_CHAR_KEY, "every"),
            Param("p0001", "text"),
            Param("Mixed", "x"),
        ],
        tags=[RunTag("long", "t" * 8000), RunTag("quote tag", 'it\'s "x"; drop table y')],
    )
    third = client.create_run(experiment_id, start_time=3).info.run_id
    client.log_batch(third, params=[Param("mixed", "not a number")])
    client.create_experiment("empty ' experiment")
    return experiment_id


def test_every_value_matches_mlflow_search_runs(spark: Any, seeded: Seeded, bad_data: str) -> None:
    config = JobConfig(database="bad_data", experiment_ids=(bad_data,), tracking_uri=seeded.url)
    result = run_job(config, spark=spark, progress=False)
    assert result.results[0].run_count == 3
    table = spark.table(f"bad_data.exp_{bad_data}")
    keys = column_keys(table.schema)
    types = {f.name: f.dataType.simpleString() for f in table.schema.fields}
    rows = {r["run_id"]: r.asDict() for r in table.collect()}

    mlflow.set_tracking_uri(seeded.url)
    expected = mlflow.search_runs(experiment_ids=[bad_data], max_results=10)
    prefixes = {"metric": "metrics.", "param": "params.", "tag": "tags."}
    mlflow_columns = {
        c for c in expected.columns if c.split(".", 1)[0] in ("metrics", "params", "tags")
    }
    assert {prefixes[kind] + key for kind, key in keys.values()} == mlflow_columns
    param_type = {"int": "int", "bigint": "bigint", "double": "double", "boolean": "boolean"}
    checked = 0
    for _, mlflow_row in expected.iterrows():
        row = rows[mlflow_row["run_id"]]
        for column, (kind, key) in keys.items():
            ours, theirs = row[column], mlflow_row[prefixes[kind] + key]
            if kind == "metric":
                if ours is None or math.isnan(ours):
                    assert theirs is None or math.isnan(theirs), (column, ours, theirs)
                else:
                    assert ours == theirs, (column, ours, theirs)
            elif kind == "param":
                typed = (
                    None
                    if theirs is None
                    else convert_param(theirs, param_type.get(types[column], "string"))
                )  # type: ignore[arg-type]
                same = ours == typed or (
                    isinstance(ours, float) and math.isnan(ours) and math.isnan(typed)
                )  # type: ignore[arg-type]
                assert same, (column, ours, theirs)
            else:
                assert ours == (None if theirs is None else theirs), (column, ours, theirs)
            checked += 1
    assert checked == 3 * len(keys) and len(keys) > 2010
    assert types["_p_mixed_2"] == "string" and types["_p_p0001"] == "string"  # _p_Mixed came first
    assert types["_p_p0002"] == "int"
    assert table.schema["_p_long"].metadata["mlflow_key"] == "long"
    status = spark.table("bad_data.mlflow_status").where(f"experiment_id = '{bad_data}'").collect()
    assert status[0]["experiment_name"] == EXPERIMENT_NAME


def test_injection_attempts_touch_nothing(
    spark: Any, seeded: Seeded, bad_data: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = spark.table(f"bad_data.exp_{bad_data}").count()
    best = ["best", "--experiment-id", bad_data, "--metric"]
    attempts = [
        [*best, "huge; drop table bad_data.mlflow_status"],
        [*best, "huge", "--where", "1=1; drop table x"],
        [*best, "huge", "--where", "_m_huge > (select 1)"],
        [*best, "huge", "--source", "table", "--database", "bad_data`; drop table x; --"],
        ["build", "--database", "x; drop database bad_data", "--experiment_ids", bad_data],
        ["build", "--experiment_ids", f"{bad_data}) or (1=1"],
    ]  # fmt: skip
    for argv in attempts:
        code = main([*argv, "--tracking-uri", seeded.url])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 1 and len(err) == 1 and err[0].startswith("mlflow-fun: error: "), (argv, err)
    assert spark.table(f"bad_data.exp_{bad_data}").count() == before
    assert spark.catalog.tableExists("bad_data.mlflow_status")


def _all_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("auth", ["token", "basic"])
def test_secrets_never_written(spark: Any, seeded: Seeded, tmp_path: Path, auth: str) -> None:
    token, user, password = "tok-7Hq9zz-SECRET", "ann", "pw-Kx81-SECRET"
    env = dict(os.environ)
    uri = seeded.url
    if auth == "token":
        env["MLFLOW_TRACKING_TOKEN"] = token
        uri = seeded.url.replace("http://", f"http://{user}:{password}@")
    else:
        env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"] = user, password
    data_dir = tmp_path / "data"
    result = subprocess.run(
        [str(SCRIPT), "--log-level", "DEBUG", "build", "--data_dir", str(data_dir),
         "--tracking_uri", uri, "--experiment_ids", seeded.best, "--progress"],
        capture_output=True, env=env, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert b"DEBUG" in result.stderr  # debug logging was really on
    written = result.stdout + result.stderr + _all_bytes(data_dir)
    for secret in (token, password):
        assert secret.encode() not in written
    status = spark.read.format("delta").load(
        str(data_dir / "warehouse" / "mlflow_metrics.db" / "mlflow_status")
    )
    values = " ".join(str(v) for row in status.collect() for v in row)
    assert token not in values and password not in values
    assert status.collect()[0]["tracking_uri"] == seeded.url
