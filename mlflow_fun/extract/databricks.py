"""Databricks credentials, resolved the way MLflow resolves them: databricks-sdk's ``Config``.

``databricks`` and ``databricks://<profile>`` tracking URIs name a workspace. The SDK's
unified configuration finds its host and credentials: ``DATABRICKS_HOST`` with
``DATABRICKS_TOKEN`` (a personal access token) or ``DATABRICKS_CLIENT_ID`` and
``DATABRICKS_CLIENT_SECRET`` (OAuth machine-to-machine), a profile in
``~/.databrickscfg`` (``DATABRICKS_CONFIG_FILE``), or a notebook's own credentials.
Each request asks the SDK for its headers, so an OAuth token is refreshed before it expires.
No header value is ever logged or kept in an error message.

Example:
    >>> host, auth = databricks_settings("databricks://prod")
    >>> MlflowHttpClient(host, auth=auth)
"""

from __future__ import annotations

from typing import Any

import requests

from mlflow_fun.errors import AuthenticationError, ConfigError


def profile_of(tracking_uri: str) -> str | None:
    """The profile a Databricks tracking URI names; None for the default.

    MLflow's form ``databricks://<profile>:<key prefix>`` (secrets in a scope) keeps the
    profile before the colon.

    Example:
        >>> profile_of("databricks://prod"), profile_of("databricks")
        ('prod', None)
    """
    rest = tracking_uri.split("://", 1)[1] if "://" in tracking_uri else ""
    return rest.split(":", 1)[0] or None


def databricks_settings(tracking_uri: str) -> tuple[str, requests.auth.AuthBase]:
    """The workspace URL and the request auth for a ``databricks[://<profile>]`` URI.

    Raises:
        ConfigError: The SDK finds no host or no credentials (its reason, first line).
        AuthenticationError: The workspace refused the OAuth client credentials.
    """
    from databricks.sdk.core import Config  # only for Databricks tracking URIs

    profile = profile_of(tracking_uri)
    try:
        config = Config(profile=profile)
    except ValueError as e:
        where = f"profile {profile!r}" if profile else "the default profile or DATABRICKS_*"
        raise ConfigError(
            f"no Databricks credentials for {tracking_uri!r} ({where}): {_reason(e)}; set "
            "DATABRICKS_HOST with DATABRICKS_TOKEN or DATABRICKS_CLIENT_ID/_SECRET, or a "
            "profile in ~/.databrickscfg"
        ) from e
    if not config.host:
        raise ConfigError(f"no Databricks host for {tracking_uri!r}: set DATABRICKS_HOST")
    return str(config.host), SdkAuth(config)


class SdkAuth(requests.auth.AuthBase):
    """Adds the SDK's current ``Authorization`` header (refreshed when due) to a request."""

    def __init__(self, config: Any) -> None:
        self._config = config

    def __repr__(self) -> str:
        return f"SdkAuth(host={self._config.host!r}, auth_type={self._config.auth_type!r})"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        try:
            headers = self._config.authenticate()
        except Exception as e:  # the SDK raises ValueError, requests' or its own errors
            raise AuthenticationError(
                f"Databricks authentication at {self._config.host} "
                f"({self._config.auth_type}) failed: {_reason(e)}",
                endpoint="oidc/v1/token",
            ) from e
        request.headers.update(headers)
        return request


def _reason(error: Exception) -> str:
    """The first line of the SDK's message, without its debug dump of the settings."""
    first = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return first.split(". Config:")[0][:300]
