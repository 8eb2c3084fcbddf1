"""One HTTP wrapper for MLflow's REST API: base URL, auth, timeout, retries, errors.

Retries cover every transient failure the same way (connection refused or reset, a read
timeout, a body cut short, HTTP 408/429/500/502/503/504, a 2xx body that is not JSON):
exponential backoff with jitter, ``Retry-After`` honoured, bounded in count. The knobs
use MLflow's own environment variable names, so a user's existing settings apply; the
defaults are shorter than MLflow's (5 retries from 0.5 s, about 16 s in all, instead of
7 from 2 s) so that a command-line user with a wrong URL hears of it quickly.

Secrets are held only in the session's headers; no log line, exception or repr shows them.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

from mlflow_fun.errors import (
    AuthenticationError,
    ConfigError,
    MalformedResponseError,
    ServerUnreachableError,
    TrackingServerError,
)
from mlflow_fun.extract.http_failures import (
    RETRYABLE_STATUSES,
    TRANSIENT_ERRORS,
    describe_transport_error,
    first_line,
    retry_after_seconds,
    server_message,
    ssl_reason,
)
from mlflow_fun.extract.quick_ack import mount_quick_ack

logger = logging.getLogger(__name__)


API_PREFIX = "/api/2.0/mlflow/"
AJAX_PREFIX = "/ajax-api/2.0/mlflow/"


@dataclass(frozen=True)
class RetrySettings:
    """How a request is timed and retried.

    Attributes:
        timeout: Seconds to wait for a connection and for each read.
        max_retries: Retries after the first attempt (0 means one attempt).
        backoff_factor: First backoff in seconds; doubled at every retry.
        backoff_jitter: Up to this many random seconds added to each backoff.
        backoff_max: No single wait (backoff or ``Retry-After``) is longer than this.
    """

    timeout: float = 120.0
    max_retries: int = 5
    backoff_factor: float = 0.5
    backoff_jitter: float = 0.5
    backoff_max: float = 30.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RetrySettings:
        """Read the settings from MLflow's ``MLFLOW_HTTP_REQUEST_*`` variables.

        Raises:
            ConfigError: A variable is set to something that is not a number >= 0.
        """
        env = os.environ if env is None else env
        defaults = cls()
        return cls(
            timeout=_env_number(env, "MLFLOW_HTTP_REQUEST_TIMEOUT", defaults.timeout),
            max_retries=int(
                _env_number(env, "MLFLOW_HTTP_REQUEST_MAX_RETRIES", defaults.max_retries)
            ),
            backoff_factor=_env_number(
                env, "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", defaults.backoff_factor
            ),
            backoff_jitter=_env_number(
                env, "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", defaults.backoff_jitter
            ),
            backoff_max=_env_number(env, "MLFLOW_FUN_HTTP_BACKOFF_MAX", defaults.backoff_max),
        )

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        base = self.backoff_factor * (2**attempt)
        return min(self.backoff_max, base + random.uniform(0, self.backoff_jitter))


@dataclass(frozen=True)
class TlsSettings:
    """How the server's certificate is checked, and the client's own certificate.

    Attributes:
        verify: True (the system's CAs), a CA bundle path, or False (no check).
        cert: A client certificate (PEM, with its key) for mutual TLS, or None.
    """

    verify: bool | str = True
    cert: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TlsSettings:
        """MLflow's variables: ``MLFLOW_TRACKING_SERVER_CERT_PATH`` (CA bundle),
        ``MLFLOW_TRACKING_CLIENT_CERT_PATH``, ``MLFLOW_TRACKING_INSECURE_TLS``.

        Raises:
            ConfigError: A named file does not exist, or a CA bundle and
                ``MLFLOW_TRACKING_INSECURE_TLS`` are both set (as MLflow refuses them).
        """
        env = os.environ if env is None else env
        insecure_flag = (env.get("MLFLOW_TRACKING_INSECURE_TLS") or "").strip().lower()
        insecure = insecure_flag in ("1", "true", "yes")
        ca, cert = (env.get(f"MLFLOW_TRACKING_{w}_CERT_PATH") or None for w in ("SERVER", "CLIENT"))
        for name, path in (("SERVER", ca), ("CLIENT", cert)):
            if path is not None and not os.path.isfile(path):
                raise ConfigError(f"MLFLOW_TRACKING_{name}_CERT_PATH={path!r}: no such file")
        if insecure and ca is not None:
            raise ConfigError(
                "MLFLOW_TRACKING_INSECURE_TLS and MLFLOW_TRACKING_SERVER_CERT_PATH are both "
                "set: unset one (a CA bundle checks the server; insecure skips the check)"
            )
        return cls(verify=ca or not insecure, cert=cert)


def _env_number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if value < 0:
        raise ConfigError(f"{name}={raw!r} must be >= 0")
    return value


def paged_items(
    fetch: Callable[[dict[str, Any]], Mapping[str, Any]],
    request: dict[str, Any],
    key: str,
    endpoint: str,
) -> Iterator[Any]:
    """The items under ``key`` of every page of a paginated search.

    ``fetch`` sends ``request`` (query parameters or a body; its ``page_token`` is set from
    the previous page's ``next_page_token``) and returns the decoded page.

    Example:
        >>> paged_items(lambda p: client.get("model-versions/search", p),
        ...             {"max_results": 1000}, "model_versions", "model-versions/search")

    Raises:
        MalformedResponseError: A page holds something else than a list under ``key``.
    """
    while True:
        page = fetch(request)
        items = page.get(key, [])
        if not isinstance(items, list):
            raise MalformedResponseError(
                f"{endpoint} sent {key!r} that is not a list", endpoint=endpoint
            )
        yield from items
        token = page.get("next_page_token")
        if not token:
            return
        request["page_token"] = token


def strip_credentials(url: str) -> str:
    """Return ``url`` without a ``user:password@`` part and without a query string.

    Example:
        >>> strip_credentials("https://bob:s3cret@host:5000/path?token=x")
        'https://host:5000/path'
    """
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return url.split("?", 1)[0]
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class MlflowHttpClient:
    """Calls MLflow REST endpoints under ``<base_url>/api/2.0/mlflow/``.

    Example:
        >>> client = MlflowHttpClient("http://127.0.0.1:5000", token=os.environ.get("TOKEN"))
        >>> client.get("experiments/get", {"experiment_id": "1"})["experiment"]["name"]

    Args:
        base_url: Tracking server URL, e.g. ``http://127.0.0.1:5000``. Credentials in the
            URL (``http://user:pw@host``) are moved to a basic-auth header.
        token: Bearer token, sent as ``Authorization: Bearer``.
        username: Basic-auth user name (with ``password``).
        password: Basic-auth password.
        auth: Any other request auth, e.g. Databricks' (`mlflow_fun.extract.databricks`);
            it wins over ``token`` and ``username``.
        tls: Certificates; MLflow's environment variables by default.
        retry: Timeout and retry settings; MLflow's environment variables by default.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        auth: requests.auth.AuthBase | None = None,
        tls: TlsSettings | None = None,
        retry: RetrySettings | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"tracking URI {strip_credentials(base_url)!r} is not an http(s) URL")
        if parts.username and not username:
            username, password = parts.username, parts.password or ""
        self.base_url = strip_credentials(base_url).rstrip("/")
        self.retry = retry or RetrySettings.from_env()
        # Against a multi-worker mlflow server, 1 ms a small request instead of 44.
        self._session = mount_quick_ack(requests.Session())
        # Given with each request: a session's own setting loses to REQUESTS_CA_BUNDLE.
        self._tls = tls or TlsSettings.from_env()
        self._session.headers["User-Agent"] = "mlflow-fun"
        if auth is not None:
            self._session.auth = auth
        elif token:
            self._session.headers["Authorization"] = f"Bearer {token}"
        elif username:
            self._session.auth = (username, password or "")

    def __repr__(self) -> str:
        return f"MlflowHttpClient({self.base_url!r})"

    def close(self) -> None:
        """Close the underlying connection pool."""
        self._session.close()

    def get(
        self, endpoint: str, params: Mapping[str, Any] | None = None, *, prefix: str = API_PREFIX
    ) -> dict[str, Any]:
        """GET ``endpoint`` with query ``params``; return the decoded JSON object.

        A list value repeats the parameter (``run_id=a&run_id=b``). ``prefix`` is the path
        before ``endpoint`` (MLflow's bulk history lives under `AJAX_PREFIX`).
        """
        return self._request("GET", endpoint, params=params, prefix=prefix)

    def post(
        self, endpoint: str, body: Mapping[str, Any], *, close_connection: bool = False
    ) -> dict[str, Any]:
        """POST ``body`` as JSON to ``endpoint``; return the decoded JSON object.

        ``close_connection`` asks the server to close the connection after its answer
        (``Connection: close``), so that the next request opens a new one. A multi-worker
        server (``mlflow server --workers N``, uvicorn) keeps a kept-alive connection on
        the worker that accepted it: two streams can then share one worker while another
        idles. A new connection is accepted by whichever worker is free first. Worth it
        before a request that keeps the server busy for long (a big ``runs/search`` page),
        not before small ones.
        """
        headers = {"Connection": "close"} if close_connection else None
        return self._request("POST", endpoint, body=body, headers=headers)

    def _request(
        self,
        method: str,
        endpoint: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
        prefix: str = API_PREFIX,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        url = self.base_url + prefix + endpoint
        attempt = 0
        while True:
            wait: float | None = None
            try:
                response = self._session.request(
                    method,
                    url,
                    params=params,
                    json=body,
                    headers=headers,
                    timeout=self.retry.timeout,
                    verify=self._tls.verify,
                    cert=self._tls.cert,
                )
                content = response.content
            except requests.exceptions.SSLError as e:  # retrying will not change a certificate
                raise ServerUnreachableError(
                    f"TLS with the tracking server at {self.base_url} ({endpoint}) failed: "
                    f"{ssl_reason(e)}; set MLFLOW_TRACKING_SERVER_CERT_PATH to the CA bundle "
                    "that signed its certificate",
                    endpoint=endpoint,
                ) from e
            except TRANSIENT_ERRORS as e:
                failure: TrackingServerError = ServerUnreachableError(
                    f"cannot reach the tracking server at {self.base_url} ({endpoint}): "
                    f"{describe_transport_error(e)}; check that the server runs and the "
                    "URL is right",
                    endpoint=endpoint,
                )
                failure.__cause__ = e
            else:
                if 200 <= response.status_code < 300:
                    try:
                        decoded = json.loads(content)
                    except ValueError as e:
                        failure = MalformedResponseError(
                            f"the tracking server at {self.base_url} sent a response to "
                            f"{endpoint} that is not JSON ({len(content)} bytes): {e}",
                            endpoint=endpoint,
                            status=response.status_code,
                        )
                    else:
                        if isinstance(decoded, dict):
                            return decoded
                        failure = MalformedResponseError(
                            f"the tracking server at {self.base_url} sent a JSON "
                            f"{type(decoded).__name__} for {endpoint}, expected an object",
                            endpoint=endpoint,
                            status=response.status_code,
                        )
                else:
                    failure = self._status_error(endpoint, response.status_code, content)
                    if response.status_code not in RETRYABLE_STATUSES:
                        raise failure
                    wait = retry_after_seconds(response.headers.get("Retry-After"))
            if attempt >= self.retry.max_retries:
                raise failure
            delay = self.retry.backoff(attempt)
            if wait is not None:
                delay = min(self.retry.backoff_max, max(wait, 0.0))
            logger.info(
                "retrying endpoint=%s attempt=%d wait_s=%.2f reason=%s",
                endpoint,
                attempt + 1,
                delay,
                first_line(str(failure)),
            )
            time.sleep(delay)
            attempt += 1

    def _status_error(self, endpoint: str, status: int, content: bytes) -> TrackingServerError:
        message, error_code = server_message(content)
        if status in (401, 403):
            return AuthenticationError(
                f"the tracking server at {self.base_url} refused the credentials "
                f"(HTTP {status}) on {endpoint}: {message}; check "
                "MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD",
                endpoint=endpoint,
                status=status,
                server_message=message,
            )
        return TrackingServerError(
            f"the tracking server at {self.base_url} answered HTTP {status} on {endpoint}: "
            f"{message}",
            endpoint=endpoint,
            status=status,
            server_message=message,
            error_code=error_code,
        )
