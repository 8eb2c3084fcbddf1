"""The spark tier: the session's local Spark and tiny inline data, no MLflow server."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Mapping
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
