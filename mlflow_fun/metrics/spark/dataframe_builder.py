"""`FastDataframeBuilder`: a Spark DataFrame of one experiment, no tables needed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlflow_fun.client.sources import DEFAULT_PAGE_SIZE, RunSource, open_source
from mlflow_fun.errors import MetricNotFoundError
from mlflow_fun.flatten import resolve_metric
from mlflow_fun.metrics.spark.convert import to_spark
from mlflow_fun.naming import quote_identifier
from mlflow_fun.runs import fetch_flat_runs

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


class FastDataframeBuilder:
    """Builds a typed Spark DataFrame of an experiment's runs straight from MLflow.

    Example:
        >>> builder = FastDataframeBuilder(spark, "http://127.0.0.1:5000")
        >>> builder.build_dataframe("1").select("run_id", "_m_rmse", "_p_alpha").show()
        >>> builder.get_best_run("1", "rmse")
        ('5f0c…', 0.7223)

    Args:
        spark: The session to use; None takes the active session or builds one.
        tracking_uri: Tracking server or store; None means ``MLFLOW_TRACKING_URI``.
        source: A ready `RunSource` (overrides ``tracking_uri``).
        page_size: Runs per ``runs/search`` page.
    """

    def __init__(
        self,
        spark: SparkSession | None = None,
        tracking_uri: str | None = None,
        *,
        source: RunSource | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> None:
        if spark is None:
            from pyspark.sql import SparkSession

            from mlflow_fun.spark_session import build_spark_session

            spark = SparkSession.getActiveSession() or build_spark_session()
        self.spark = spark
        self.source = source or open_source(tracking_uri, page_size=page_size)

    def build_dataframe(self, experiment_id: str) -> DataFrame:
        """Return one row per active run of ``experiment_id``, typed as described in the README.

        Raises:
            ExperimentNotFoundError: No experiment has this id.
            TrackingServerError: The tracking server failed.
        """
        _, flat = fetch_flat_runs(self.source, str(experiment_id))
        return to_spark(self.spark, flat)

    def get_best_run(
        self, experiment_id: str, metric: str, ascending: bool = True
    ) -> tuple[str, float]:
        """Return ``(run_id, value)`` of the run with the lowest (or highest) ``metric``.

        Runs without the metric or with NaN are skipped; ties go to the earliest
        ``start_time``, then the smallest ``run_id``.

        Args:
            experiment_id: The experiment.
            metric: ``rmse`` or ``_m_rmse``.
            ascending: True for the lowest value, False for the highest.

        Raises:
            MetricNotFoundError: No run has a non-NaN value of ``metric``.
        """
        _, flat = fetch_flat_runs(self.source, str(experiment_id))
        column = resolve_metric(flat.columns, metric, str(experiment_id))
        best = best_run_of(to_spark(self.spark, flat), column.name, ascending)
        if best is None:
            raise MetricNotFoundError(
                f"no run of experiment {experiment_id} has a value of metric {metric!r} "
                "that is not NaN"
            )
        return best


def best_run_of(df: DataFrame, column: str, ascending: bool = True) -> tuple[str, float] | None:
    """``(run_id, value)`` of the best non-null, non-NaN ``column`` in ``df``, or None.

    Ties go to the earliest ``start_time``, then the smallest ``run_id``.
    """
    from pyspark.sql import functions as F

    value = F.col(quote_identifier(column))
    row = (
        df.where(value.isNotNull() & ~F.isnan(value))
        .orderBy(
            value.asc() if ascending else value.desc(),
            F.col("start_time").asc_nulls_last(),
            F.col("run_id").asc(),
        )
        .select("run_id", value.alias("value"))
        .first()
    )
    return None if row is None else (row["run_id"], float(row["value"]))
