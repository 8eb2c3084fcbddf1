"""Spark settings for the tests' own reads of a few hundred rows: one partition for every
shuffle, scan and Delta snapshot, and Spark's interpreted plans (no code generation, no
adaptive re-planning), as Spark's own test suites run. The same answers for less CPU:
each extra task cost more than it parallelised (tests/unit and tests/spark 98 -> 88
CPU-seconds, `test_incremental.py` 77 -> 71), and compiling each plan's Java code cost
more than it saved (tests/spark 78-82 s with it, 63 s without).

The `mlflow-fun` processes whose behaviour the tests check keep the product's settings.
"""

LEAN_READS: dict[str, str] = {
    "spark.sql.shuffle.partitions": "1",
    "spark.default.parallelism": "1",
    "spark.databricks.delta.snapshotPartitions": "1",
    "spark.sql.codegen.wholeStage": "false",
    "spark.sql.codegen.factoryMode": "NO_CODEGEN",
    "spark.sql.adaptive.enabled": "false",
}
