"""The ``mlflow-fun`` command line: version, module entry point, where options go, old words."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mlflow_fun import __version__
from mlflow_fun.cli import options
from mlflow_fun.cli.build import parse_build_args
from mlflow_fun.cli.main import _delta_rs_reason, main


class _Started(Exception):
    """Raised where the command would start: carries the log level it was given."""


@pytest.fixture
def started_with(monkeypatch: pytest.MonkeyPatch) -> None:
    def stop(level: str) -> None:
        raise _Started(level)

    monkeypatch.setattr(options, "configure_logging", stop)


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
        (["build", "--log-level", "info"], "INFO"),
        (["--log-level", "ERROR", "sql", "--log_level", "DEBUG", "select 1"], "DEBUG"),
        (["serve", "--log-level", "INFO"], "INFO"),
        (["best", "--all-experiments", "--metric", "rmse", "--log-level", "INFO"], "INFO"),
    ],
)
@pytest.mark.usefixtures("started_with")
def test_log_level_before_or_after_the_command(argv: list[str], level: str) -> None:
    with pytest.raises(_Started) as started:
        main(argv)
    assert started.value.args == (level,)


def test_a_bad_log_level_names_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", "--log-level", "LOUD"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "Error: Invalid value for '--log-level' / '--log_level': 'LOUD' is not one of "
        "'debug', 'info', 'warning', 'error'."
    )


def test_conf_before_the_command_reaches_it(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = {}

    def run_sql(args: object) -> int:
        seen["conf"] = args.conf  # type: ignore[attr-defined]
        return 0

    monkeypatch.setattr("mlflow_fun.cli.sql.run_sql", run_sql)
    assert main(["--conf", "a.yaml", "sql", "select 1"]) == 0
    assert seen["conf"] == "a.yaml"
    assert main(["--conf", "a.yaml", "sql", "--conf", "b.yaml", "select 1"]) == 0
    assert seen["conf"] == "b.yaml"  # after the command wins


def test_dashed_and_underscore_flags_are_the_same() -> None:
    dashed = parse_build_args(["--data-dir", "d", "--experiment-ids", "1,2", "--page-size", "7"])
    underscore = parse_build_args(
        ["--data_dir", "d", "--experiment_ids", "1,2", "--page_size", "7"]
    )
    assert dashed == underscore
    assert (dashed.data_dir, dashed.experiment_ids, dashed.page_size) == ("d", "1,2", 7)


def test_old_words_work_with_one_deprecation_line(capsys: pytest.CaptureFixture[str]) -> None:
    args = parse_build_args(["--source", "server", "--format", "parquet"])
    assert (args.source, args.table_format) == ("rest", "parquet")
    assert capsys.readouterr().err.splitlines() == [
        "build: --source server is deprecated; use --source rest",
        "build: --format is deprecated; use --table-format",
    ]
    args = parse_build_args(["--table-format", "delta", "--format", "parquet"])
    assert args.table_format == "delta"  # the new flag wins


@pytest.mark.parametrize(
    ("old", "new", "line"),
    [
        ("sql", ("db", "auto"), "--source sql is deprecated; use --source db"),
        (
            "pandas",
            ("rest", "pandas"),
            "--source pandas is deprecated; use --source rest --engine pandas",
        ),
        (
            "spark",
            ("rest", "spark"),
            "--source spark is deprecated; use --source rest --engine spark",
        ),
    ],
)
def test_old_best_sources_map_to_a_source_and_an_engine(
    old: str,
    new: tuple[str, str],
    line: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seen = {}

    def run_best(args: object) -> int:
        seen["pair"] = (args.source, args.engine)  # type: ignore[attr-defined]
        return 0

    monkeypatch.setattr("mlflow_fun.cli.best.run_best", run_best)
    assert main(["best", "--experiment-id", "1", "--metric", "rmse", "--source", old]) == 0
    assert seen["pair"] == new
    assert capsys.readouterr().err == f"mlflow-fun best: {line}\n"


def test_experiment_flags_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["best", "--metric", "rmse", "--experiment-id", "1", "--all-experiments"]
    assert main(argv) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "Error: --experiment-id and --all-experiments cannot go together"
    )
    assert main(["best", "--experiment-id", "1"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "Error: give one of --metric, --order-by, --pareto"
    )


def test_spark_reads_rest_or_tables_only(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "best",
        "--experiment-id",
        "1",
        "--metric",
        "rmse",
        "--source",
        "db",
        "--engine",
        "spark",
    ]
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        "mlflow-fun: error: --engine spark reads --source rest or table, not db: use --engine "
        "pandas (or auto)\n"
    )


def test_a_delta_rs_error_is_one_line_with_the_advice_for_its_os_error() -> None:
    from deltalake.exceptions import DeltaError  # the optional [spark] extra's

    full = DeltaError("Unable to copy data to file: No space left on device (os error 28)\nmore")
    assert _delta_rs_reason(full) == (
        "Unable to copy data to file: No space left on device (os error 28): free space on the "
        "data dir's volume (`mlflow-fun maintain` vacuums the files old table versions left) "
        "and run again; every table is as the last run left it"
    )
    assert _delta_rs_reason(DeltaError("Invalid table version: 3")) == "Invalid table version: 3"
