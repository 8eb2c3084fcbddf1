"""What the `api` source retries, and how MLflow's client failures are said: one line."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.exceptions import MlflowException, RestException

from mlflow_fun.errors import TrackingServerError
from mlflow_fun.extract.http import RetrySettings
from mlflow_fun.extract.mlflow_client import MlflowClientSource, is_transient

URL = "http://127.0.0.1:5000/api/2.0/mlflow/experiments/get"


@pytest.mark.parametrize(
    ("error", "transient"),
    [  # the messages MLflow 3.17's rest_utils raises
        (MlflowException(f"API request to {URL} failed with exception ('Connection broken: "
                         "IncompleteRead(100 bytes read, 100 more expected)')"), True),
        (MlflowException(f"API request to {URL} failed with timeout exception Read timed out."),
         True),
        (MlflowException("API request to endpoint was successful but the response body was "
                         "not in a valid JSON format. Response body: '{\"exp'"), True),
        (MlflowException("API request to endpoint /api/2.0/mlflow/runs/search failed with "
                         "error code 503 != 200. Response body: 'busy'"), True),
        (RestException({"error_code": "TEMPORARILY_UNAVAILABLE", "message": "x"}), True),
        (RestException({"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "x"}), True),
        (RestException({"error_code": "PERMISSION_DENIED", "message": "no"}), False),
        (RestException({"error_code": "INVALID_PARAMETER_VALUE", "message": "bad filter"}), False),
        (MlflowException("API request to endpoint /x failed with error code 403 != 200."), False),
    ],
)  # fmt: skip
def test_what_is_retried(error: Exception, transient: bool) -> None:
    assert is_transient(error) is transient


def test_a_store_mlflow_refuses_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(TrackingServerError) as caught:
        MlflowClientSource(f"file://{tmp_path}/mlruns", retry=RetrySettings(max_retries=0))
    message = str(caught.value)
    prefix = f"MLflow's client failed at file://{tmp_path}/mlruns (MlflowClient): "
    assert message.startswith(prefix)
    assert "\n" not in message and len(message) <= len(prefix) + 300
