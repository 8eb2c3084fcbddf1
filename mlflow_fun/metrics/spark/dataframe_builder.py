"""`FastDataframeBuilder`: a Spark DataFrame of one experiment, no tables needed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlflow_fun.client.sources import DEFAULT_PAGE_SIZE, RunSource
from mlflow_fun.config import DEFAULT_PARALLELISM
from mlflow_fun.flatten import FlatRuns
from mlflow_fun.frame_builder import FrameBuilder
from mlflow_fun.metrics.spark.convert import to_spark
from mlflow_fun.naming import quote_identifier

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


class FastDataframeBuilder(FrameBuilder["DataFrame"]):
    """Builds a typed Spark DataFrame of an experiment's runs straight from MLflow.

    Example:
        >>> builder = FastDataframeBuilder(spark, "http://127.0.0.1:5000")
        >>> builder.build_dataframe("1").select("run_id", "_m_rmse", "_p_alpha").show()
        >>> builder.get_best_run("1", "rmse")
        ('5f0c…', 0.7223)

    Args:
        spark: The session to use; None takes the active session or builds one.
        tracking_uri: Tracking server or store; None means ``MLFLOW_TRACKING_URI``.
        source, page_size, parallelism: As `FrameBuilder`.
    """

    def __init__(
        self,
        spark: SparkSession | None = None,
        tracking_uri: str | None = None,
        *,
        source: RunSource | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        parallelism: int = DEFAULT_PARALLELISM,
    ) -> None:
        super().__init__(tracking_uri, source=source, page_size=page_size, parallelism=parallelism)
        if spark is None:
            from pyspark.sql import SparkSession

            from mlflow_fun.spark_session import build_spark_session

            spark = SparkSession.getActiveSession() or build_spark_session()
        self.spark = spark

    def _frame(self, flat: FlatRuns) -> DataFrame:
        return to_spark(self.spark, flat)

    def _best(self, frame: DataFrame, column: str, ascending: bool) -> tuple[str, float] | None:
        return best_run_of(frame, column, ascending)


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
