"""Before start-up: no Java, an old Java, no pyspark, nowhere to read: one line, no JVM."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(sys.executable).parent / "mlflow-fun"


def _sql(tmp_path: Path, env: dict[str, str], *python: str) -> subprocess.CompletedProcess[str]:
    command = [*python] if python else [str(SCRIPT)]
    (tmp_path / "data").mkdir(exist_ok=True)
    return subprocess.run(
        [*command, "sql", "--data_dir", str(tmp_path / "data"), "select 1"],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )  # fmt: skip


def _only_line(result: subprocess.CompletedProcess[str]) -> str:
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def _env(**changes: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env.update(changes)
    return env


def test_no_java(tmp_path: Path) -> None:
    line = _only_line(_sql(tmp_path, _env(PATH=str(tmp_path))))
    assert line == (
        "mlflow-fun: error: no Java found (neither $JAVA_HOME/bin/java nor java on PATH): "
        "Spark needs Java 17 or newer; install a JDK and set JAVA_HOME"
    )
    assert sorted(os.listdir(tmp_path)) == ["data"]
    assert sorted(os.listdir(tmp_path / "data")) == []  # no metastore, no derby.log


def test_java_older_than_17(tmp_path: Path) -> None:
    java = tmp_path / "jdk11" / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text("#!/bin/sh\necho 'openjdk version \"11.0.21\" 2023-10-17' >&2\n")
    java.chmod(0o755)
    line = _only_line(_sql(tmp_path, _env(JAVA_HOME=str(java.parent.parent))))
    assert line == (
        f"mlflow-fun: error: Java 11 at {java}: Spark needs Java 17 or newer; "
        "set JAVA_HOME to a JDK 17+"
    )


def test_a_jvm_option_java_refuses(tmp_path: Path) -> None:
    line = _only_line(_sql(tmp_path, _env(JAVA_TOOL_OPTIONS="-XX:+NoSuchOption")))
    assert line.startswith("mlflow-fun: error: "), line
    assert line.endswith(
        " -version printed no version (Unrecognized VM option 'NoSuchOption'; Error: Could "
        "not create the Java Virtual Machine.; Error: A fatal exception has occurred. "
        "Program will exit.); is it a JDK, and are the options in JAVA_TOOL_OPTIONS or "
        "JDK_JAVA_OPTIONS right?"
    ), line
    assert sorted(os.listdir(tmp_path / "data")) == []  # no JVM started


def test_no_pyspark(tmp_path: Path) -> None:
    # This interpreter with pyspark made unimportable, as in an install without [spark].
    blocked = (
        "import sys\n"
        "class Blocker:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'pyspark' or name.startswith('pyspark.'):\n"
        "            raise ModuleNotFoundError(f\"No module named '{name}'\")\n"
        "sys.meta_path.insert(0, Blocker())\n"
        "from mlflow_fun.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    line = _only_line(_sql(tmp_path, _env(), sys.executable, "-c", blocked))
    assert line == (
        "mlflow-fun: error: pyspark is not installed (No module named 'pyspark'): "
        "pip install 'mlflow-fun[spark]'"
    )


def test_no_data_dir_and_no_metastore_creates_nothing(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(SCRIPT), "sql", "show tables"], capture_output=True, text=True, timeout=120,
        cwd=tmp_path,
    )  # fmt: skip
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "mlflow-fun: error: no tables to read: give --data_dir (as given to `mlflow-fun "
        "build`) or --conf with the job's metastore settings (e.g. "
        "conf/metastore-postgres.yaml)\n"
    )
    assert os.listdir(tmp_path) == []
