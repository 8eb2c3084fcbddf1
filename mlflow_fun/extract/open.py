"""Open the right `RunSource` for a tracking URI."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from mlflow_fun.errors import ConfigError
from mlflow_fun.extract.databricks import databricks_settings
from mlflow_fun.extract.http import MlflowHttpClient, RetrySettings, TlsSettings
from mlflow_fun.extract.mlflow_client import MlflowClientSource
from mlflow_fun.extract.rest import RestSource
from mlflow_fun.extract.source import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, RunSource

logger = logging.getLogger(__name__)


def resolve_tracking_uri(tracking_uri: str | None) -> str:
    """Return ``tracking_uri``, else ``MLFLOW_TRACKING_URI``, else MLflow's default."""
    if tracking_uri:
        return tracking_uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    import mlflow

    return str(mlflow.get_tracking_uri())


def open_source(
    tracking_uri: str | None = None,
    *,
    page_size: int = DEFAULT_PAGE_SIZE,
    env: Mapping[str, str] | None = None,
) -> RunSource:
    """Open the right source for ``tracking_uri``.

    Example:
        >>> source = open_source("http://127.0.0.1:5000")
        >>> [e.name for e in source.iter_experiments()]

    Args:
        tracking_uri: An ``http(s)://`` URL, ``databricks`` or ``databricks://<profile>``
            (credentials from databricks-sdk's ``Config``), or any URI ``MlflowClient``
            accepts. None means ``MLFLOW_TRACKING_URI`` or MLflow's default.
        page_size: Runs asked for per ``runs/search`` page (1 to 50,000).
        env: Where credentials are read from; ``os.environ`` by default.

    Raises:
        ConfigError: The page size is out of range, or Databricks settings are missing.
    """
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ConfigError(f"page_size={page_size} must be between 1 and {MAX_PAGE_SIZE}")
    env = os.environ if env is None else env
    uri = resolve_tracking_uri(tracking_uri)
    scheme = uri.split(":", 1)[0].lower()
    if scheme in ("http", "https"):
        client = MlflowHttpClient(
            uri,
            token=env.get("MLFLOW_TRACKING_TOKEN") or None,
            username=env.get("MLFLOW_TRACKING_USERNAME") or None,
            password=env.get("MLFLOW_TRACKING_PASSWORD") or None,
            tls=TlsSettings.from_env(env),
            retry=RetrySettings.from_env(env),
        )
        return RestSource(client, page_size=page_size)
    if scheme == "databricks":  # host and credentials as MLflow finds them: databricks-sdk
        host, auth = databricks_settings(uri)
        client = MlflowHttpClient(
            host, auth=auth, tls=TlsSettings.from_env(env), retry=RetrySettings.from_env(env)
        )
        return RestSource(client, page_size=page_size)
    return MlflowClientSource(uri, page_size=page_size)
