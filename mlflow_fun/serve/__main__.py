"""``python -m mlflow_fun.serve``: the same as ``mlflow-fun serve``."""

import sys

from mlflow_fun.cli.main import serve_main  # the entry point sits above the package it runs

sys.exit(serve_main())
