"""`PandasDataframeBuilder`: a typed pandas DataFrame of one experiment."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlflow_fun.client.sources import DEFAULT_PAGE_SIZE, RunSource, open_source
from mlflow_fun.errors import MetricNotFoundError
from mlflow_fun.flatten import FlatRuns, resolve_metric, to_arrow
from mlflow_fun.runs import fetch_flat_runs

if TYPE_CHECKING:
    import pandas as pd


def to_pandas(flat: FlatRuns) -> pd.DataFrame:
    """Convert flattened runs to pandas with nullable dtypes.

    INT and BIGINT become ``Int64``, DOUBLE ``float64``, BOOLEAN ``boolean``, STRING
    ``string``, TIMESTAMP ``datetime64[ns, UTC]``. ``df.attrs["mlflow_keys"]`` maps each
    metric, param and tag column to its ``(kind, MLflow key)``.
    """
    import pandas as pd
    import pyarrow as pa

    mapping = {
        pa.int32(): pd.Int64Dtype(),
        pa.int64(): pd.Int64Dtype(),
        pa.bool_(): pd.BooleanDtype(),
        pa.string(): pd.StringDtype(),
    }
    df = to_arrow(flat).to_pandas(types_mapper=mapping.get, coerce_temporal_nanoseconds=True)
    df.attrs["mlflow_keys"] = {c.name: (c.kind, c.key) for c in flat.columns if c.kind != "info"}
    return df


class PandasDataframeBuilder:
    """Builds a typed pandas DataFrame of an experiment's runs straight from MLflow.

    Example:
        >>> builder = PandasDataframeBuilder("http://127.0.0.1:5000")
        >>> builder.build_dataframe("1")[["run_id", "_m_rmse", "_p_alpha"]]
        >>> builder.get_best_run("1", "rmse")
        ('5f0c…', 0.7223)

    Args:
        tracking_uri: Tracking server or store; None means ``MLFLOW_TRACKING_URI``.
        source: A ready `RunSource` (overrides ``tracking_uri``).
        page_size: Runs per ``runs/search`` page.
    """

    def __init__(
        self,
        tracking_uri: str | None = None,
        *,
        source: RunSource | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> None:
        self.source = source or open_source(tracking_uri, page_size=page_size)

    def build_dataframe(self, experiment_id: str) -> pd.DataFrame:
        """Return one row per active run of ``experiment_id`` (see `to_pandas` for dtypes).

        Raises:
            ExperimentNotFoundError: No experiment has this id.
            TrackingServerError: The tracking server failed.
        """
        _, flat = fetch_flat_runs(self.source, str(experiment_id))
        return to_pandas(flat)

    def get_best_run(
        self, experiment_id: str, metric: str, ascending: bool = True
    ) -> tuple[str, float]:
        """Return ``(run_id, value)`` of the best run; rules as `FastDataframeBuilder`.

        Raises:
            MetricNotFoundError: No run has a non-NaN value of ``metric``.
        """
        _, flat = fetch_flat_runs(self.source, str(experiment_id))
        column = resolve_metric(flat.columns, metric, str(experiment_id))
        best = best_run_of(to_pandas(flat), column.name, ascending)
        if best is None:
            raise MetricNotFoundError(
                f"no run of experiment {experiment_id} has a value of metric {metric!r} "
                "that is not NaN"
            )
        return best


def best_run_of(df: pd.DataFrame, column: str, ascending: bool = True) -> tuple[str, float] | None:
    """``(run_id, value)`` of the best non-NaN ``column`` in ``df``, or None.

    Ties go to the earliest ``start_time``, then the smallest ``run_id``.
    """
    candidates = df[df[column].notna()]
    if candidates.empty:
        return None
    ordered = candidates.sort_values(
        [column, "start_time", "run_id"],
        ascending=[ascending, True, True],
        na_position="last",
        kind="mergesort",
    )
    best = ordered.iloc[0]
    return str(best["run_id"]), float(best[column])
