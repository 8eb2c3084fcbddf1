"""The seed's path to the best run from MLflow's database in one SQL query.

Kept for the seed's users; the code lives in `mlflow_fun.query.sql`.
"""

from mlflow_fun.query.sql import best_run_query, get_best_run

__all__ = ["best_run_query", "get_best_run"]
