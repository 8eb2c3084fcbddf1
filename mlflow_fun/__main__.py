"""``python -m mlflow_fun``: the ``mlflow-fun`` command."""

import sys

from mlflow_fun.cli import main

sys.exit(main())
