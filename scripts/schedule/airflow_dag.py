"""Example Airflow DAGs: the mlflow-fun job as a SparkSubmitOperator.

``mlflow_fun_refresh`` runs hourly and is incremental (only the runs that changed are
pulled and merged); ``mlflow_fun_full_refresh`` rebuilds every table weekly, which picks up
what an incremental refresh cannot see (metrics logged to runs that had already finished,
runs purged by ``mlflow gc``); ``mlflow_fun_maintain`` compacts and vacuums the tables
daily (``jobs/maintain_tables.py``, ``mlflow-fun maintain``).

Copy to your DAGs folder and adapt the connection id, paths and ids. Needs
apache-airflow-providers-apache-spark on the Airflow side (not a dependency of mlflow-fun).
Credentials (MLFLOW_TRACKING_TOKEN, ...) belong in the Spark connection's environment or a
secrets backend, never in this file. ``max_active_runs=1`` keeps two runs of a DAG apart;
the job's own lock file covers one host only, so on a cluster this setting is the lock.
Do not let the three DAGs overlap either: give them one Airflow pool with a single slot.
"""

from datetime import datetime, timedelta

from airflow import DAG
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

ARGS = ["--database", "mlflow_metrics"]
PULL = ["--tracking_uri", "https://mlflow.example.internal", "--no-progress"]


def build_tables_dag(
    dag_id: str, schedule: timedelta, extra_args: list[str], job: str = "build_tables"
) -> DAG:
    """One DAG with one spark-submit of jobs/<job>.py."""
    with DAG(
        dag_id=dag_id,
        start_date=datetime(2026, 1, 1),
        schedule=schedule,
        catchup=False,
        max_active_runs=1,
        default_args={"retries": 1, "retry_delay": timedelta(minutes=5)},
    ) as dag:
        SparkSubmitOperator(
            task_id=job,
            conn_id="spark_default",
            pool="mlflow_fun",  # one slot: the refresh and the full refresh never overlap
            application=f"/opt/mlflow-fun/jobs/{job}.py",
            packages="io.delta:delta-spark_4.2_2.13:4.4.0",
            conf={
                "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
                "spark.sql.catalog.spark_catalog": (
                    "org.apache.spark.sql.delta.catalog.DeltaCatalog"
                ),
            },
            application_args=[*ARGS, *extra_args],
        )
    return dag


refresh = build_tables_dag("mlflow_fun_refresh", timedelta(hours=1), PULL)
full_refresh = build_tables_dag(
    "mlflow_fun_full_refresh", timedelta(weeks=1), [*PULL, "--full-refresh"]
)
maintain = build_tables_dag("mlflow_fun_maintain", timedelta(days=1), [], job="maintain_tables")
