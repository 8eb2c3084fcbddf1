"""The job and ``best`` against the MLflow versions users run: 2.22, the pinned 3.x, the newest.

Each version runs its own ``mlflow server`` (from its own venv, `tests/mlflow_versions.py`)
on its own sqlite store, and logs runs with its own client: sklearn autologging of a
``GridSearchCV`` (a parent run and its children, estimator params such as ``None``,
``True``, ``nan``) and hand-logged runs. The tables loaded from that server over REST, and
from its database with ``--source db``, must equal that version's own ``search_runs``
value for value; every source gives the same best run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mlflow_fun.cli.main import main
from mlflow_fun.config import JobConfig
from mlflow_fun.extract.local_server import LocalMlflowServer
from mlflow_fun.load.job import run_job
from tests.mlflow_versions import OTHER_VERSIONS, mlflow_python
from tests.search_runs_check import assert_table_equals_runs

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / "tests" / "version_seed.py"
WINE = REPO / "data" / "wine-quality.csv"
PINNED = "pinned"


@dataclass(frozen=True)
class Logged:
    """Runs logged by one MLflow version, and how to reach them."""

    version: str
    url: str
    connection: str
    experiments: dict[str, str]
    runs: list[dict[str, Any]]

    def runs_of(self, name: str) -> list[dict[str, Any]]:
        return [r for r in self.runs if r["experiment_id"] == self.experiments[name]]


@pytest.fixture(scope="module", params=[*OTHER_VERSIONS, PINNED])
def logged(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Logged]:
    version = request.param
    python = Path(sys.executable) if version == PINNED else mlflow_python(version)
    root = tmp_path_factory.mktemp(f"mlflow-{version}")
    with LocalMlflowServer(root, python=python) as server:
        out = root / "search_runs.json"
        subprocess.run(
            [str(python), str(SEED), server.url, str(WINE), str(out)],
            check=True, capture_output=True, timeout=600,
        )  # fmt: skip
        document = json.loads(out.read_text())
        if version != PINNED:
            assert document["mlflow_version"] == version
        yield Logged(
            version=document["mlflow_version"],
            url=server.url,
            connection=f"sqlite:///{root / 'mlflow.db'}",
            experiments=document["experiments"],
            runs=document["runs"],
        )


def _database(logged: Logged, source: str) -> str:
    return f"v{logged.version.replace('.', '_')}_{source}"


@pytest.mark.parametrize("source", ["rest", "db"])
def test_tables_equal_that_versions_search_runs(spark: Any, logged: Logged, source: str) -> None:
    database = _database(logged, source)
    config = JobConfig(
        database=database,
        experiment_ids=tuple(logged.experiments.values()),
        tracking_uri=logged.url,
        source=source,
        connection=logged.connection if source == "db" else None,
        with_history=True,
    )
    result = run_job(config, spark=spark, progress=False)
    assert result.failed == {}
    autolog = logged.runs_of("autolog")
    assert len(autolog) == 6  # the GridSearchCV parent, its 4 children, a k-neighbors fit
    checked = 0
    for name, experiment_id in logged.experiments.items():
        table = spark.table(f"{database}.exp_{experiment_id}")
        checked += assert_table_equals_runs(table, logged.runs_of(name))
        status = {r["run_id"]: r["status"] for r in table.select("run_id", "status").collect()}
        assert status == {r["run_id"]: r["status"] for r in logged.runs_of(name)}
    assert checked > 100
    types = dict(spark.table(f"{database}.exp_{logged.experiments['autolog']}").dtypes)
    # autologging's estimator params, typed by the same rules as any param
    assert (types["_p_alpha"], types["_p_max_iter"], types["_p_fit_intercept"]) == (
        "double", "int", "boolean",
    )  # fmt: skip
    assert (types["_p_random_state"], types["_p_error_score"], types["_p_cv"]) == (
        "string", "double", "int",
    )  # fmt: skip
    assert (types["_p_algorithm"], types["_p_leaf_size"]) == ("string", "int")  # 'auto', 30
    history = spark.sql(
        f"select run_id, step, value from {database}.metric_history where key = 'loss'"
    ).collect()
    expected = {
        (r["run_id"], step, 1.0 / (step + 1 + i))
        for r in logged.runs_of("manual")
        for i in [int(r["params"]["layers"]) - 1]
        for step in range(3)
    }  # tests/version_seed.py logs loss = 1 / (step + 1 + i) for run i at steps 0-2
    assert {(h["run_id"], h["step"], h["value"]) for h in history} == expected
    manual = dict(spark.table(f"{database}.exp_{logged.experiments['manual']}").dtypes)
    assert manual["_p_flag"] == "boolean"  # True, False, true and None (NULL)


@pytest.mark.parametrize("source", ["rest", "api", "db"])
def test_every_source_finds_the_best_child(
    logged: Logged, source: str, capsys: pytest.CaptureFixture[str]
) -> None:
    children = [r for r in logged.runs_of("autolog") if "mean_test_score" in r["metrics"]]
    best = max(children, key=lambda r: r["metrics"]["mean_test_score"])
    argv = ["best", "--experiment-id", logged.experiments["autolog"], "--source", source]
    argv += ["--metric", "mean_test_score", "--order", "desc", "--tracking-uri", logged.url]
    assert main([*argv, "--connection", logged.connection]) == 0
    assert (
        capsys.readouterr().out == f"('{best['run_id']}', {best['metrics']['mean_test_score']})\n"
    )
    where = ["--where", "params.l1_ratio = '0.8' and metrics.rank_test_score <= 4", "--top", "2"]
    assert main([*argv, "--connection", logged.connection, *where, "--output", "jsonl"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    expected = sorted(
        (r for r in children if r["params"]["l1_ratio"] == "0.8"),
        key=lambda r: -r["metrics"]["mean_test_score"],
    )
    assert [r["run_id"] for r in rows] == [r["run_id"] for r in expected]
