"""``best --models``: MLflow 3's logged models ranked by a metric on a dataset, with the
runs' grammar, the same answer from every source, and MLflow's own order where it has one."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from mlflow import MlflowClient
from mlflow.entities import LoggedModelStatus

from mlflow_fun.cli.main import main
from mlflow_fun.config import JobConfig
from mlflow_fun.extract.local_server import LocalMlflowServer
from mlflow_fun.load.job import run_job
from mlflow_fun.query.model import BestQuery, parse_order_by
from mlflow_fun.query.models import answer_models, read_models
from tests.seed import Seeded

DATABASE = "best_models"
T0 = 7_000_000
TRAIN, TEST = "wine-train", "wine-test"

# name -> (alpha, rmse on wine-train, rmse on wine-test, r2 on wine-test, READY?). "a"
# logs 0.60 on wine-test first and 0.80 later: its latest, 0.80, is its value. "b" and "c"
# tie on wine-test (b was created first); "d" has no rmse on wine-test, "e" no metric there.
# (No NaN: MLflow 3.17 stores a logged model's NaN metric as 0.0, and sends 0.0 back.)
MODELS = {
    "a": (0.1, 0.50, 0.80, 0.45, True),
    "b": (0.5, 0.60, 0.70, 0.40, True),
    "c": (1.0, 0.70, 0.70, 0.35, False),
    "d": (2.0, 0.45, None, 0.10, True),
    "e": (4.0, 0.90, None, None, False),
}


@pytest.fixture(scope="module")
def models(seeded: Seeded) -> dict[str, str]:
    """One experiment of the five `MODELS`, each logged from a run of its own."""
    client = MlflowClient(seeded.url)
    experiment = client.create_experiment("best-models")
    ids = {"experiment": experiment}
    for name, (alpha, train, test, r2, ready) in MODELS.items():
        run_id = client.create_run(experiment, start_time=T0, run_name=name).info.run_id
        model = client.create_logged_model(
            experiment, name=name, source_run_id=run_id, params={"alpha": str(alpha)}
        )
        metrics = [("rmse", train, T0, 0, TRAIN)]
        if test is not None:
            metrics.append(("rmse", test, T0 + 10, 0, TEST))
        if r2 is not None:
            metrics.append(("r2", r2, T0 + 10, 0, TEST))
        if name == "a":
            metrics.insert(1, ("rmse", 0.60, T0 + 5, 0, TEST))
        for key, value, timestamp, step, dataset in metrics:
            client.log_metric(
                run_id,
                key,
                value,
                timestamp=timestamp,
                step=step,
                dataset_name=dataset,
                dataset_digest=f"digest-{dataset}",
                model_id=model.model_id,
            )
        if ready:
            client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
        client.set_terminated(run_id, end_time=T0 + 100)
        ids[name] = model.model_id
        time.sleep(0.01)  # one creation time each: "b" before "c"
    return ids


@pytest.fixture(scope="module")
def tables(spark: Any, seeded: Seeded, models: dict[str, str]) -> str:
    config = JobConfig(
        database=DATABASE,
        experiment_ids=(models["experiment"],),
        tracking_uri=seeded.url,
        with_models=True,
    )
    run_job(config, spark=spark, progress=False)
    return str(Path(urlparse(spark.conf.get("spark.sql.warehouse.dir")).path).parent)


QUERIES = {
    "rmse on wine-test": (BestQuery(order_by=parse_order_by("rmse"), top=5), TEST),
    "rmse on wine-train": (BestQuery(order_by=parse_order_by("rmse"), top=5), TRAIN),
    "latest on any dataset": (BestQuery(order_by=parse_order_by("rmse"), top=5), None),
    "where": (
        BestQuery(order_by=parse_order_by("rmse"), where="_p_alpha >= 0.5", top=5),
        TEST,
    ),
    "mlflow words": (
        BestQuery(
            order_by=parse_order_by("metrics.r2 desc"),
            where="params.alpha < 2 and status = 'READY'",
            top=5,
        ),
        TEST,
    ),
    "pareto": (BestQuery(pareto=parse_order_by("rmse min, r2 max", ("min", "max"))), TEST),
}
# The answers, by model name.
EXPECTED = {
    "rmse on wine-test": ["b", "c", "a"],
    "rmse on wine-train": ["d", "a", "b", "c", "e"],
    "latest on any dataset": ["d", "b", "c", "a", "e"],
    "where": ["b", "c"],
    "mlflow words": ["a", "b"],
    "pareto": ["b", "a"],
}
SOURCES = ("rest", "api", "db", "table", "table via spark")


def _answer(
    source: str,
    name: str,
    models: dict[str, str],
    seeded: Seeded,
    spark: Any,
    tables: str,
    server: LocalMlflowServer,
) -> list[tuple[str, tuple[Any, ...]]]:
    query, dataset = QUERIES[name]
    found = read_models(
        source.split()[0],
        [models["experiment"]],
        tracking_uri=seeded.url,
        connection=f"sqlite:///{Path(server.root) / 'mlflow.db'}",
        spark=spark if source == "table via spark" else None,
        database=DATABASE,
        data_dir=tables,
    )
    rows = answer_models(found, query, dataset, [models["experiment"]])
    return [(r.run_id, tuple(r.values.items())) for r in rows]


@pytest.mark.parametrize("name", list(QUERIES))
def test_every_source_gives_the_known_answer(
    name: str,
    models: dict[str, str],
    seeded: Seeded,
    spark: Any,
    tables: str,
    mlflow_server: LocalMlflowServer,
) -> None:
    answers = {s: _answer(s, name, models, seeded, spark, tables, mlflow_server) for s in SOURCES}
    assert [model_id for model_id, _ in answers["rest"]] == [models[n] for n in EXPECTED[name]]
    for source, answer in answers.items():
        assert answer == answers["rest"], f"{name}: {source} differs from rest"


def test_values_are_the_latest_on_the_dataset(
    models: dict[str, str], seeded: Seeded, spark: Any, tables: str, mlflow_server: Any
) -> None:
    on_test = _answer("rest", "rmse on wine-test", models, seeded, spark, tables, mlflow_server)
    assert on_test == [
        (models["b"], (("_m_rmse", 0.70),)),
        (models["c"], (("_m_rmse", 0.70),)),
        (models["a"], (("_m_rmse", 0.80),)),  # logged after its 0.60
    ]
    pareto = _answer("rest", "pareto", models, seeded, spark, tables, mlflow_server)
    assert pareto == [
        (models["b"], (("_m_rmse", 0.70), ("_m_r2", 0.40))),
        (models["a"], (("_m_rmse", 0.80), ("_m_r2", 0.45))),
    ]


@pytest.mark.parametrize("dataset", [TRAIN, TEST, None])
def test_mlflow_orders_the_models_the_same_way(
    dataset: str | None,
    models: dict[str, str],
    seeded: Seeded,
    spark: Any,
    tables: str,
    mlflow_server: LocalMlflowServer,
) -> None:
    """MLflow's own ``search_logged_models`` order by rmse (on the dataset): the same
    models in the same order but for ties (b and c: MLflow lists the later-created first,
    the project the earlier)."""
    order: dict[str, Any] = {"field_name": "metrics.rmse", "ascending": True}
    if dataset is not None:
        order["dataset_name"] = dataset
    found = MlflowClient(seeded.url).search_logged_models([models["experiment"]], order_by=[order])
    name = {TRAIN: "rmse on wine-train", TEST: "rmse on wine-test", None: "latest on any dataset"}
    ours = _answer("rest", name[dataset], models, seeded, spark, tables, mlflow_server)
    value = {model_id: values[0][1] for model_id, values in ours}
    theirs = [m.model_id for m in found if m.model_id in value]  # with a value, as ours
    assert sorted(theirs) == sorted(value)
    assert [value[m] for m in theirs] == sorted(value.values())  # MLflow's order is ours
    if dataset == TRAIN:  # no tie
        assert theirs == [model_id for model_id, _ in ours]


def test_best_models_from_the_cli(
    models: dict[str, str], seeded: Seeded, tables: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["best", "--models", "--experiment-id", models["experiment"], "--metric", "rmse"]
    assert main([*base, "--dataset", TEST, "--tracking-uri", seeded.url]) == 0
    assert capsys.readouterr().out == f"('{models['b']}', 0.7)\n"
    table = ["--source", "table", "--data-dir", tables, "--database", DATABASE]
    argv = [*base, "--dataset", TRAIN, "--top", "2", *table, "--output", "csv"]
    assert main(argv) == 0
    assert capsys.readouterr().out.splitlines() == [
        "experiment_id,model_id,rmse",
        f"{models['experiment']},{models['d']},0.45",
        f"{models['experiment']},{models['a']},0.5",
    ]


def test_wrong_questions_are_one_line(
    models: dict[str, str], seeded: Seeded, tables: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["best", "--experiment-id", models["experiment"], "--metric", "rmse"]
    base += ["--tracking-uri", seeded.url]
    assert main([*base, "--models", "--dataset", "wine-val"]) == 1
    assert capsys.readouterr().err == (
        f"mlflow-fun: error: no logged model of experiment(s) {models['experiment']} has a "
        "metric measured on dataset 'wine-val'; their datasets: 'wine-test', 'wine-train'\n"
    )
    assert main([*base, "--models", "--agg", "min"]) == 2
    assert "a logged model's metrics have no --agg" in capsys.readouterr().err
    assert main([*base, "--dataset", TEST]) == 2
    assert "--dataset names the dataset of logged models' metrics: add --models" in (
        capsys.readouterr().err
    )
    assert main([*base, "--models", "--dataset", TEST, "--where", "_p_alpha > 9"]) == 1
    assert capsys.readouterr().err == (
        f"mlflow-fun: error: no model matching '_p_alpha > 9' of experiment(s) "
        f"{models['experiment']} has a value of rmse on dataset 'wine-test' that is not NaN\n"
    )
    no_models = ["--source", "table", "--data-dir", tables, "--database", "nowhere"]
    argv = ["best", "--models", "--experiment-id", models["experiment"], "--metric", "rmse"]
    assert main([*argv, *no_models]) == 1
    assert capsys.readouterr().err == (
        "mlflow-fun: error: no logged_models table in 'nowhere': run the job with "
        "--with-models (an MLflow 3 tracking server), or ask another --source\n"
    )
