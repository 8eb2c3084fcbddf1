"""The seed's path to the best run straight from MLflow (the server sorts).

Kept for the seed's users; the code lives in `mlflow_fun.query.server`.
"""

from mlflow_fun.query.server import best_run_by_server, get_best_run, get_best_run_fast

__all__ = ["best_run_by_server", "get_best_run", "get_best_run_fast"]
