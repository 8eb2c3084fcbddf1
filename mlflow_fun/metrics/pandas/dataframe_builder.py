"""The seed's path to `PandasDataframeBuilder`: a pandas DataFrame of one experiment.

Kept for the seed's users; the code lives in `mlflow_fun.query.builders`.
"""

from mlflow_fun.query.builders import PandasDataframeBuilder
from mlflow_fun.query.engine import best_run_of
from mlflow_fun.transform.frames import arrow_to_pandas, to_pandas

__all__ = ["PandasDataframeBuilder", "arrow_to_pandas", "best_run_of", "to_pandas"]
