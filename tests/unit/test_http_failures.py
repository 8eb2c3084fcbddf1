"""`no_connection` over the transport errors requests raises against real loopback
sockets, and what a search does with them: a smaller page for a dropped answer, none
for a server that is not there."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import requests

from mlflow_fun.errors import ServerUnreachableError
from mlflow_fun.extract.http import MlflowHttpClient, RetrySettings
from mlflow_fun.extract.http_failures import no_connection
from mlflow_fun.extract.local_server import free_port
from mlflow_fun.extract.rest import RestSource

FAST = RetrySettings(timeout=0.5, max_retries=1, backoff_factor=0.01, backoff_jitter=0.01)


@contextmanager
def listening(answer: bool) -> Iterator[int]:
    """A loopback socket's port: each connection is read once and then reset
    (``answer``), or left without an answer."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:  # closed: the test is over
                return
            connection.recv(65536)
            if answer:  # a reset, as a server that drops a big page
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
                connection.close()
            else:
                held.append(connection)

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield server.getsockname()[1]
    finally:
        server.close()
        for connection in held:
            connection.close()


def _error(url: str, timeout: float = 0.3) -> Exception:
    with pytest.raises(requests.RequestException) as caught:
        requests.get(url, timeout=timeout)
    return caught.value


def test_refused_and_unknown_hosts_made_no_connection() -> None:
    assert no_connection(_error(f"http://127.0.0.1:{free_port()}/x"))
    assert no_connection(_error("http://no-such-host.invalid/x", timeout=5))


@pytest.mark.parametrize("answer", [True, False], ids=["dropped", "stalled"])
def test_a_connection_dropped_or_stalled_mid_answer_was_made(answer: bool) -> None:
    with listening(answer) as port:
        error = _error(f"http://127.0.0.1:{port}/x")
    assert type(error).__name__ == ("ConnectionError" if answer else "ReadTimeout")
    assert not no_connection(error)
    assert not no_connection(None) and not no_connection(ValueError("not a transport error"))


def test_a_refused_handshake_is_no_connection() -> None:
    assert no_connection(requests.exceptions.SSLError("certificate verify failed"))


def test_a_search_halves_its_page_for_a_dropping_server_not_for_a_gone_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="mlflow_fun.extract.rest"):
        gone = RestSource(MlflowHttpClient(f"http://127.0.0.1:{free_port()}", retry=FAST))
        with pytest.raises(ServerUnreachableError, match="connection refused"):
            list(gone.iter_runs(["1"]))
        assert caplog.messages == []  # one retry budget, not one per halving
        with listening(answer=True) as port:
            dropping = RestSource(MlflowHttpClient(f"http://127.0.0.1:{port}", retry=FAST))
            with pytest.raises(ServerUnreachableError, match="dropped"):
                list(dropping.iter_runs(["1"]))
    assert caplog.messages[:2] == [
        "page dropped; retrying with page_size=2500",
        "page dropped; retrying with page_size=1250",
    ]
