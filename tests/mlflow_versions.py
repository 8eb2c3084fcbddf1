"""Other MLflow versions, each in its own venv, created by the tests and kept between runs.

The venvs live under ``~/.cache/mlflow-fun/venvs/mlflow-<version>`` (or
``$MLFLOW_FUN_TEST_VENVS``); a file lock keeps two test processes from building one at
once, and a ``.ready`` file marks a finished install, so an interrupted one is redone.
uv installs them: 11-13 s each on a new machine, their bytecode included, where pip took
40-60 s.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

# MLflow versions users run besides the pinned one: the last 2.x and the newest 3.x
# on PyPI on the day this was written (the pinned version is the suite's own venv). Each
# is a list of installs, run in order.
OTHER_VERSIONS = {
    # 2.22 imports a pool class that SQLAlchemy 2.1 removed.
    "2.22.5": [["mlflow==2.22.5", "scikit-learn<1.7", "SQLAlchemy<2.1"]],
    # mlflow 3.18.0 pins mlflow-tracing 3.18.0, which the package index this machine
    # reaches does not serve (its newest is 3.17.2): the 3.17.2 tree, then mlflow and
    # mlflow-skinny 3.18.0 over it. Server and client run 3.18.0's code; only the GenAI
    # tracing package stays 3.17.2 (MLflow warns about the mismatch on import).
    "3.18.0": [
        ["mlflow==3.17.2", "scikit-learn", "python-multipart"],
        ["--no-deps", "mlflow-skinny==3.18.0", "mlflow==3.18.0"],
    ],
}


def venv_root() -> Path:
    """Where the versions' venvs are kept."""
    default = Path.home() / ".cache" / "mlflow-fun" / "venvs"
    return Path(os.environ.get("MLFLOW_FUN_TEST_VENVS") or default)


def mlflow_python(version: str) -> Path:
    """The Python of a venv holding MLflow ``version`` and scikit-learn; made if missing.

    Raises:
        subprocess.CalledProcessError: the version could not be installed (the
            installer's output is in ``<venv>/install.log``).
    """
    venv = venv_root() / f"mlflow-{version}"
    python = venv / "bin" / "python"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"mlflow-{version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (venv / ".ready").exists():
            return python
        shutil.rmtree(venv, ignore_errors=True)
        # uv, which `make install` puts beside the suite's Python; pip where it is missing.
        # Both write the bytecode (uv when asked): these venvs' processes import MLflow
        # and scikit-learn again and again, where PYTHONDONTWRITEBYTECODE may be set.
        uv = Path(sys.executable).parent / "uv"
        if uv.exists():
            venv_flags = ["--without-pip"]
            install = [str(uv), "pip", "install", "--quiet", "--compile-bytecode",
                       "--python", str(python)]  # fmt: skip
        else:
            venv_flags, install = [], [str(python), "-m", "pip", "install", "--quiet"]
        subprocess.run([sys.executable, "-m", "venv", *venv_flags, str(venv)], check=True)
        with open(venv / "install.log", "wb") as log:
            for packages in OTHER_VERSIONS[version]:
                subprocess.run(
                    [*install, *packages],
                    check=True,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
        (venv / ".ready").write_text(version)
    return python
