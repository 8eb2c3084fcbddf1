"""The command line: ``mlflow-fun`` and its commands, thin over the library."""

from mlflow_fun.cli.main import main

__all__ = ["main"]
