"""The command line: ``mlflow-fun`` and its commands, thin over the library."""

from __future__ import annotations

import atexit
import os
import sys

from mlflow_fun.cli.main import main

__all__ = ["console_main", "main"]


def console_main() -> None:
    """The ``mlflow-fun`` script and ``python -m mlflow_fun``: run, then exit with the code.

    After a JVM-free answer (delta-rs), native threads of ``deltalake``/``pyarrow`` may
    still run when the interpreter tears down, and that teardown sometimes aborts the
    process (SIGABRT, "terminate called without an active exception":
    delta-io/delta-rs#2184) after the right answer was printed. Then the process ends as
    Python would end it, minus the native teardown: output flushed, Python's exit handlers
    run, the command's exit code kept.
    """
    code = main()
    if "deltalake" not in sys.modules:
        sys.exit(code)
    sys.stdout.flush()
    sys.stderr.flush()
    atexit._run_exitfuncs()
    os._exit(code)
