"""The same best-run queries from every source, by every engine, give identical answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from mlflow_fun.config import JobConfig
from mlflow_fun.extract.local_server import LocalMlflowServer
from mlflow_fun.load.job import run_job
from mlflow_fun.query.answer import answer_query
from mlflow_fun.query.model import BestQuery, parse_order_by
from tests.seed import Seeded

DATABASE = "best_everywhere"


def _order(text: str, **kwargs: Any) -> BestQuery:
    return BestQuery(order_by=parse_order_by(text), **kwargs)


QUERIES = {
    "single metric": (["best"], _order("rmse")),
    "single metric desc": (["best"], _order("_m_rmse desc")),
    "multi-key order": (["best"], _order("rmse asc, r2 desc", top=3)),
    "where with OR": (["best"], _order("r2 desc", where="_m_r2 > 0.5 or _m_rmse >= 0.9", top=5)),
    "top-K with IN and BETWEEN": (
        ["paged"],
        _order("rmse desc", where="_p_alpha in (0.1, 0.5) or _m_rmse between 0.1 and 0.2", top=4),
    ),
    "pareto": (["best"], BestQuery(pareto=parse_order_by("rmse min, r2 max", ("min", "max")))),
    "pareto with where": (
        ["best"],
        BestQuery(
            pareto=parse_order_by("r2 max, rmse min", ("min", "max")), where="status = 'FINISHED'"
        ),
    ),
    "cross-experiment": (["best", "paged"], _order("rmse asc", top=4)),
    # The same question in MLflow's words and in column names (compared below).
    "mlflow words": (
        ["paged"],
        _order("metrics.rmse desc", where="metrics.rmse < 0.8 and params.alpha < '0.5'", top=3),
    ),
    "column names": (
        ["paged"],
        _order("_m_rmse desc", where="_m_rmse < 0.8 and _p_alpha < 0.5", top=3),
    ),
    # issue 16's example: the param compared as MLflow's string, the column as a number
    "mlflow words, equal": (
        ["paged"],
        _order("metrics.rmse", where="metrics.rmse < 0.8 and params.alpha = '0.5'", top=3),
    ),
    "column names, equal": (
        ["paged"],
        _order("_m_rmse", where="_m_rmse < 0.8 and _p_alpha = 0.5", top=3),
    ),
}


@pytest.fixture(scope="module")
def tables(spark: Any, seeded: Seeded) -> None:
    ids = (seeded.best, seeded.paged)
    config = JobConfig(database=DATABASE, experiment_ids=ids, tracking_uri=seeded.url)
    run_job(config, spark=spark, progress=False)


def _ids(seeded: Seeded, names: list[str]) -> list[str]:
    return [{"best": seeded.best, "paged": seeded.paged}[n] for n in names]


# (source, engine): every way `mlflow-fun best` answers; ("table", "pandas") reads the
# tables with delta-rs (no Spark), ("table", "spark") through Spark's metastore.
PATHS = [
    ("rest", "auto"),
    ("api", "auto"),
    ("db", "auto"),
    ("rest", "pandas"),
    ("api", "pandas"),
    ("db", "pandas"),
    ("rest", "spark"),
    ("table", "pandas"),
    ("table", "spark"),
]


def _answer(
    path: tuple[str, str], seeded: Seeded, server: LocalMlflowServer, spark: Any, name: str
) -> list:
    """The answer of one (source, engine) pair."""
    names, query = QUERIES[name]
    source, engine = path
    rows = answer_query(
        source,
        _ids(seeded, names),
        query,
        engine=engine,
        tracking_uri=seeded.url,
        connection=f"sqlite:///{Path(server.root) / 'mlflow.db'}",
        spark=None if path == ("table", "pandas") else spark,
        database=DATABASE,
        data_dir=str(Path(urlparse(spark.conf.get("spark.sql.warehouse.dir")).path).parent),
    )
    return [(r.experiment_id, r.run_id, tuple(r.values.values())) for r in rows]


@pytest.mark.parametrize("name", list(QUERIES))
def test_every_source_gives_the_same_answer(
    name: str, spark: Any, seeded: Seeded, mlflow_server: LocalMlflowServer, tables: None
) -> None:
    answers = {p: _answer(p, seeded, mlflow_server, spark, name) for p in PATHS}
    reference = answers["rest", "pandas"]
    assert reference, f"{name}: the query found no run"
    for path, answer in answers.items():
        assert answer == reference, f"{name}: {path} differs from rest/pandas"


def test_mlflow_words_answer_as_column_names(
    spark: Any, seeded: Seeded, mlflow_server: LocalMlflowServer, tables: None
) -> None:
    for path in PATHS:
        words = _answer(path, seeded, mlflow_server, spark, "mlflow words")
        columns = _answer(path, seeded, mlflow_server, spark, "column names")
        assert words == columns and len(words) == 3, path
        words = _answer(path, seeded, mlflow_server, spark, "mlflow words, equal")
        columns = _answer(path, seeded, mlflow_server, spark, "column names, equal")
        assert words == columns == [(seeded.paged, seeded.paged_run_ids[5], (0.1,))], path


def test_known_answers(
    spark: Any, seeded: Seeded, mlflow_server: LocalMlflowServer, tables: None
) -> None:
    b = seeded.best_runs
    run = lambda name: _answer(("rest", "auto"), seeded, mlflow_server, spark, name)  # noqa: E731
    assert run("single metric") == [(seeded.best, b["a"], (0.5,))]
    assert run("multi-key order") == [
        (seeded.best, b["b"], (0.5, 0.9)),
        (seeded.best, b["a"], (0.5, 0.1)),
        (seeded.best, b["g"], (0.9, 0.3)),
    ]
    assert [r[1] for r in run("where with OR")] == [b["c"], b["b"], b["g"], b["e"]]
    assert run("pareto") == [(seeded.best, b["b"], (0.5, 0.9))]
    assert [r[1] for r in run("pareto with where")] == [b["b"]]  # c has NaN rmse
    # paged run i has rmse (i * 7 % 25) / 100: run 0 has 0.0, run 18 has 0.01, ...
    cross = run("cross-experiment")
    assert [r[1] for r in cross] == [seeded.paged_run_ids[i] for i in (0, 18, 11, 4)]
