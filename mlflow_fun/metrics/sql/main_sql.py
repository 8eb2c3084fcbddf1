"""The seed's ``python -m mlflow_fun.metrics.sql.main_sql`` command.

Kept for the seed's users; the code lives in `mlflow_fun.cli.main_sql`.
"""

import sys

from mlflow_fun.cli.main_sql import build_parser, main
from mlflow_fun.query.sql import get_best_run

__all__ = ["build_parser", "get_best_run", "main"]

if __name__ == "__main__":
    sys.exit(main())
