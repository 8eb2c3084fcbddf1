"""``best --agg``: the best value at any step, the same answer from every source, and the
``metric_summary`` view, checked against MLflow's own ``get_metric_history``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric

from mlflow_fun.cli.main import main
from mlflow_fun.config import JobConfig
from mlflow_fun.extract.local_server import LocalMlflowServer
from mlflow_fun.load.job import run_job
from mlflow_fun.model import MetricPoint
from mlflow_fun.query.answer import answer_query
from mlflow_fun.query.model import BestQuery, parse_order_by
from mlflow_fun.transform.steps import summarize
from tests.seed import Seeded

DATABASE = "any_step"
STEPS = 50
START = 5_000_000


def _curve(lowest_at: int, lowest: float, last: float) -> list[float]:
    """A val_loss curve over `STEPS` steps: down to ``lowest`` at ``lowest_at``, then up."""
    rise = (last - lowest) / max(1, STEPS - 1 - lowest_at)
    return [
        lowest + (lowest_at - s) * 0.01 if s <= lowest_at else lowest + rise * (s - lowest_at)
        for s in range(STEPS)
    ]


# run name -> val_loss per step (acc is 1 - val_loss). "early" reaches the lowest value
# (step 20) but ends worst; "late" has the lowest last value; "twice" reaches 0.15 at steps
# 30 and 40 and logs a NaN at 35.
CURVES = {
    "early": _curve(20, 0.10, 0.50),
    "late": _curve(49, 0.20, 0.20),
    "twice": [
        0.15 if s in (30, 40) else (math.nan if s == 35 else 0.3 + s / 1000) for s in range(STEPS)
    ],
}


@pytest.fixture(scope="module")
def steps(seeded: Seeded) -> dict[str, str]:
    """An experiment of three runs logging val_loss over 50 steps, one without it."""
    client = MlflowClient(seeded.url)
    experiment = client.create_experiment("best-at-any-step")
    runs = {"experiment": experiment}
    for n, (name, curve) in enumerate(CURVES.items()):
        run_id = client.create_run(experiment, start_time=START + n, run_name=name).info.run_id
        metrics = [Metric("val_loss", v, START + 10 * s, s) for s, v in enumerate(curve)]
        metrics += [Metric("acc", 1 - v, START + 10 * s, s) for s, v in enumerate(curve)]
        client.log_batch(run_id, metrics=metrics)
        client.set_terminated(run_id, end_time=START + 1000)
        runs[name] = run_id
    quiet = client.create_run(experiment, start_time=START + 9, run_name="no-val-loss")
    client.log_batch(quiet.info.run_id, metrics=[Metric("rmse", 1.0, START, 0)])
    runs["no-val-loss"] = quiet.info.run_id
    return runs


@pytest.fixture(scope="module")
def tables(spark: Any, seeded: Seeded, steps: dict[str, str]) -> str:
    """The job's tables with history; returns the data dir."""
    config = JobConfig(
        database=DATABASE,
        experiment_ids=(steps["experiment"],),
        tracking_uri=seeded.url,
        with_history=True,
    )
    run_job(config, spark=spark, progress=False)
    return str(Path(urlparse(spark.conf.get("spark.sql.warehouse.dir")).path).parent)


def _mlflow_summaries(url: str, run_ids: list[str]) -> dict:
    """MLflow's own metric history, summarized by the project's rule."""
    client = MlflowClient(url)
    points = [
        MetricPoint(run_id, key, m.value, m.step, m.timestamp)
        for run_id in run_ids
        for key in ("val_loss", "acc")
        for m in client.get_metric_history(run_id, key)
    ]
    assert len(points) == 2 * STEPS * len(CURVES)
    return summarize(points)


PATHS = [
    ("rest", "auto"),
    ("api", "auto"),
    ("db", "auto"),
    ("rest", "spark"),
    ("table", "pandas"),
    ("table", "spark"),
]
QUERIES = {
    "min": (BestQuery(order_by=parse_order_by("val_loss"), top=3), "min"),
    "last": (BestQuery(order_by=parse_order_by("val_loss"), top=3), "last"),
    "max acc": (BestQuery(order_by=parse_order_by("acc desc"), top=2), "max"),
    "pareto": (BestQuery(pareto=parse_order_by("val_loss min, acc max", ("min", "max"))), "min"),
    "where on the aggregate": (
        BestQuery(order_by=parse_order_by("val_loss"), where="_m_val_loss < 0.16", top=5),
        "min",
    ),
}


def _answer(
    path: tuple[str, str],
    name: str,
    steps: dict,
    seeded: Seeded,
    spark: Any,
    data_dir: str,
    server: LocalMlflowServer,
) -> list:
    query, agg = QUERIES[name]
    source, engine = path
    rows = answer_query(
        source,
        [steps["experiment"]],
        query,
        engine=engine,
        tracking_uri=seeded.url,
        connection=f"sqlite:///{Path(server.root) / 'mlflow.db'}",
        spark=None if path == ("table", "pandas") else spark,
        database=DATABASE,
        data_dir=data_dir,
        agg=agg,
    )
    return [(r.run_id, tuple(r.values.items())) for r in rows]


