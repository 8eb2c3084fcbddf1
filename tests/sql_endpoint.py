"""Test helpers for the SQL endpoint: run the job, start ``serve``, query it with Beeline.

Beeline is the Hive JDBC client shipped in pyspark's jars, so the queries go through a real
HiveServer2 client. ``python -m tests.sql_endpoint <build flags>`` runs ``mlflow-fun build``
and then `create_analyst_views` in the same process (the embedded Derby metastore allows
one process at a time).
"""

from __future__ import annotations

import csv
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow_fun.session import LOCAL_JVM_OPTIONS

REPO = Path(__file__).resolve().parent.parent
READY = "SQL endpoint ready: "
BEELINE_TIMEOUT = 180.0
PROMPT = re.compile(r"\d+: jdbc:hive2://")  # Beeline's prompt, before each statement it echoes


def _pyspark_jars() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent / "jars"


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    return str(Path(home) / "bin" / "java") if home else "java"


def beeline(port: int, query: str, database: str = "mlflow_metrics") -> list[list[str]]:
    """Run one query through Beeline; see `beeline_all`."""
    return beeline_all(port, [query], database)[0]


def beeline_all(
    port: int, queries: Sequence[str], database: str = "mlflow_metrics"
) -> list[list[list[str]]]:
    """Run ``queries`` in one Beeline session on ``jdbc:hive2://127.0.0.1:<port>/<database>``.

    Returns:
        Per query, the CSV rows Beeline prints (``--outputformat=csv2``): the header, then
        the rows. NULL is ``NULL``; doubles and timestamps are in Java's text form.
    """
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
        script.writelines(query.rstrip().rstrip(";") + ";\n" for query in queries)
    try:
        result = subprocess.run(
            [*_beeline_command(port, database), "-f", script.name],
            capture_output=True,
            encoding="utf-8",
            timeout=BEELINE_TIMEOUT,
            check=False,
        )
    finally:
        os.unlink(script.name)
    results: list[list[list[str]]] = []  # each result set follows an empty line
    for line in result.stdout.splitlines():
        if not line.strip():
            results.append([])
        elif results:
            results[-1].extend(_csv2([line]))
    results = [rows for rows in results if rows]
    if result.returncode != 0 or len(results) != len(queries):
        raise AssertionError(
            f"beeline failed (exit {result.returncode}, {len(results)} of {len(queries)} "
            f"results) on {list(queries)!r}: " + " | ".join(result.stderr.strip().splitlines()[-5:])
        )
    return results


def _csv2(lines: Sequence[str]) -> list[list[str]]:
    """Rows of Beeline's ``csv2`` output lines, which quote with NUL when a value needs it."""
    return [row for line in lines for row in csv.reader([line], quotechar="\0")]


def _beeline_command(port: int, database: str) -> list[str]:
    return [
        # C1 alone and the serial collector, as the jobs' JVMs: a short client (CPU halved).
        _java(), "-Xmx256m", *LOCAL_JVM_OPTIONS.split(), "-Dfile.encoding=UTF-8",
        "-cp", f"{_pyspark_jars()}/*",
        "org.apache.hive.beeline.BeeLine", "-u", f"jdbc:hive2://127.0.0.1:{port}/{database}",
        "--outputformat=csv2", "--silent=true",
    ]  # fmt: skip


