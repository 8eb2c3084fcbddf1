"""What a failed request to MLflow's REST API means: whether retrying can help
(`RETRYABLE_STATUSES`, `TRANSIENT_ERRORS`), how long the server asks to wait
(`retry_after_seconds`), and the one line an error says (`server_message`,
`describe_transport_error`, `ssl_reason`). `mlflow_fun.extract.http.MlflowHttpClient`
acts on them.
"""

from __future__ import annotations

import email.utils
import json
import time

import requests

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
TRANSIENT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)


def server_message(content: bytes) -> tuple[str, str | None]:
    """The first line of the message in an error body, and MLflow's ``error_code`` if any."""
    text = content[:2000].decode("utf-8", errors="replace").strip()
    try:
        decoded = json.loads(content)
    except ValueError:
        return (first_line(text) or "(empty body)"), None
    if isinstance(decoded, dict):
        message = decoded.get("message") or decoded.get("error") or text
        code = decoded.get("error_code")
        return first_line(str(message)), (str(code) if code else None)
    return first_line(text), None


def first_line(text: str, limit: int = 300) -> str:
    """The first line of ``text``, cut to ``limit`` characters."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[:limit] + "..."


def describe_transport_error(error: Exception) -> str:
    """What went wrong with the connection, in a few words."""
    if isinstance(error, requests.Timeout):
        return "no answer within the timeout (MLFLOW_HTTP_REQUEST_TIMEOUT)"
    if isinstance(error, requests.exceptions.ChunkedEncodingError):
        return "the connection closed before the whole response arrived"
    text = str(error)
    if "Connection refused" in text:
        return "connection refused"
    if "reset" in text.lower() or "RemoteDisconnected" in text or "aborted" in text.lower():
        return "the connection was dropped"
    return type(error).__name__


def no_connection(error: BaseException | None) -> bool:
    """True if ``error`` (a transport error) says that no usable connection was made:
    refused, timed out while connecting, no such host, TLS refused. A smaller request
    cannot help then, as it may when a connection made was dropped or timed out
    mid-answer. (Behind a proxy, a server that is gone answers as the proxy's error: not
    told apart.)"""
    if isinstance(error, (requests.exceptions.ConnectTimeout, requests.exceptions.SSLError)):
        return True
    if not isinstance(error, requests.ConnectionError) or isinstance(
        error, requests.exceptions.ChunkedEncodingError
    ):
        return False
    text = str(error)
    return any(
        sign in text for sign in ("Connection refused", "NewConnectionError", "NameResolutionError")
    )


def ssl_reason(error: Exception) -> str:
    """Why the TLS handshake failed, in a few words."""
    text = str(error)
    for reason in ("certificate verify failed", "certificate required", "wrong version number"):
        if reason in text:
            return reason
    return "the handshake was refused"


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds to wait that a ``Retry-After`` header asks for (seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when.timestamp() - time.time()
