"""Kept-alive connections, ``Connection: close`` (two streams on one worker) and the
quick acknowledgement of answers a server holds back (Nagle's algorithm)."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from mlflow_fun.extract.http import MlflowHttpClient, RetrySettings
from mlflow_fun.extract.quick_ack import QUICK_ACK
from mlflow_fun.extract.rest import RestSource
from tests.scripted_http import serve_in_background

FAST = RetrySettings(timeout=5, max_retries=1, backoff_factor=0.01, backoff_jitter=0.01)


@dataclass
class Seen:
    """What the server saw: per request, the client's port and its Connection header."""

    client_ports: list[int] = field(default_factory=list)
    connection_headers: list[str | None] = field(default_factory=list)
    bodies: list[dict[str, object]] = field(default_factory=list)


def _page(body: dict[str, object]) -> bytes:
    """A ``runs/search`` answer: two runs per page, three pages in all."""
    page = int(str(body.get("page_token") or "0"))
    runs = [{"info": {"run_id": f"r{page}{i}", "experiment_id": "1"}, "data": {}} for i in range(2)]
    answer: dict[str, object] = {"runs": runs}
    if page < 2:
        answer["next_page_token"] = str(page + 1)
    return json.dumps(answer).encode()


@contextmanager
def keep_alive_server() -> Iterator[tuple[str, Seen]]:
    """An HTTP/1.1 server that keeps connections open unless the client says close."""
    seen = Seen()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.client_ports.append(self.client_address[1])
            seen.connection_headers.append(self.headers.get("Connection"))
            seen.bodies.append(body)
            answer = _page(body)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    serve_in_background(server)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_post_keeps_the_connection_by_default() -> None:
    with keep_alive_server() as (url, seen):
        client = MlflowHttpClient(url, retry=FAST)
        for _ in range(3):
            client.post("runs/search", {})
        client.close()
    assert len(set(seen.client_ports)) == 1
    assert "close" not in [(h or "").lower() for h in seen.connection_headers]


def test_post_with_close_connection_opens_a_new_connection_for_the_next_request() -> None:
    with keep_alive_server() as (url, seen):
        client = MlflowHttpClient(url, retry=FAST)
        for _ in range(3):
            assert client.post("runs/search", {}, close_connection=True)["runs"]
        client.close()
    assert seen.connection_headers == ["close"] * 3
    assert len(set(seen.client_ports)) == 3


def test_iter_runs_closes_the_connection_after_big_pages_only() -> None:
    with keep_alive_server() as (url, seen):
        big = RestSource(MlflowHttpClient(url, retry=FAST), page_size=5_000)
        assert [r.run_id for r in big.iter_runs("1")] == ["r00", "r01", "r10", "r11", "r20", "r21"]
        small = RestSource(MlflowHttpClient(url, retry=FAST), page_size=999)
        assert len(list(small.iter_runs("1"))) == 6
        assert len(list(big.iter_runs("1", max_results=1))) == 1
    assert seen.connection_headers[:3] == ["close"] * 3
    assert "close" not in [(h or "").lower() for h in seen.connection_headers[3:]]
    assert [b["max_results"] for b in seen.bodies] == [5_000] * 3 + [999] * 3 + [1]
    assert len(set(seen.client_ports[:3])) == 3
    assert len(set(seen.client_ports[3:6])) == 1


def _median_ms(call: Callable[[], object], times: int = 7) -> float:
    """The median wall time of ``call()`` over ``times`` calls, in milliseconds."""
    spent = []
    for _ in range(times):
        started = time.perf_counter()
        call()
        spent.append(1000 * (time.perf_counter() - started))
    return statistics.median(spent)


@pytest.mark.skipif(QUICK_ACK is None, reason="TCP_QUICKACK is Linux's")
def test_an_answer_held_back_by_nagle_is_not_delayed_40_ms() -> None:
    # The test server, like a multi-worker `mlflow server`, writes the headers and the body
    # in two sends without TCP_NODELAY: the body waits for the client's acknowledgement of
    # the headers, which Linux delays by 40 ms unless asked not to.
    with keep_alive_server() as (url, _):
        plain = requests.Session()
        held_back = _median_ms(lambda: plain.post(f"{url}/api/2.0/mlflow/runs/search", json={}))
        plain.close()
        client = MlflowHttpClient(url, retry=FAST)
        quick = _median_ms(lambda: client.post("runs/search", {}))
        client.close()
    assert held_back >= 35, f"the test server did not hold its answers back ({held_back:.1f} ms)"
    assert quick < 20, f"the client still waited for a delayed acknowledgement ({quick:.1f} ms)"
