"""``mlflow-fun best`` end to end: the installed console script and its error lines."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mlflow_fun.cli.main import main
from mlflow_fun.extract.local_server import free_port
from tests.scripted_http import Reply, scripted_server
from tests.seed import Seeded

SCRIPT = Path(sys.executable).parent / "mlflow-fun"


def _run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def test_console_script_prints_the_best_run(seeded: Seeded) -> None:
    result = _run_cli(
        "best", "--experiment-name", "best", "--metric", "rmse", "--tracking-uri", seeded.url
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"('{seeded.best_runs['a']}', 0.5)\n"


@pytest.mark.parametrize(
    ("source", "engine"), [("rest", "auto"), ("api", "auto"), ("rest", "pandas"), ("rest", "spark")]
)
def test_every_source_from_the_cli(
    spark: Any, seeded: Seeded, source: str, engine: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["best", "--experiment-id", seeded.best, "--metric", "r2", "--order", "desc"]
    code = main([*argv, "--source", source, "--engine", engine, "--tracking-uri", seeded.url])
    assert code == 0
    assert capsys.readouterr().out == f"('{seeded.best_runs['c']}', 0.95)\n"


def _error_of(argv: list[str], capsys: pytest.CaptureFixture[str], code: int = 1) -> str:
    exit_code = main(argv)
    captured = capsys.readouterr()
    assert exit_code == code and captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


def test_unknown_experiment_id(seeded: Seeded, capsys: pytest.CaptureFixture[str]) -> None:
    line = _error_of(
        ["best", "--experiment-id", "9999", "--metric", "rmse", "--tracking-uri", seeded.url],
        capsys,
    )
    assert line.startswith("mlflow-fun: error: experiment id '9999' does not exist at http://")


def test_unknown_experiment_name(seeded: Seeded, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "best",
        "--experiment-name",
        "no such",
        "--metric",
        "rmse",
        "--tracking-uri",
        seeded.url,
    ]
    line = _error_of(argv, capsys)
    assert line == f"mlflow-fun: error: no experiment named 'no such' at {seeded.url}"


@pytest.mark.parametrize("engine", ["auto", "pandas"])
def test_unknown_metric(seeded: Seeded, engine: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["best", "--experiment-id", seeded.best, "--metric", "mae", "--engine", engine]
    line = _error_of([*argv, "--tracking-uri", seeded.url], capsys)
    assert "'mae'" in line and line.startswith("mlflow-fun: error: ")


def test_unreachable_server(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    line = _error_of(
        ["best", "--experiment-id", "1", "--metric", "rmse", "--tracking-uri", url], capsys
    )
    assert line == (
        f"mlflow-fun: error: cannot reach the tracking server at {url} (experiments/get): "
        "connection refused; check that the server runs and the URL is right"
    )


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials(
    status: int, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "very-secret-token")
    with scripted_server(
        [Reply(status, b'{"error_code": "UNAUTHENTICATED", "message": "no"}')]
    ) as (
        url,
        _,
    ):
        line = _error_of(
            ["best", "--experiment-id", "1", "--metric", "rmse", "--tracking-uri", url], capsys
        )
    assert f"refused the credentials (HTTP {status})" in line
    assert "very-secret-token" not in line


def test_malformed_json(capsys: pytest.CaptureFixture[str]) -> None:
    with scripted_server([Reply(200, b"<html>proxy error</html>")]) as (url, _):
        line = _error_of(
            ["best", "--experiment-id", "1", "--metric", "rmse", "--tracking-uri", url], capsys
        )
    assert line.startswith(f"mlflow-fun: error: the tracking server at {url} sent a response")
    assert "that is not JSON" in line


@pytest.mark.parametrize(
    ("argv", "description"),
    [
        (["--help"], "Turn MLflow runs into typed tables and DataFrames"),
        (["best", "--help"], "Find the best run(s) of one or more experiments."),
        (["build", "--help"], "Pull experiments and runs from the tracking server"),
        (["sql", "--help"], "Run one Spark SQL statement with --database selected"),
        (["serve", "--help"], "Serve the tables built by `mlflow-fun build` over JDBC/ODBC"),
    ],
)
def test_help_describes_every_command(argv: list[str], description: str) -> None:
    result = _run_cli(*argv)
    assert result.returncode == 0
    assert result.stdout.startswith(f"Usage: mlflow-fun {' '.join(argv[:-1])}".rstrip())
    assert description in " ".join(result.stdout.split())


def test_bad_usage_exits_2() -> None:
    env = {"MLFLOW_EXPERIMENT_ID": "", "MLFLOW_EXPERIMENT_NAME": ""}
    result = _run_cli("best", "--metric", "rmse", env=env)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "mlflow-fun: error: which experiments? give --experiment-id, --experiment-name, "
        "--experiment-ids or --all-experiments (or set MLFLOW_EXPERIMENT_ID or "
        "MLFLOW_EXPERIMENT_NAME)\n"
    )
    result = _run_cli("best", "--metric", "rmse", "--experiment-id", "1", "--all-experiments")
    assert result.returncode == 2
    assert result.stderr.endswith(
        "Error: --experiment-id and --all-experiments cannot go together\n"
    )


def test_the_experiment_from_mlflows_variables(
    seeded: Seeded, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = ["best", "--metric", "rmse", "--tracking-uri", seeded.url]
    expected = f"('{seeded.best_runs['a']}', 0.5)\n"
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "best")
    assert main(argv) == 0 and capsys.readouterr().out == expected
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", seeded.best)
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith(
        "mlflow-fun: error: MLFLOW_EXPERIMENT_ID and MLFLOW_EXPERIMENT_NAME are both set"
    )
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME")
    assert main(argv) == 0 and capsys.readouterr().out == expected
    assert main([*argv, "--experiment-id", seeded.typed]) == 1  # the flag wins: no rmse there


@pytest.mark.parametrize(
    ("extra", "expected", "code"),
    [
        (
            ["--metric", "rmse; drop table x", "--source", "rest"],
            "mlflow-fun: error: 'rmse; drop table x' is not a valid MLflow metric key "
            "(letters, digits, _ - . / : space)",
            1,
        ),
        (
            ["--metric", "rmse", "--where", "_m_r2 >"],
            "mlflow-fun: error: --where '_m_r2 >' does not parse: ",
            2,  # found before anything ran: a usage error
        ),
        (
            ["--metric", "rmse", "--where", "_m_r3 > 1"],
            "mlflow-fun: error: --where '_m_r3 > 1': unknown column '_m_r3'; did you mean _m_r2",
            1,
        ),
        (
            ["--metric", "rmse", "--where", "_m_r2 > 0; drop table x"],
            "mlflow-fun: error: --where '_m_r2 > 0; drop table x': ",
            1,
        ),
        (
            ["--order-by", "rmse, nope", "--engine", "pandas"],
            "mlflow-fun: error: 'nope' is neither a metric nor a column; metrics: r2, rmse",
            1,
        ),
    ],
)
def test_bad_queries(
    seeded: Seeded,
    extra: list[str],
    expected: str,
    code: int,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["best", "--experiment-id", seeded.best, "--tracking-uri", seeded.url, *extra]
    assert _error_of(argv, capsys, code).startswith(expected)


def test_top_k_table_and_pareto_json(seeded: Seeded, capsys: pytest.CaptureFixture[str]) -> None:
    b = seeded.best_runs
    argv = ["best", "--experiment-id", seeded.best, "--tracking-uri", seeded.url]
    assert main([*argv, "--order-by", "rmse asc, r2 desc", "--top", "2", "--output", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "experiment_id,run_id,rmse,r2",
        f"{seeded.best},{b['b']},0.5,0.9",
        f"{seeded.best},{b['a']},0.5,0.1",
    ]
    assert main([*argv, "--pareto", "mae min, r2 max", "--where", "_m_r2 > 0"]) == 1
    capsys.readouterr()
    assert main([*argv, "--pareto", "rmse min, r2 max", "--output", "json"]) == 0
    assert capsys.readouterr().out == (
        f'[{{"experiment_id": "{seeded.best}", "run_id": "{b["b"]}", "rmse": 0.5, "r2": 0.9}}]\n'
    )


def test_best_from_tables_answers_without_a_jvm(seeded: Seeded, tmp_path: Path) -> None:
    data_dir = str(tmp_path / "data")
    build = [str(SCRIPT), "build", "--data_dir", data_dir, "--no-progress", "--tracking_uri",
             seeded.url, "--experiment_ids", f"{seeded.best},{seeded.paged}"]  # fmt: skip
    assert subprocess.run(build, capture_output=True, text=True).returncode == 0
    best = [str(SCRIPT), "--log-level", "INFO", "best", "--source", "table", "--data_dir", data_dir]

    def answer(*query: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*best, *query], capture_output=True, text=True)

    by_name = answer("--experiment-name", "paged", "--metric", "rmse")
    every = answer("--all-experiments", "--metric", "rmse", "--top", "3", "--output", "csv")
    for done in (by_name, every):
        assert done.returncode == 0, done.stderr
        # Spark prints "Setting default log level" as its JVM starts; delta-rs starts none.
        assert "Setting default log level" not in done.stderr
        assert "asking Spark's metastore" not in done.stderr
    ids = seeded.paged_run_ids  # rmse (i * 7 % 25) / 100: the lowest are i = 0, 18, 11
    assert by_name.stdout == f"('{ids[0]}', 0.0)\n"
    assert every.stdout.splitlines() == [
        "experiment_id,run_id,rmse",
        *(f"{seeded.paged},{ids[i]},{v}" for i, v in ((0, 0.0), (18, 0.01), (11, 0.02))),
    ]
    query = f"select run_uuid, _m_rmse from exp_{seeded.paged} order by _m_rmse limit 2"
    sql = [str(SCRIPT), "--log-level", "INFO", "sql", "--data_dir", data_dir, "--output", "csv"]
    selected = subprocess.run([*sql, query], capture_output=True, text=True)
    assert selected.returncode == 0, selected.stderr
    assert "Setting default log level" not in selected.stderr  # DuckDB answered, no JVM
    assert "asking Spark" not in selected.stderr
    assert selected.stdout.splitlines() == ["run_uuid,_m_rmse", f"{ids[0]},0.0", f"{ids[18]},0.01"]
    # A table that is not under the data dir: Spark's metastore answers (here: no table).
    missing = answer("--experiment-id", "424242", "--metric", "rmse")
    assert missing.returncode == 1
    assert "asking Spark's metastore: no Delta table mlflow_metrics.exp_424242" in missing.stderr
    assert missing.stderr.splitlines()[-1] == (
        "mlflow-fun: error: table mlflow_metrics.exp_424242 does not exist; run "
        "`mlflow-fun build --experiment_ids 424242` first"
    )
