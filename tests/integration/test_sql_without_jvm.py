"""``mlflow-fun sql`` on DuckDB over the job's Delta tables: Spark's answers, no JVM."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from mlflow_fun.cli.main import main
from mlflow_fun.config import JobConfig
from mlflow_fun.load.job import run_job
from tests.seed import Seeded

DATABASE = "local_sql"


@pytest.fixture(scope="module")
def tables_dir(spark: Any, seeded: Seeded) -> str:
    ids = (seeded.paged, seeded.best, seeded.typed, seeded.odd_keys)
    config = JobConfig(
        database=DATABASE, experiment_ids=ids, tracking_uri=seeded.url, with_history=True
    )
    run_job(config, spark=spark, progress=False)
    return str(Path(urlparse(spark.conf.get("spark.sql.warehouse.dir")).path).parent)


def _queries(s: Seeded) -> dict[str, str]:
    return {
        "classic": f"select run_uuid, round(_m_rmse,4) as _m_rmse, _p_alpha from exp_{s.paged} "
        "order by _m_rmse limit 3",
        "every type": f"select * from exp_{s.typed} order by run_id",
        "odd keys": f"select * from {DATABASE}.exp_{s.odd_keys} order by run_id",
        "where with OR": f"select count(*) as n, max(_m_rmse) as worst from exp_{s.paged} "
        "where _p_alpha < 1.0 or _m_rmse > 0.2",
        "NULL first": f"select run_id, _m_rmse from exp_{s.best} order by _m_rmse, run_id",
        "join and map": "select r.run_id, r.metrics['rmse'] as rmse, e.name as experiment "
        "from runs r join experiments e on e.experiment_id = r.experiment_id "
        f"where r.experiment_id = '{s.best}' order by rmse desc, r.run_id",
        "group by": "select experiment_id, count(*) as n, avg(metrics['rmse']) as mean, "
        "min(start_time) as first from runs group by experiment_id order by experiment_id",
        "history": f"select run_id, key, step, value, timestamp from metric_history "
        f"where experiment_id = '{s.paged}' order by run_id, key, step limit 5",
        "cte": f"with t as (select run_id, _m_rmse from exp_{s.paged}) "
        "select run_id from t where _m_rmse < 0.05 order by run_id",
        "no table": "select double('NaN') as n, -double('Infinity') as m, "
        "map('k', double('NaN')) as nested, 1.5 as x",
    }


SPARK_ONLY = {
    "a view": "select metric, run_id from best_runs order by metric",
    "an unnamed column": "select count(*) from runs",
    "a struct": "select named_struct('a', 1) as s",
    "not a select": "show tables",
}


def _sql(tables_dir: str, query: str, output: str, *engine: str) -> str:
    argv = ["sql", "--data-dir", tables_dir, "--database", DATABASE, "--output", output]
    assert main([*argv, *engine, query]) == 0
    return ""


def _rows(printed: str, output: str) -> int:
    """How many rows ``printed`` holds."""
    if output == "json":
        return len(json.loads(printed, parse_constant=str))
    return len(printed.splitlines()) - {"csv": 1, "table": 4}[output]


@pytest.mark.parametrize("output", ["csv", "json", "table"])
def test_duckdb_gives_sparks_answers(
    spark: Any,
    tables_dir: str,
    seeded: Seeded,
    output: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    spark.catalog.setCurrentDatabase(DATABASE)
    counts = {name: spark.sql(query).count() for name, query in _queries(seeded).items()}
    for name, query in _queries(seeded).items():
        with caplog.at_level(logging.INFO, logger="mlflow_fun.cli.sql"):
            _sql(tables_dir, query, output)
        local = capsys.readouterr().out
        assert "asking Spark" not in caplog.text, f"{name}: {caplog.text}"
        _sql(tables_dir, query, output, "--engine", "spark")
        spark = capsys.readouterr().out
        assert local == spark, f"{name} ({output}): DuckDB and Spark differ"
        assert _rows(local, output) == counts[name] >= 1, name


def test_what_duckdb_cannot_answer_goes_to_spark(
    tables_dir: str, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    reasons = {
        "a view": "no Delta table local_sql.best_runs",
        "an unnamed column": "the column 'COUNT(*)' has no name (add AS)",
        "a struct": "a STRUCT column (Spark answers with Rows)",
        "not a select": "not a single SELECT",
    }
    for name, query in SPARK_ONLY.items():
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="mlflow_fun.cli.sql"):
            _sql(tables_dir, query, "csv")
        assert f"asking Spark: {reasons[name]}" in caplog.text, name
        assert capsys.readouterr().out.count("\n") >= 2, name