@contextmanager
def beeline_session(port: int, database: str = "mlflow_metrics") -> Iterator[Any]:
    """One Beeline process and connection for many queries, asked one at a time (as a BI
    tool keeps its connection): yields ``ask(query) -> rows`` (as `beeline`).

    Each query is followed by a marker query, whose answer ends the query's output.
    """
    process = subprocess.Popen(
        _beeline_command(port, database),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        encoding="utf-8",
    )
    assert process.stdin is not None and process.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(
        target=lambda: [lines.put(line) for line in process.stdout], daemon=True
    )
    reader.start()
    asked = 0

    def ask(query: str) -> list[list[str]]:
        nonlocal asked
        asked += 1
        marker = f"end-of-query-{asked}"
        process.stdin.write(f"{query.rstrip().rstrip(';')};\nselect '{marker}' as marker;\n")
        process.stdin.flush()
        output: list[str] = []
        while not output or output[-1] != marker:
            try:
                output.append(lines.get(timeout=BEELINE_TIMEOUT).rstrip("\n"))
            except queue.Empty:
                raise AssertionError(f"beeline gave no answer to {query!r}: {output}") from None
        # Beeline echoes each statement after its prompt: the answer lies between the
        # query's echo and the marker's.
        echoes = [i for i, line in enumerate(output) if PROMPT.match(line)]
        answer = output[echoes[0] + 1 : echoes[1]] if len(echoes) >= 2 else []
        if not answer:
            raise AssertionError(f"beeline gave no rows for {query!r}: {output}")
        return _csv2(answer)

    try:
        yield ask
    finally:
        process.stdin.close()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Served:
    """A running ``python -m mlflow_fun.serve`` process and where its output goes."""

    process: subprocess.Popen[bytes]
    port: int
    stdout: Path
    stderr: Path

    def output(self) -> str:
        """Everything the process printed so far (stdout, then stderr)."""
        return self.stdout.read_text(errors="replace") + self.stderr.read_text(errors="replace")

    def wait_ready(self, timeout: float = 240.0) -> str:
        """Wait for the ready line; return the JDBC URL it names."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.stdout.read_text(errors="replace").splitlines():
                if line.startswith(READY):
                    return line[len(READY) :].strip()
            if self.process.poll() is not None:
                raise AssertionError(f"serve exited ({self.process.returncode}): {self.output()}")
            time.sleep(0.5)
        raise AssertionError(f"serve not ready after {timeout:.0f} s: {self.output()}")

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM the serve process (its PID only); return its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)


@contextmanager
def serving(
    args: Sequence[str], port: int, workdir: Path, env: Mapping[str, str] | None = None
) -> Iterator[Served]:
    """Start the endpoint with ``args`` (not waiting for it); kill its process group at exit."""
    stdout, stderr = workdir / "serve.out", workdir / "serve.err"
    # No class archive: the suite starts two endpoints, each on its own kind of metastore,
    # so each would write one (about 20 CPU-seconds) that no later JVM maps. The archives
    # are tested with the jobs (test_class_archive.py).
    env = {"MLFLOW_FUN_CLASS_ARCHIVE": "off", **(env if env is not None else os.environ)}
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlflow_fun.serve", "--port", str(port), *args],
            stdout=out,
            stderr=err,
            cwd=REPO,
            env=env,
            start_new_session=True,
        )
    try:
        yield Served(process, port, stdout, stderr)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                process.wait(timeout=60)
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def build_command(*build_args: str) -> list[str]:
    """The command that builds tables and then the analyst views, in one process."""
    return [sys.executable, "-m", "tests.sql_endpoint", *build_args]


def build_in_process(arguments: Sequence[str]) -> tuple[int, str]:
    """``mlflow-fun build`` with ``arguments`` in this process: (exit code, database)."""
    from mlflow_fun.cli.build import config_from_args, parse_build_args
    from mlflow_fun.cli.main import main as cli_main

    code = cli_main(["--log-level", "INFO", "build", "--no-progress", *arguments])
    return code, config_from_args(parse_build_args(arguments)).database


def main(argv: Sequence[str] | None = None) -> int:
    """``mlflow-fun build`` with ``argv``, then `create_analyst_views` on its database."""
    from pyspark.sql import SparkSession

    from mlflow_fun.load.views import create_analyst_views

    code, database = build_in_process(list(sys.argv[1:] if argv is None else argv))
    if code != 0:
        return code
    create_analyst_views(SparkSession.builder.getOrCreate(), database)
    print(f"analyst views created in {database}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
