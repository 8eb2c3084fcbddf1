"""``best --agg min|max|last``: rank runs by a metric's best value at any step.

The run tables hold MLflow's latest value of each metric. With an aggregate, the ranked
metrics' columns are replaced by the value `MetricSummary.pick` gives from the metric's
history, read from wherever the runs came from: the tracking server's
``metrics/get-history`` (``rest``, ``api``), MLflow's ``metrics`` table (``db``), or the
job's ``metric_history`` table (``table``, built with ``--with-history``). The same rule
(`mlflow_fun.transform.steps`) computes it for every source, so every source gives the
same answer. Each answer names the step its value was logged at.

A condition (``--where``) on a ranked metric sees the aggregated value too; other
metrics keep their latest values.

Example:
    >>> columns = ranked_metric_columns(frame, query)            # {"_m_val_loss": "val_loss"}
    >>> summaries = summarize(source.iter_metric_history(runs_with_metrics(frame, columns)))
    >>> rows = run_query(with_aggregate(frame, summaries, columns, "min"), query)
    >>> name_steps(rows, summaries, columns, "min")[0].values  # {"_m_val_loss": 0.2, "step": 37}
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mlflow_fun.catalog import table_exists
from mlflow_fun.errors import ConfigError
from mlflow_fun.model import MetricPoint, RunRecord
from mlflow_fun.query.engine import metric_columns
from mlflow_fun.query.model import BestQuery, RankedRun
from mlflow_fun.query.tables import read_table
from mlflow_fun.transform.naming import HISTORY_TABLE, qualified_table
from mlflow_fun.transform.steps import AGGREGATES, MetricSummary

# pyspark: imported inside the functions that read tables with it.
if TYPE_CHECKING:
    from pyspark.sql import SparkSession

Summaries = Mapping[tuple[str, str], MetricSummary]


def check_agg(agg: str | None) -> None:
    """Raises ConfigError: ``agg`` is not None nor one of `AGGREGATES`."""
    if agg is not None and agg not in AGGREGATES:
        raise ConfigError(f"--agg {agg!r} is not one of: {', '.join(AGGREGATES)}")


def ranked_metric_columns(frame: Any, query: BestQuery) -> dict[str, str]:
    """Column -> MLflow key of every metric ``query`` ranks by (other columns are left out)."""
    return metric_columns(frame, [key.name for key in query.order_by or query.pareto])


def runs_with_metrics(frame: Any, columns: Mapping[str, str]) -> list[RunRecord]:
    """The runs of ``frame`` that have a value of a ranked metric, holding only those keys.

    Their metric values are placeholders: a source's ``iter_metric_history`` only looks at
    which keys a run has.
    """
    rows = _rows(frame, ["run_id", *columns])
    runs = []
    for row in rows:
        keys = {key: 0.0 for column, key in columns.items() if not _missing(row[column])}
        if keys:
            runs.append(RunRecord(str(row["run_id"]), {}, keys, {}, {}))
    return runs


def with_aggregate(frame: Any, summaries: Summaries, columns: Mapping[str, str], agg: str) -> Any:
    """``frame`` with each ranked metric column holding its ``agg`` value (NULL: no history)."""
    import pandas as pd

    if isinstance(frame, pd.DataFrame):
        frame = frame.copy()  # attrs (the columns' MLflow keys) are copied with it
        for column, key in columns.items():
            frame[column] = [
                _value(summaries, run_id, key, agg) for run_id in frame["run_id"].astype(str)
            ]
        return frame
    return _spark_with_aggregate(frame, summaries, columns, agg)


def name_steps(
    rows: Sequence[RankedRun], summaries: Summaries, columns: Mapping[str, str], agg: str
) -> list[RankedRun]:
    """``rows`` with each ranked value's step: ``step`` for one metric, else ``<column>_step``."""
    named = []
    for row in rows:
        values = dict(row.values)
        for column, key in columns.items():
            summary = summaries.get((row.run_id, key))
            step = None if summary is None else summary.pick(agg)[1]
            values["step" if len(columns) == 1 else f"{column}_step"] = step
        named.append(RankedRun(row.run_id, row.experiment_id, values))
    return named


