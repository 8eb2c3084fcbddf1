"""What a local session leaves in its process's environment."""

from __future__ import annotations

import os

import pytest

from mlflow_fun.session import spark_home


@pytest.mark.usefixtures("spark")
def test_a_local_session_exports_spark_home() -> None:
    """Exported before the JVM starts: `spark-submit` would otherwise start `python3` to
    find it at each session's start."""
    assert os.environ.get("SPARK_HOME") == spark_home()
