"""`mlflow-fun serve` refuses bad settings in one line, before Spark starts."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from mlflow_fun.cli.main import serve_main as main

REPO = Path(__file__).resolve().parents[2]


def test_serve_refuses_bad_settings_before_spark_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def error(*args: str) -> str:
        assert main(["--data_dir", str(tmp_path / "d"), *args]) == 1
        return capsys.readouterr().err.strip()

    assert error("--database", "bad-name").startswith(
        "mlflow-fun serve: error: database name 'bad-name' is not a valid identifier"
    )
    assert error("--port", "0") == "mlflow-fun serve: error: port 0 must be between 1 and 65535"
    monkeypatch.delenv("MLFLOW_FUN_METASTORE_PASSWORD", raising=False)
    assert error("--conf", str(REPO / "conf" / "metastore-postgres.yaml")) == (
        "mlflow-fun serve: error: spark_conf setting "
        "spark.hadoop.javax.jdo.option.ConnectionPassword needs the environment variable "
        "MLFLOW_FUN_METASTORE_PASSWORD, which is not set"
    )
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert error("--port", str(port)) == (
            f"mlflow-fun serve: error: port {port} on 127.0.0.1 is in use; choose another --port"
        )
    assert not (tmp_path / "d").exists()