def history_from_delta(
    data_dir: str, database: str, experiment_ids: Sequence[str], keys: Sequence[str]
) -> Iterator[MetricPoint]:
    """The points of ``keys`` in ``<database>.metric_history`` under ``data_dir``, by delta-rs.

    Raises:
        TableNotLocalError: The table is not a Delta table under ``data_dir``.
        UnreadableTableError: delta-rs does not read it (Spark does).
    """
    table = read_table(
        data_dir,
        database,
        HISTORY_TABLE,
        columns=["run_id", "key", "value", "step", "timestamp"],
        filters=[("experiment_id", "in", list(experiment_ids)), ("key", "in", list(keys))],
    )
    for row in table.to_pylist():
        yield _point(row)


def history_from_spark(
    spark: SparkSession, database: str, experiment_ids: Sequence[str], keys: Sequence[str]
) -> Iterator[MetricPoint]:
    """The points of ``keys`` in ``<database>.metric_history``, through Spark's metastore.

    Raises:
        ConfigError: The database has no ``metric_history`` table.
    """
    from pyspark.sql import functions as F

    name = qualified_table(database, HISTORY_TABLE)
    if not table_exists(spark, database, HISTORY_TABLE):
        raise ConfigError(no_history_message(database))
    rows = (
        spark.table(name)
        .where(F.col("experiment_id").isin(list(experiment_ids)) & F.col("key").isin(list(keys)))
        .select("run_id", "key", "value", "step", "timestamp")
        .toLocalIterator()
    )
    for row in rows:
        yield _point(row.asDict())


def no_history_message(database: str) -> str:
    """What to do when the tables hold no metric history."""
    return (
        f"--agg needs {database}.{HISTORY_TABLE}, which the job writes with --with-history: "
        "run `mlflow-fun build --with-history`, or ask another --source"
    )


def _point(row: Mapping[str, Any]) -> MetricPoint:
    stamp = row["timestamp"]
    millis = 0 if stamp is None else round(stamp.timestamp() * 1000)
    return MetricPoint(row["run_id"], row["key"], float(row["value"]), int(row["step"]), millis)


def _value(summaries: Summaries, run_id: str, key: str, agg: str) -> float | None:
    summary = summaries.get((run_id, key))
    return None if summary is None else summary.pick(agg)[0]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _rows(frame: Any, columns: Sequence[str]) -> list[Mapping[str, Any]]:
    import pandas as pd

    if isinstance(frame, pd.DataFrame):
        records: list[Mapping[str, Any]] = frame[list(columns)].to_dict("records")
        return records
    return [row.asDict() for row in frame.select(*columns).collect()]


def _spark_with_aggregate(
    frame: Any, summaries: Summaries, columns: Mapping[str, str], agg: str
) -> Any:
    """The Spark version of `with_aggregate`: a join on ``run_id``, metadata kept."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    spark = frame.sparkSession
    run_ids = sorted({run_id for run_id, _ in summaries})
    fields = [T.StructField("run_id", T.StringType())]
    fields += [T.StructField(f"__agg_{i}", T.DoubleType()) for i in range(len(columns))]
    values = [
        (run_id, *(_value(summaries, run_id, key, agg) for key in columns.values()))
        for run_id in run_ids
    ]
    aggregated = spark.createDataFrame(values, T.StructType(fields))
    joined = frame.join(aggregated, "run_id", "left")
    metadata = {field.name: field.metadata for field in frame.schema.fields}
    replaced = {
        column: F.col(f"__agg_{i}").alias(column, metadata=metadata[column])
        for i, column in enumerate(columns)
    }
    return joined.select(*(replaced.get(name, frame[name]) for name in frame.columns))
