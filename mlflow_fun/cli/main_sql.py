"""Print the best run of an experiment, read straight from MLflow's database.

Example:
    $ python -m mlflow_fun.metrics.sql.main_sql \\
        --connection sqlite:////srv/mlflow/mlflow.db --experiment_id 1 --metric rmse
    ('5f0c…', 0.7223)

The URL may come from ``MLFLOW_FUN_DB_URL`` instead of ``--connection``, which keeps the
password off the command line. The same command as ``mlflow-fun best --source db``, its
flags and exit codes: 0 success, 1 an error (one line ``main_sql: error: …`` on stderr),
2 bad usage.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from mlflow_fun.cli.main import main as cli_main
from mlflow_fun.cli.options import deprecated

PROG = "main_sql"
# The seed's flags, now `best --order`.
_ORDER_FLAGS = {"--ascending": "asc", "--descending": "desc"}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``main_sql``: ``mlflow-fun best --source db``; return the exit code.

    ``--ascending``/``--descending`` still work, with a deprecation line: ``--order``.

    Example:
        >>> main(["--connection", "sqlite:////srv/mlflow.db", "--experiment_id", "1",
        ...       "--metric", "rmse", "--order", "desc"])
        ('5f0c…', 0.93)
        0
    """
    args = []
    for arg in sys.argv[1:] if argv is None else argv:
        if arg in _ORDER_FLAGS:
            deprecated(arg, f"--order {_ORDER_FLAGS[arg]}", prog=PROG)
            args += ["--order", _ORDER_FLAGS[arg]]
        else:
            args.append(arg)
    return cli_main(["best", "--source", "db", *args], prog_name=PROG)


if __name__ == "__main__":
    sys.exit(main())
