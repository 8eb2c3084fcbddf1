"""``python -m mlflow_fun``: the ``mlflow-fun`` command."""

from mlflow_fun.cli import console_main

console_main()
