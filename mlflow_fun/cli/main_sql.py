"""Print the best run of an experiment, read straight from MLflow's database.

Example:
    $ python -m mlflow_fun.metrics.sql.main_sql \\
        --connection sqlite:////srv/mlflow/mlflow.db --experiment_id 1 --metric rmse
    ('5f0c…', 0.7223)

The URL may come from ``MLFLOW_FUN_DB_URL`` instead of ``--connection``, which keeps the
password off the command line. Exit codes: 0 success, 1 an error (one line
``main_sql: error: …`` on stderr), 2 bad usage.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from mlflow_fun.config import DB_URL_ENV
from mlflow_fun.errors import MlflowFunError
from mlflow_fun.query.sql import get_best_run

PROG = "main_sql"
URL_ENV = DB_URL_ENV


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``main_sql``."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Print ('<run_id>', <value>) of the active run with the lowest (or highest) "
            "latest value of a metric, with one SQL query on MLflow's own database. Runs "
            "without the metric or with NaN are skipped; ties go to the earliest start_time, "
            "then the smallest run_id."
        ),
    )
    parser.add_argument(
        "--connection",
        default=os.environ.get(URL_ENV),
        help=(
            "SQLAlchemy URL of MLflow's database: sqlite:////path/mlflow.db, "
            "postgresql+psycopg2://user:pw@host/db, mysql+pymysql://user:pw@host/db "
            f"(default: ${URL_ENV})"
        ),
    )
    parser.add_argument("--experiment_id", "--experiment-id", required=True, help="experiment id")
    parser.add_argument("--metric", required=True, help="metric key, e.g. rmse or _m_rmse")
    order = parser.add_mutually_exclusive_group()
    order.add_argument(
        "--ascending",
        dest="ascending",
        action="store_true",
        default=True,
        help="the lowest value wins (default)",
    )
    order.add_argument(
        "--descending", dest="ascending", action="store_false", help="the highest value wins"
    )
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="logging level on stderr (default: WARNING)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``main_sql``; return the exit code.

    Example:
        >>> main(["--connection", "sqlite:////srv/mlflow.db", "--experiment_id", "1",
        ...       "--metric", "rmse", "--descending"])
        ('5f0c…', 0.93)
        0
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.connection:
        parser.error(f"--connection is required (or set {URL_ENV})")
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    try:
        best = get_best_run(args.connection, args.experiment_id, args.metric, args.ascending)
    except MlflowFunError as e:
        sys.stderr.write(f"{PROG}: error: {e}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130
    sys.stdout.write(f"{best!r}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
