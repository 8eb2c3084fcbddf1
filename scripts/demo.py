"""`make demo`: a local tracking server, the Wine Quality runs, the job, the classic query.

Steps: stop a server a crashed demo left behind and wipe ``.demo/``; start ``mlflow
server`` (sqlite store under ``.demo/mlflow``) on a free loopback port; train the 30
ElasticNet runs into experiment ``wine-quality``, each logging its model (MLflow 3's
logged models) with rmse, mae and r2 on ``wine-train`` and ``wine-test``; register the
best model on ``wine-test`` as ``wine-quality`` @champion; run ``spark-submit
jobs/build_tables.py --with-models --with-registry`` into ``.demo/data``; print the
table's schema and the 10 best runs by rmse, the best logged model on ``wine-test`` and
the registered version that points at it, with ``mlflow-fun sql``, and the same model by
``mlflow-fun best --models`` from the tables; stop the server.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

from train_wine import register_best, train_grid

from mlflow_fun.extract.local_server import LocalMlflowServer
from mlflow_fun.session import LOCAL_JVM_OPTIONS, LOG4J_CONFIG
from mlflow_fun.spark_jars import spark_submit_jar_args

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / ".demo"
BIN = Path(sys.executable).parent
REGISTERED = "wine-quality"

# The best logged model on wine-test by rmse (one row per metric value in model_metrics).
BEST_MODEL_SQL = """
select m.model_id, m.source_run_id, m.params['alpha'] as alpha,
       m.params['l1_ratio'] as l1_ratio, round(mm.value, 4) as rmse_on_wine_test
from model_metrics mm join logged_models m on m.model_id = mm.model_id
where mm.key = 'rmse' and mm.dataset_name = 'wine-test'
order by mm.value, m.model_id limit 1
"""

# Which registered version (and alias) points at that model? MLflow's server sends no
# model_id with a version: a version registered from a logged model has models:/m-<id>.
BEST_VERSION_SQL = """
with best as (
  select model_id from model_metrics
  where key = 'rmse' and dataset_name = 'wine-test'
  order by value, model_id limit 1
)
select mv.name, mv.version, mv.aliases, b.model_id
from model_versions mv
join best b
  on b.model_id = coalesce(mv.model_id, regexp_extract(mv.source, '^models:/(m-[0-9a-f]+)$', 1))
"""


def run(command: list[str]) -> None:
    print("$ " + " ".join(command), flush=True)
    subprocess.run(command, check=True, env={**os.environ, "PYSPARK_PYTHON": sys.executable})


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    server = LocalMlflowServer(DEMO / "mlflow")
    server.stop_stale()
    shutil.rmtree(DEMO, ignore_errors=True)
    data_dir = str(DEMO / "data")
    with server:
        print(f"tracking server: {server.url} (sqlite store in {server.root})", flush=True)
        experiment_id = train_grid(server.url)
        print(
            f"trained 30 runs into experiment wine-quality (id {experiment_id}), "
            "one logged model each",
            flush=True,
        )
        model_id, version = register_best(server.url, experiment_id, REGISTERED)
        print(
            f"registered {model_id} (the lowest rmse on wine-test) as {REGISTERED} "
            f"version {version} @champion",
            flush=True,
        )
        run(
            [
                str(BIN / "spark-submit"),
                *spark_submit_jar_args(),
                "--driver-java-options",
                f"-Dlog4j2.configurationFile={LOG4J_CONFIG} {LOCAL_JVM_OPTIONS}",
                str(ROOT / "jobs" / "build_tables.py"),
                "--database",
                "mlflow_metrics",
                "--data_dir",
                data_dir,
                "--tracking_uri",
                server.url,
                "--experiment_ids",
                experiment_id,
                "--with-models",
                "--with-registry",
            ]
        )
    sql = [str(BIN / "mlflow-fun"), "sql", "--data_dir", data_dir]
    run([*sql, f"describe table exp_{experiment_id}"])
    run(
        [
            *sql,
            "select run_uuid, round(_m_rmse,4) as _m_rmse, _p_alpha, _p_l1_ratio "
            f"from exp_{experiment_id} order by _m_rmse limit 10",
        ]
    )
    run([*sql, " ".join(BEST_MODEL_SQL.split())])
    run([*sql, " ".join(BEST_VERSION_SQL.split())])
    print("the best logged model on wine-test, by `mlflow-fun best --models` (no JVM):")
    best = [str(BIN / "mlflow-fun"), "best", "--models", "--experiment-id", experiment_id]
    run(
        [
            *best,
            "--metric",
            "rmse",
            "--dataset",
            "wine-test",
            "--source",
            "table",
            "--data-dir",
            data_dir,
        ]
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
