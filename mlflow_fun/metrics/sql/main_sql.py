"""The seed's ``python -m mlflow_fun.metrics.sql.main_sql`` command.

Kept for the seed's users; the code lives in `mlflow_fun.cli.main_sql`.
"""

import sys

from mlflow_fun.cli.main_sql import main
from mlflow_fun.query.sql import get_best_run

__all__ = ["get_best_run", "main"]

if __name__ == "__main__":
    sys.exit(main())
