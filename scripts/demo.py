"""`make demo`: a local tracking server, the Wine Quality runs, the job, the classic query.

Steps: stop a server a crashed demo left behind and wipe ``.demo/``; start ``mlflow
server`` (sqlite store under ``.demo/mlflow``) on a free loopback port; train the 30
ElasticNet runs into experiment ``wine-quality``; run ``spark-submit
jobs/build_tables.py`` into ``.demo/data``; print the table's schema and the 10 best
runs by rmse with ``mlflow-fun sql``; stop the server.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

from train_wine import train_grid

from mlflow_fun.extract.local_server import LocalMlflowServer
from mlflow_fun.session import LOCAL_JVM_OPTIONS, LOG4J_CONFIG, spark_submit_jar_args

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / ".demo"
BIN = Path(sys.executable).parent


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
        print(f"trained 30 runs into experiment wine-quality (id {experiment_id})", flush=True)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
