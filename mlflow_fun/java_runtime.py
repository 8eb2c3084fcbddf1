"""What Spark needs before a JVM starts: pyspark, delta-spark and a Java 17+.

`check_spark_runtime` fails in one line that says what to install, instead of a JVM's
stack trace or pyspark's "Java gateway process exited"; `java_executable` is the ``java``
Spark's launcher will start.

Example:
    >>> check_spark_runtime()  # None, or MissingRuntimeError("no Java found ...")
"""

from __future__ import annotations

import functools
import importlib
import os
import re
import shutil
import subprocess

from mlflow_fun.errors import MissingRuntimeError

# Spark 4 runs on Java 17 and newer.
MIN_JAVA = 17

_JAVA_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?')


@functools.lru_cache(maxsize=1)
def check_spark_runtime() -> None:
    """Fail in one line, before a JVM starts, when pyspark, delta-spark or Java 17+ is missing.

    Raises:
        MissingRuntimeError: What is missing and what to install.
    """
    for module, package in (("pyspark", "pyspark"), ("delta", "delta-spark")):
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise MissingRuntimeError(
                f"{package} is not installed ({e}): pip install 'mlflow-fun[spark]'"
            ) from e
    java = java_executable()
    if java is None:
        raise MissingRuntimeError(
            f"no Java found (neither $JAVA_HOME/bin/java nor java on PATH): Spark needs "
            f"Java {MIN_JAVA} or newer; install a JDK and set JAVA_HOME"
        )
    try:
        shown = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        raise MissingRuntimeError(f"cannot run {java} -version: {e}") from e
    output = shown.stderr + shown.stdout
    found = _JAVA_VERSION.search(output)
    if found is None:
        # What the JVM said, without its echo of JAVA_TOOL_OPTIONS: a refused option there
        # ("Unrecognized VM option ...") stops every JVM before it prints a version.
        lines = (line.strip() for line in output.splitlines())
        said = "; ".join(line for line in lines if line and not line.startswith("Picked up "))
        raise MissingRuntimeError(
            f"{java} -version printed no version ({said[:300] or 'nothing'}); is it a JDK, "
            "and are the options in JAVA_TOOL_OPTIONS or JDK_JAVA_OPTIONS right?"
        )
    major = int(found.group(1))
    if major == 1 and found.group(2):  # "1.8.0_392" is Java 8
        major = int(found.group(2))
    if major < MIN_JAVA:
        raise MissingRuntimeError(
            f"Java {major} at {java}: Spark needs Java {MIN_JAVA} or newer; "
            "set JAVA_HOME to a JDK 17+"
        )


def java_executable() -> str | None:
    """The ``java`` that Spark will start: ``$JAVA_HOME/bin/java``, else the one on PATH."""
    home = os.environ.get("JAVA_HOME")
    java = os.path.join(home, "bin", "java") if home else shutil.which("java")
    return os.path.realpath(java) if java and os.path.isfile(java) else None
