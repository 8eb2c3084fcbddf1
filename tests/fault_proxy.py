"""A loopback HTTP proxy in front of a real mlflow server that injects faults on request.

``rule(method, path, body)`` returns a `Reply` to send instead of forwarding, or None to
forward the request to the server unchanged.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

from tests.scripted_http import Reply

Rule = Callable[[str, str, bytes], "Reply | None"]


@contextmanager
def fault_proxy(upstream: str, rule: Rule) -> Iterator[str]:
    """Serve a proxy to ``upstream`` that applies ``rule``; yield its URL."""
    session = requests.Session()

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            reply = rule(self.command, self.path, body)
            if reply is None:
                upstream_response = session.request(
                    self.command,
                    upstream + self.path,
                    data=body,
                    headers={"Content-Type": self.headers.get("Content-Type", "")},
                    timeout=60,
                )
                reply = Reply(upstream_response.status_code, upstream_response.content)
            self.send_response(reply.status)
            for key, value in reply.headers.items():
                self.send_header(key, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        do_GET = _handle
        do_POST = _handle

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        session.close()