@pytest.mark.parametrize("name", list(QUERIES))
def test_every_source_gives_the_same_aggregate_answer(
    name: str,
    steps: dict,
    seeded: Seeded,
    spark: Any,
    tables: str,
    mlflow_server: LocalMlflowServer,
) -> None:
    answers = {p: _answer(p, name, steps, seeded, spark, tables, mlflow_server) for p in PATHS}
    for path, answer in answers.items():
        assert answer == answers["rest", "auto"], f"{name}: {path} differs from rest/auto"


def test_known_answers_equal_mlflow_history(
    steps: dict, seeded: Seeded, spark: Any, tables: str, mlflow_server: LocalMlflowServer
) -> None:
    expected = _mlflow_summaries(seeded.url, [steps[n] for n in CURVES])

    def answer(name: str) -> list:
        return _answer(("rest", "auto"), name, steps, seeded, spark, tables, mlflow_server)

    by_min = [("early", 0.10, 20), ("twice", 0.15, 30), ("late", 0.20, 49)]
    assert answer("min") == [
        (steps[n], (("_m_val_loss", pytest.approx(v)), ("step", s))) for n, v, s in by_min
    ]
    for run_id, values in answer("min"):
        assert values == (
            ("_m_val_loss", expected[run_id, "val_loss"].min),
            ("step", expected[run_id, "val_loss"].min_step),
        )
    by_last = ["late", "twice", "early"]
    assert [run_id for run_id, _ in answer("last")] == [steps[n] for n in by_last]
    assert answer("last")[0][1] == (("_m_val_loss", pytest.approx(0.20)), ("step", 49))
    assert answer("max acc")[0] == (steps["early"], (("_m_acc", pytest.approx(0.9)), ("step", 20)))
    assert [run_id for run_id, _ in answer("where on the aggregate")] == [
        steps["early"],
        steps["twice"],
    ]
    # --agg min takes every ranked metric's minimum: acc's too (early 0.5, twice 0.651)
    assert [run_id for run_id, _ in answer("pareto")] == [steps["early"], steps["twice"]]


FIELDS = ("last", "last_step", "min", "min_step", "max", "max_step", "steps")


def test_metric_summary_view_equals_mlflow_history(
    steps: dict, seeded: Seeded, spark: Any, tables: str
) -> None:
    expected = _mlflow_summaries(seeded.url, [steps[n] for n in CURVES])
    rows = spark.sql(f"select * from {DATABASE}.metric_summary where key != 'rmse'").collect()
    assert len(rows) == len(expected) == 2 * len(CURVES)
    for row in rows:
        summary = expected[row["run_id"], row["key"]]
        assert row["experiment_id"] == steps["experiment"]
        got = [row[f] for f in FIELDS]
        want = [getattr(summary, f) for f in FIELDS]
        assert got == want, row
        assert round(row["first_time"].timestamp() * 1000) == summary.first_time
        assert round(row["last_time"].timestamp() * 1000) == summary.last_time


def test_best_agg_from_the_cli(
    steps: dict, seeded: Seeded, tables: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["best", "--experiment-id", steps["experiment"], "--metric", "val_loss"]
    assert main([*base, "--agg", "min", "--tracking-uri", seeded.url]) == 0
    assert capsys.readouterr().out == f"('{steps['early']}', 0.1, 20)\n"
    argv = [*base, "--agg", "last", "--top", "2", "--source", "table", "--data-dir", tables]
    assert main([*argv, "--database", DATABASE, "--output", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "experiment_id,run_id,val_loss,step",
        f"{steps['experiment']},{steps['late']},0.2,49",
        f"{steps['experiment']},{steps['twice']},0.349,49",
    ]


def test_table_without_history_says_what_to_do(
    spark: Any, seeded: Seeded, steps: dict, tables: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = JobConfig(
        database="any_step_no_history",
        experiment_ids=(steps["experiment"],),
        tracking_uri=seeded.url,
    )
    run_job(config, spark=spark, progress=False)
    argv = ["best", "--experiment-id", steps["experiment"], "--metric", "val_loss", "--agg", "min"]
    argv += ["--source", "table", "--data-dir", tables, "--database", "any_step_no_history"]
    assert main(argv) == 1
    assert capsys.readouterr().err == (
        "mlflow-fun: error: --agg needs any_step_no_history.metric_history, which the job writes "
        "with --with-history: run `mlflow-fun build --with-history`, or ask another --source\n"
    )
    by_time = ["best", "--experiment-id", steps["experiment"], "--order-by", "start_time"]
    assert main([*by_time, "--agg", "min", "--tracking-uri", seeded.url]) == 1
    assert capsys.readouterr().err == (
        "mlflow-fun: error: --agg min ranks runs by a metric's history; start_time is no metric\n"
    )
