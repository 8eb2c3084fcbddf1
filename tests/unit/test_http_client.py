from __future__ import annotations

import base64
import time

import pytest

from mlflow_fun.errors import (
    AuthenticationError,
    ConfigError,
    MalformedResponseError,
    ServerUnreachableError,
    TrackingServerError,
)
from mlflow_fun.extract.http import MlflowHttpClient, RetrySettings, strip_credentials
from mlflow_fun.extract.local_server import free_port
from tests.scripted_http import Reply, scripted_server

FAST = RetrySettings(timeout=2, max_retries=3, backoff_factor=0.01, backoff_jitter=0.01)
TOKEN = "tok-SECRET-123"


def test_retries_transient_statuses_then_succeeds() -> None:
    replies = [Reply(503), Reply(500), Reply(200, b'{"ok": 1}')]
    with scripted_server(replies) as (url, script):
        client = MlflowHttpClient(url, retry=FAST)
        assert client.post("runs/search", {"x": 1}) == {"ok": 1}
    assert script.paths == ["/api/2.0/mlflow/runs/search"] * 3


def test_honours_retry_after() -> None:
    replies = [Reply(429, b"{}", {"Retry-After": "0.4"}), Reply(200, b'{"ok": 2}')]
    with scripted_server(replies) as (url, script):
        client = MlflowHttpClient(url, retry=FAST)
        started = time.monotonic()
        assert client.get("experiments/get", {"experiment_id": "1"}) == {"ok": 2}
        assert time.monotonic() - started >= 0.4
    assert len(script.requests) == 2


def test_retries_are_bounded_and_error_names_endpoint_status_message() -> None:
    body = b'{"error_code": "INTERNAL_ERROR", "message": "database is locked"}'
    with scripted_server([Reply(500, body)]) as (url, script):
        client = MlflowHttpClient(url, retry=FAST)
        with pytest.raises(TrackingServerError) as caught:
            client.post("runs/search", {})
    assert len(script.requests) == FAST.max_retries + 1
    assert str(caught.value) == (
        f"the tracking server at {url} answered HTTP 500 on runs/search: database is locked"
    )
    assert caught.value.status == 500
    assert caught.value.error_code == "INTERNAL_ERROR"


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_are_not_retried_and_token_not_shown(status: int) -> None:
    with scripted_server([Reply(status, b"Unauthorized")]) as (url, script):
        client = MlflowHttpClient(url, token=TOKEN, retry=FAST)
        with pytest.raises(AuthenticationError) as caught:
            client.post("runs/search", {})
    assert len(script.requests) == 1
    assert script.requests[0]["Authorization"] == f"Bearer {TOKEN}"
    assert f"refused the credentials (HTTP {status}) on runs/search" in str(caught.value)
    assert TOKEN not in str(caught.value) and TOKEN not in repr(client)


def test_basic_auth_from_arguments_and_from_url() -> None:
    with scripted_server([Reply(200)]) as (url, script):
        MlflowHttpClient(url, username="bob", password="pw1", retry=FAST).get("x")
        with_user = url.replace("http://", "http://ann:pw2@")
        client = MlflowHttpClient(with_user, retry=FAST)
        client.get("x")
    expected = [base64.b64encode(b"bob:pw1").decode(), base64.b64encode(b"ann:pw2").decode()]
    assert [r["Authorization"] for r in script.requests] == [f"Basic {e}" for e in expected]
    assert client.base_url == url and "pw2" not in repr(client)


def test_malformed_json_after_retries() -> None:
    with scripted_server([Reply(200, b'{"runs": [')]) as (url, script):
        client = MlflowHttpClient(url, retry=FAST)
        with pytest.raises(MalformedResponseError, match="runs/search that is not JSON"):
            client.post("runs/search", {})
    assert len(script.requests) == FAST.max_retries + 1


def test_json_that_is_not_an_object() -> None:
    with (
        scripted_server([Reply(200, b"[1, 2]")]) as (url, _),
        pytest.raises(MalformedResponseError, match="JSON list for runs/search"),
    ):
        MlflowHttpClient(url, retry=FAST).post("runs/search", {})


def test_unreachable_server_names_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    client = MlflowHttpClient(url, retry=FAST)
    with pytest.raises(ServerUnreachableError) as caught:
        client.get("experiments/get")
    assert str(caught.value) == (
        f"cannot reach the tracking server at {url} (experiments/get): connection refused; "
        "check that the server runs and the URL is right"
    )


def test_stalled_server_times_out() -> None:
    settings = RetrySettings(timeout=0.3, max_retries=1, backoff_factor=0.01, backoff_jitter=0)
    with (
        scripted_server([Reply(200, b"{}", delay=1.0)]) as (url, script),
        pytest.raises(ServerUnreachableError, match="no answer within the timeout"),
    ):
        MlflowHttpClient(url, retry=settings).get("experiments/get")
    assert len(script.requests) == 2


def test_retry_settings_from_env() -> None:
    settings = RetrySettings.from_env(
        {"MLFLOW_HTTP_REQUEST_TIMEOUT": "5", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1"}
    )
    assert (settings.timeout, settings.max_retries) == (5.0, 1)
    with pytest.raises(ConfigError, match="MLFLOW_HTTP_REQUEST_TIMEOUT='soon' is not a number"):
        RetrySettings.from_env({"MLFLOW_HTTP_REQUEST_TIMEOUT": "soon"})


def test_not_http_is_rejected() -> None:
    with pytest.raises(ConfigError, match="is not an http"):
        MlflowHttpClient("sqlite:///x.db")


def test_strip_credentials() -> None:
    assert strip_credentials("https://u:p@h:5000/a?t=1") == "https://h:5000/a"
    assert strip_credentials("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
