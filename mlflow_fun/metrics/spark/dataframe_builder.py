"""The seed's path to `FastDataframeBuilder`: a Spark DataFrame of one experiment.

Kept for the seed's users; the code lives in `mlflow_fun.query.builders`.
"""

from mlflow_fun.query.builders import FastDataframeBuilder
from mlflow_fun.query.engine import best_run_of

__all__ = ["FastDataframeBuilder", "best_run_of"]
