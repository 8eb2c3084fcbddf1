"""spark-submit entry point: compact and vacuum the job's tables, trim old status rows.

    spark-submit --packages io.delta:delta-spark_4.2_2.13:4.4.0 jobs/maintain_tables.py \
        --database mlflow_metrics --data_dir DIR

The same command as ``mlflow-fun maintain`` (logging INFO): `mlflow_fun.cli.maintain`,
docs/incremental.md.
"""

import sys

from mlflow_fun.cli.main import main

if __name__ == "__main__":
    sys.exit(
        main(["--log-level", "INFO", "maintain", *sys.argv[1:]], prog_name="maintain_tables.py")
    )
