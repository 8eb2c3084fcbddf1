"""spark-submit entry point: build one typed Delta table exp_<id> per MLflow experiment.

    spark-submit --packages io.delta:delta-spark_4.2_2.13:4.4.0 jobs/build_tables.py \
        --database mlflow_metrics --data_dir DIR --experiment_ids 1,2,9

The same command as ``mlflow-fun build`` (logging INFO): `mlflow_fun.cli.build`, docs/job.md.
"""

import sys

from mlflow_fun.cli.main import job_main

if __name__ == "__main__":
    sys.exit(job_main(sys.argv[1:]))
