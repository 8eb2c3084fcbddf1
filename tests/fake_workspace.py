"""A loopback server that behaves like a Databricks workspace in front of a real MLflow server.

It serves what databricks-sdk's ``Config`` asks a workspace for (``/.well-known/
databricks-config``, the OIDC discovery document, the OAuth token endpoint for client
credentials) and proxies ``/api/2.0/mlflow/...`` and ``/ajax-api/2.0/mlflow/...`` to the
real ``mlflow server``, only with a valid bearer token (the personal access token, or a
token the endpoint issued): anything else is 401 with MLflow's error JSON.

Example:
    >>> with FakeWorkspace(mlflow_url, pat="dapi-x", client=("id", "secret")) as ws:
    ...     ws.url, ws.issued, ws.refused
"""

from __future__ import annotations

import base64
import json
import secrets
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs

import requests

from tests.scripted_http import serve_in_background


class FakeWorkspace:
    """The workspace; ``issued`` counts OAuth tokens given, ``refused`` requests refused."""

    def __init__(self, mlflow_url: str, *, pat: str, client: tuple[str, str]) -> None:
        self.mlflow_url = mlflow_url.rstrip("/")
        self.pat = pat
        self.client_id, self.client_secret = client
        self.tokens: set[str] = set()
        self.issued = 0
        self.refused = 0
        self.proxied = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeWorkspace:
        serve_in_background(self._server)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()

    def issue(self, authorization: str | None, form: dict[str, list[str]]) -> str | None:
        """A new access token for valid client credentials (HTTP basic, as the SDK sends)."""
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if authorization != f"Basic {expected}" or form.get("grant_type") != ["client_credentials"]:
            return None
        token = "oauth-" + secrets.token_hex(16)
        self.tokens.add(token)
        self.issued += 1
        return token

    def allows(self, authorization: str | None) -> bool:
        return authorization in {f"Bearer {t}" for t in (self.pat, *self.tokens)}


def _handler(workspace: FakeWorkspace) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def _serve(self, method: str) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path = self.path.split("?", 1)[0]
            base = workspace.url
            if path == "/.well-known/databricks-config":
                self._json(200, {"oidc_endpoint": f"{base}/oidc", "workspace_id": "1234"})
            elif path == "/oidc/.well-known/oauth-authorization-server":
                self._json(
                    200,
                    {
                        "authorization_endpoint": f"{base}/oidc/v1/authorize",
                        "token_endpoint": f"{base}/oidc/v1/token",
                    },
                )
            elif path == "/oidc/v1/token" and method == "POST":
                token = workspace.issue(self.headers.get("Authorization"), parse_qs(body.decode()))
                if token is None:
                    workspace.refused += 1
                    self._json(401, {"error": "invalid_client"})
                else:
                    reply = {"access_token": token, "token_type": "Bearer", "expires_in": 3600}
                    self._json(200, reply)
            elif path.startswith(("/api/2.0/mlflow/", "/ajax-api/2.0/mlflow/")):
                if not workspace.allows(self.headers.get("Authorization")):
                    workspace.refused += 1
                    self._json(401, {"error_code": "UNAUTHENTICATED", "message": "bad token"})
                    return
                workspace.proxied += 1
                answer = requests.request(
                    method,
                    workspace.mlflow_url + self.path,
                    data=body or None,
                    headers={"Content-Type": self.headers.get("Content-Type", "application/json")},
                    timeout=120,
                )
                self._send(answer.status_code, answer.content)
            else:
                self._json(404, {"error_code": "ENDPOINT_NOT_FOUND", "message": path})

        def _json(self, status: int, document: dict[str, Any]) -> None:
            self._send(status, json.dumps(document).encode())

        def _send(self, status: int, content: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

    return Handler
