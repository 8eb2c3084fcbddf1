"""Build the tables with ``mlflow-fun build``, then read the analyst views in the same process.

One process, so the embedded Derby metastore (one process at a time) and a PostgreSQL
metastore are read the same way. Prints one JSON object: the stored text length of each
view, ``metrics_long`` rows per metric, and every row of ``best_runs``.

    python -m tests.views_check --data_dir DIR --source db --connection URL [--conf FILE]
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """``mlflow-fun build`` with ``argv`` (exit code passed on), then the views as JSON."""
    from pyspark.sql import SparkSession

    from tests.sql_endpoint import build_in_process

    code, database = build_in_process(list(sys.argv[1:] if argv is None else argv))
    if code != 0:
        return code
    spark = SparkSession.builder.getOrCreate()
    text_lengths = {
        view: len(spark.sql(f"show create table {database}.{view}").collect()[0][0])
        for view in ("best_runs", "metrics_long")
    }
    long_counts = {
        row["metric"]: row["n"]
        for row in spark.sql(
            f"select metric, count(*) as n from {database}.metrics_long group by metric"
        ).collect()
    }
    best = [
        [row["experiment_id"], row["metric"], row["direction"], row["run_id"], row["value"]]
        for row in spark.sql(
            f"select experiment_id, metric, direction, run_id, value from {database}.best_runs"
        ).collect()
    ]
    print(json.dumps({"text_lengths": text_lengths, "metrics_long": long_counts, "best": best}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
