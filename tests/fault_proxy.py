"""A loopback HTTP proxy in front of a real mlflow server that injects faults.

``rule(method, path, body)`` returns what to do with a request: None to forward it
unchanged, a `Reply` to answer instead, or a `Fault` (reset the connection, stall past
the client's timeout, truncate the server's JSON, cut the connection half-way through the
body it announced, or send a page twice).

`FaultSchedule` is a seeded rule: whether a request gets a fault, and which, depends only
on the seed, the request and how often the same request was seen, so a schedule replays
the same way whatever the order of concurrent requests.
"""

from __future__ import annotations

import hashlib
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

from tests.scripted_http import Reply, serve_in_background

FAULT_KINDS = ("429", "503", "500", "reset", "stall", "truncate", "cut", "duplicate")


@dataclass(frozen=True)
class Fault:
    kind: str  # "reset", "stall", "truncate", "cut" or "duplicate"
    seconds: float = 0.0


Rule = Callable[[str, str, bytes], "Reply | Fault | None"]


class FaultSchedule:
    """Inject a fault into a share ``rate`` of requests, chosen by ``seed``.

    Args:
        seed: The schedule's seed.
        rate: Share of requests that get a fault (0 to 1).
        stall_seconds: How long a stall lasts (longer than the client's timeout).
        paths: Only requests whose path contains one of these get faults.
    """

    def __init__(
        self,
        seed: int,
        rate: float,
        stall_seconds: float = 1.0,
        paths: tuple[str, ...] = ("/api/2.0/mlflow/",),
    ) -> None:
        self.seed = seed
        self.rate = rate
        self.stall_seconds = stall_seconds
        self.paths = paths
        self.counts: Counter[str] = Counter()
        self.requests = 0
        self._seen: Counter[bytes] = Counter()
        self._lock = threading.Lock()

    @property
    def total(self) -> int:
        """Faults injected so far."""
        return sum(self.counts.values())

    def __call__(self, method: str, path: str, body: bytes) -> Reply | Fault | None:
        if not any(p in path for p in self.paths):
            return None
        request_key = method.encode() + path.encode() + b"\0" + body
        with self._lock:
            self.requests += 1
            attempt = self._seen[request_key]
            self._seen[request_key] += 1
        digest = hashlib.sha256(f"{self.seed}:{attempt}:".encode() + request_key).digest()
        rng = random.Random(digest)
        if rng.random() >= self.rate:
            return None
        kind = rng.choice(FAULT_KINDS)
        if kind == "duplicate" and not path.endswith("/runs/search"):
            kind = "503"
        with self._lock:
            self.counts[kind] += 1
        if kind == "429":
            return Reply(429, b'{"error_code": "RATE_LIMITED"}', {"Retry-After": "0.1"})
        if kind in ("503", "500"):
            message = b'{"error_code": "TEMPORARILY_UNAVAILABLE", "message": "injected"}'
            return Reply(int(kind), message)
        return Fault(kind, self.stall_seconds if kind == "stall" else 0.0)


@contextmanager
def fault_proxy(upstream: str, rule: Rule) -> Iterator[str]:
    """Serve a proxy to ``upstream`` that applies ``rule``; yield its URL."""
    session = requests.Session()
    last_pages: dict[bytes, bytes] = {}
    pages_lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _forward(self, body: bytes) -> Reply:
            response = session.request(
                self.command,
                upstream + self.path,
                data=body,
                headers={"Content-Type": self.headers.get("Content-Type", "")},
                timeout=60,
            )
            return Reply(response.status_code, response.content)

        def _send(self, reply: Reply) -> None:
            self.send_response(reply.status)
            for key, value in reply.headers.items():
                self.send_header(key, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            action = rule(self.command, self.path, body)
            if isinstance(action, Reply):
                self._send(action)
                return
            if action is None:
                reply = self._forward(body)
            elif action.kind == "reset":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            elif action.kind == "stall":
                time.sleep(action.seconds)
                reply = self._forward(body)
            elif action.kind == "truncate":
                reply = self._forward(body)
                reply = Reply(reply.status, reply.body[: max(1, len(reply.body) // 2)])
            elif action.kind == "cut":  # the whole length announced, half sent, then hung up
                reply = self._forward(body)
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body[: len(reply.body) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            else:  # "duplicate": the page sent before for the same search, if any
                stream = _search_stream(body)
                with pages_lock:
                    previous = last_pages.get(stream)
                reply = Reply(200, previous) if previous else self._forward(body)
            if self.path.endswith("/runs/search") and reply.status == 200:
                with pages_lock:
                    last_pages[_search_stream(body)] = reply.body
            self._send(reply)

        do_GET = _handle
        do_POST = _handle

        def log_message(self, *args: object) -> None:
            return

    class QuietServer(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: object, client_address: object) -> None:
            return  # clients that timed out and hung up are part of the plan

    server = QuietServer(("127.0.0.1", 0), Handler)
    serve_in_background(server)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        session.close()


def _search_stream(body: bytes) -> bytes:
    """The search a runs/search body belongs to, without its page token."""
    import json

    try:
        decoded = json.loads(body)
    except ValueError:
        return body
    decoded.pop("page_token", None)
    decoded.pop("max_results", None)
    return json.dumps(decoded, sort_keys=True).encode()
