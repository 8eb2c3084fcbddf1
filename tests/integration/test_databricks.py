"""``databricks`` tracking URIs: credentials as MLflow finds them, through a fake workspace.

`tests/fake_workspace.py` serves the OAuth endpoints and proxies MLflow's REST API to the
real server, refusing a wrong or missing bearer token. The job and ``best`` go through it
with a profile in ``~/.databrickscfg`` (a personal access token, and OAuth client
credentials) and with ``DATABRICKS_*`` variables; no secret reaches any output, file or table.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from mlflow_fun.cli.main import main
from mlflow_fun.jvm_archive import archive_dir
from mlflow_fun.spark_jars import ivy_home
from tests.fake_workspace import FakeWorkspace
from tests.seed import Seeded

SCRIPT = Path(sys.executable).parent / "mlflow-fun"
PAT = "dapi-PAT-5ecret-7Hq9"
CLIENT_ID, CLIENT_SECRET = "sp-client-id", "sp-SECRET-x81K"
SECRETS = (PAT, CLIENT_SECRET)


@pytest.fixture(scope="module")
def workspace(seeded: Seeded) -> Iterator[FakeWorkspace]:
    with FakeWorkspace(seeded.url, pat=PAT, client=(CLIENT_ID, CLIENT_SECRET)) as ws:
        yield ws


def _home(tmp_path: Path, workspace: FakeWorkspace, secret: str = CLIENT_SECRET) -> Path:
    """A home folder whose ``~/.databrickscfg`` has a PAT profile and an OAuth one."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".databrickscfg").write_text(
        f"[ws]\nhost = {workspace.url}\ntoken = {PAT}\n\n"
        f"[sp]\nhost = {workspace.url}\nclient_id = {CLIENT_ID}\nclient_secret = {secret}\n"
    )
    return home


def _clean_env(home: Path, **extra: str) -> dict[str, str]:
    """This process's environment without Databricks or MLflow credentials, HOME at ``home``.

    The Delta jars and the class archive stay where they are (they live under the real home).
    """
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "MLFLOW_TRACKING"))
    }
    env.update(HOME=str(home), MLFLOW_FUN_IVY_HOME=ivy_home())
    env["MLFLOW_FUN_CLASS_ARCHIVE"] = archive_dir() or "off"
    env.update(extra)
    return env


def _use(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    """Make ``env`` this process's environment for the test."""
    for name in [n for n in os.environ if n not in env]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def _build(env: dict[str, str], data_dir: Path, uri: str, experiment_id: str) -> bytes:
    result = subprocess.run(
        [str(SCRIPT), "--log-level", "DEBUG", "build", "--data-dir", str(data_dir),
         "--tracking-uri", uri, "--experiment-ids", experiment_id, "--no-progress"],
        capture_output=True, env=env, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert b"DEBUG" in result.stderr
    return result.stdout + result.stderr


def _all_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())


def _table_rows(spark: Any, data_dir: Path, experiment_id: str) -> set[str]:
    table = data_dir / "warehouse" / "mlflow_metrics.db" / f"exp_{experiment_id}"
    return {r["run_id"] for r in spark.read.format("delta").load(str(table)).collect()}


def test_the_job_loads_through_a_profile_with_a_token(
    spark: Any, seeded: Seeded, workspace: FakeWorkspace, tmp_path: Path
) -> None:
    env = _clean_env(_home(tmp_path, workspace))
    data_dir = tmp_path / "data"
    output = _build(env, data_dir, "databricks://ws", seeded.best)
    expected = {r.info.run_id for r in MlflowClient(seeded.url).search_runs([seeded.best])}
    assert _table_rows(spark, data_dir, seeded.best) == expected
    written = output + _all_bytes(data_dir)
    assert not [s for s in SECRETS if s.encode() in written]


def test_the_job_loads_with_oauth_client_credentials_from_the_environment(
    spark: Any, seeded: Seeded, workspace: FakeWorkspace, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()  # no profile file: the variables alone
    env = _clean_env(
        home,
        DATABRICKS_HOST=workspace.url,
        DATABRICKS_CLIENT_ID=CLIENT_ID,
        DATABRICKS_CLIENT_SECRET=CLIENT_SECRET,
    )
    issued = workspace.issued
    data_dir = tmp_path / "data"
    output = _build(env, data_dir, "databricks", seeded.typed)
    assert workspace.issued == issued + 1  # one token, reused for every request
    assert _table_rows(spark, data_dir, seeded.typed) == set(seeded.typed_run_ids)
    written = output + _all_bytes(data_dir)
    assert not [s for s in SECRETS if s.encode() in written]
    assert not [t for t in workspace.tokens if t.encode() in written]


def test_best_with_an_oauth_profile(
    seeded: Seeded,
    workspace: FakeWorkspace,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _use(monkeypatch, _clean_env(_home(tmp_path, workspace)))
    argv = ["best", "--experiment-id", seeded.best, "--metric", "rmse"]
    assert main([*argv, "--tracking-uri", "databricks://sp"]) == 0
    assert capsys.readouterr().out == f"('{seeded.best_runs['a']}', 0.5)\n"


@pytest.mark.parametrize(
    ("profile", "secret", "expected"),
    [
        ("ws", CLIENT_SECRET, None),  # the right token: the control
        ("sp", "wrong-SECRET-q1", "Databricks authentication at {url} (oauth-m2m) failed: "),
        ("nope", CLIENT_SECRET, "no Databricks credentials for 'databricks://nope' (profile"),
    ],
)
def test_wrong_or_missing_credentials_are_one_line(
    seeded: Seeded,
    workspace: FakeWorkspace,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    profile: str,
    secret: str,
    expected: str | None,
) -> None:
    _use(monkeypatch, _clean_env(_home(tmp_path, workspace, secret)))
    argv = ["best", "--experiment-id", seeded.best, "--metric", "rmse"]
    code = main([*argv, "--tracking-uri", f"databricks://{profile}"])
    captured = capsys.readouterr()
    if expected is None:
        assert code == 0
        return
    lines = captured.err.strip().splitlines()
    assert (code, captured.out, len(lines)) == (1, "", 1), captured.err
    assert lines[0].startswith("mlflow-fun: error: " + expected.format(url=workspace.url))
    assert secret not in captured.err and PAT not in captured.err


def test_a_wrong_token_is_refused_by_the_workspace(
    seeded: Seeded,
    workspace: FakeWorkspace,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABRICKS_HOST", workspace.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", "dapi-WRONG-token")
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", "/nonexistent/.databrickscfg")
    refused = workspace.refused
    code = main(["best", "--experiment-id", seeded.best, "--metric", "rmse", "--tracking-uri",
                 "databricks"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and workspace.refused == refused + 1
    assert "refused the credentials (HTTP 401)" in err and "dapi-WRONG-token" not in err
