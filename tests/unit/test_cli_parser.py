"""The ``mlflow-fun`` command line: version, module entry point, where --log-level goes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mlflow_fun import __version__
from mlflow_fun.cli.main import build_parser


def test_version_from_the_command_and_python_dash_m() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mlflow_fun", "--version"], capture_output=True, text=True
    )
    assert (done.returncode, done.stdout) == (0, f"mlflow-fun {__version__}\n")


@pytest.mark.parametrize(
    ("argv", "level"),
    [
        (["build"], "WARNING"),
        (["--log-level", "ERROR", "build"], "ERROR"),
        (["build", "--log-level", "INFO"], "INFO"),
        (["--log-level", "ERROR", "sql", "--log_level", "DEBUG", "select 1"], "DEBUG"),
        (["serve", "--log-level", "INFO"], "INFO"),
        (["best", "--all-experiments", "--metric", "rmse", "--log-level", "INFO"], "INFO"),
    ],
)
def test_log_level_before_or_after_the_command(argv: list[str], level: str) -> None:
    assert build_parser().parse_args(argv).log_level == level


def test_a_bad_log_level_names_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["build", "--log-level", "LOUD"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "mlflow-fun build: error: argument --log-level/--log_level: invalid choice: 'LOUD' "
        "(choose from 'DEBUG', 'INFO', 'WARNING', 'ERROR')"
    )
