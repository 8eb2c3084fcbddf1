"""Example Airflow DAG: the mlflow-fun job as a SparkSubmitOperator, hourly.

Copy to your DAGs folder and adapt the connection id, paths and ids. Needs
apache-airflow-providers-apache-spark on the Airflow side (not a dependency of mlflow-fun).
Credentials (MLFLOW_TRACKING_TOKEN, ...) belong in the Spark connection's environment or a
secrets backend, never in this file. max_active_runs=1 keeps two runs from overlapping.
"""

from datetime import datetime, timedelta

from airflow import DAG
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

with DAG(
    dag_id="mlflow_fun_build_tables",
    start_date=datetime(2026, 1, 1),
    schedule=timedelta(hours=1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=5)},
) as dag:
    SparkSubmitOperator(
        task_id="build_tables",
        conn_id="spark_default",
        application="/opt/mlflow-fun/jobs/build_tables.py",
        packages="io.delta:delta-spark_4.2_2.13:4.4.0",
        conf={
            "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
            "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        },
        application_args=[
            "--database",
            "mlflow_metrics",
            "--tracking_uri",
            "https://mlflow.example.internal",
            "--no-progress",
        ],
    )
