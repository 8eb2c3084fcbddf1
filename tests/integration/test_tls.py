"""TLS as MLflow configures it, against a real server behind a loopback HTTPS proxy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlflow_fun.errors import ConfigError, ServerUnreachableError
from mlflow_fun.extract.open import open_source
from tests.seed import Seeded
from tests.tls_proxy import make_certificates, tls_proxy

SCRIPT = Path(sys.executable).parent / "mlflow-fun"
NO_RETRY = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}


def _names(url: str, env: dict[str, str]) -> list[str]:
    return sorted(e.name for e in open_source(url, env={**NO_RETRY, **env}).iter_experiments())


def test_the_servers_certificate_is_checked_against_mlflows_ca_setting(
    seeded: Seeded, tmp_path: Path
) -> None:
    certificates = make_certificates(tmp_path / "certs")
    expected = _names(seeded.url, {})
    with tls_proxy(seeded.url, certificates) as url:
        with pytest.raises(ServerUnreachableError) as refused:
            _names(url, {})
        assert str(refused.value) == (
            f"TLS with the tracking server at {url} (experiments/search) failed: certificate "
            "verify failed; set MLFLOW_TRACKING_SERVER_CERT_PATH to the CA bundle that "
            "signed its certificate"
        )
        assert _names(url, {"MLFLOW_TRACKING_SERVER_CERT_PATH": str(certificates.ca)}) == expected
        assert _names(url, {"MLFLOW_TRACKING_INSECURE_TLS": "true"}) == expected
        with pytest.raises(ConfigError, match="are both set"):
            _names(url, {"MLFLOW_TRACKING_INSECURE_TLS": "true",
                         "MLFLOW_TRACKING_SERVER_CERT_PATH": str(certificates.ca)})  # fmt: skip
        with pytest.raises(ConfigError, match="MLFLOW_TRACKING_SERVER_CERT_PATH='/nope': no such"):
            _names(url, {"MLFLOW_TRACKING_SERVER_CERT_PATH": "/nope"})

        data_dir = tmp_path / "data"
        env = {**os.environ, "MLFLOW_TRACKING_SERVER_CERT_PATH": str(certificates.ca)}
        job = subprocess.run(
            [str(SCRIPT), "build", "--data_dir", str(data_dir), "--tracking_uri", url,
             "--experiment_ids", seeded.best],
            capture_output=True, text=True, timeout=600, env=env,
        )  # fmt: skip
        assert job.returncode == 0, job.stderr
        assert job.stdout.startswith("1 of 1 table(s) written (0 incremental), 7 run(s)")


def test_a_client_certificate_from_mlflows_setting(seeded: Seeded, tmp_path: Path) -> None:
    certificates = make_certificates(tmp_path / "certs")
    ca = {"MLFLOW_TRACKING_SERVER_CERT_PATH": str(certificates.ca)}
    with tls_proxy(seeded.url, certificates, require_client_cert=True) as url:
        with pytest.raises(ServerUnreachableError):
            _names(url, ca)
        client = {"MLFLOW_TRACKING_CLIENT_CERT_PATH": str(certificates.client)}
        assert _names(url, {**ca, **client}) == _names(seeded.url, {})
