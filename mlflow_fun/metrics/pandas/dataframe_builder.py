"""`PandasDataframeBuilder`: a typed pandas DataFrame of one experiment."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlflow_fun.flatten import FlatRuns, to_arrow
from mlflow_fun.frame_builder import FrameBuilder

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa


def to_pandas(flat: FlatRuns) -> pd.DataFrame:
    """Convert flattened runs to pandas with nullable dtypes (see `arrow_to_pandas`).

    ``df.attrs["mlflow_keys"]`` maps each metric, param and tag column to its
    ``(kind, MLflow key)``.
    """
    df = arrow_to_pandas(to_arrow(flat))
    df.attrs["mlflow_keys"] = {c.name: (c.kind, c.key) for c in flat.columns if c.kind != "info"}
    return df


def arrow_to_pandas(table: pa.Table) -> pd.DataFrame:
    """An Arrow run table as pandas with nullable dtypes.

    INT and BIGINT become ``Int64``, DOUBLE ``float64``, BOOLEAN ``boolean``, STRING
    ``string``, TIMESTAMP ``datetime64[ns, UTC]``.
    """
    import pandas as pd
    import pyarrow as pa

    mapping = {
        pa.int32(): pd.Int64Dtype(),
        pa.int64(): pd.Int64Dtype(),
        pa.bool_(): pd.BooleanDtype(),
        pa.string(): pd.StringDtype(),
        pa.large_string(): pd.StringDtype(),
    }
    return table.to_pandas(types_mapper=mapping.get, coerce_temporal_nanoseconds=True)


class PandasDataframeBuilder(FrameBuilder["pd.DataFrame"]):
    """Builds a typed pandas DataFrame of an experiment's runs straight from MLflow.

    Example:
        >>> builder = PandasDataframeBuilder("http://127.0.0.1:5000")
        >>> builder.build_dataframe("1")[["run_id", "_m_rmse", "_p_alpha"]]
        >>> builder.get_best_run("1", "rmse")
        ('5f0c…', 0.7223)

    Args: as `FrameBuilder`; dtypes as `to_pandas`.
    """

    def _frame(self, flat: FlatRuns) -> pd.DataFrame:
        return to_pandas(flat)

    def _best(self, frame: pd.DataFrame, column: str, ascending: bool) -> tuple[str, float] | None:
        return best_run_of(frame, column, ascending)


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
