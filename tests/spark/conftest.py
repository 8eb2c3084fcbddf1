"""The spark tier: the session's local Spark and tiny inline data, no MLflow server."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from mlflow_fun.model import RunRecord

_databases = itertools.count()


@pytest.fixture
def database(spark: Any) -> str:
    """A fresh database name for one test (created by the code under test)."""
    return f"tier_{next(_databases)}_{dt.datetime.now():%H%M%S}"


def make_run(
    run_id: str,
    experiment_id: str,
    start_ms: int | None,
    metrics: Mapping[str, float],
    params: Mapping[str, str] | None = None,
) -> RunRecord:
    """A run as a source yields it."""
    info = {
        "run_name": f"name-{run_id}",
        "experiment_id": experiment_id,
        "user_id": "ann",
        "status": "FINISHED",
        "lifecycle_stage": "active",
        "start_time": start_ms,
        "end_time": None if start_ms is None else start_ms + 10,
        "artifact_uri": f"file:/a/{run_id}",
    }
    return RunRecord(run_id, info, dict(metrics), dict(params or {}), {})


def location_of(spark: Any, table: str) -> str:
    """The local folder of ``table`` (its metastore entry's location)."""
    rows = spark.sql(f"DESCRIBE FORMATTED {table}").collect()
    location = next(str(r[1]) for r in rows if r[0] == "Location")
    return location.removeprefix("file:")


def engines_of(spark: Any, table: str) -> list[str]:
    """Who wrote each version of ``table``: delta-rs or Spark (its commitInfo says)."""
    log = Path(location_of(spark, table)) / "_delta_log"
    engines = []
    for commit in sorted(log.glob("*.json")):
        info = next(a["commitInfo"] for a in map(json.loads, commit.open()) if "commitInfo" in a)
        engines.append("delta-rs" if "delta-rs" in str(info.get("clientVersion")) else "spark")
    return engines
