"""A Spark standalone cluster on loopback, from the installed PySpark's own ``bin/spark-class``.

One Master and N Workers (one core each), each its own JVM and process group, stopped
together. The same commands run one by hand (docs/cluster.md, "A standalone cluster").

Example:
    >>> with StandaloneCluster(tmp_path, spark_home, workers=2) as cluster:
    ...     cluster.master_url        # spark://127.0.0.1:PORT
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import requests

from mlflow_fun.extract.local_server import free_port
from mlflow_fun.session import LOCAL_JVM_OPTIONS


class StandaloneCluster:
    """Start a Master and ``workers`` Workers under ``root``; stop them on exit."""

    def __init__(self, root: Path, spark_home: Path, *, workers: int = 2) -> None:
        self.root = root
        self.spark_home = spark_home
        self.workers = workers
        self.port, self.ui_port = free_port(), free_port()
        self._processes: list[subprocess.Popen[bytes]] = []

    @property
    def master_url(self) -> str:
        return f"spark://127.0.0.1:{self.port}"

    def worker_dir(self, i: int) -> Path:
        """Where worker ``i`` keeps each executor it launched (``<app>/<executor id>/``)."""
        return self.root / f"worker-{i}"

    def state(self) -> dict[str, Any]:
        """The Master's own JSON view: workers, applications."""
        return dict(requests.get(f"http://127.0.0.1:{self.ui_port}/json/", timeout=5).json())

    def __enter__(self) -> StandaloneCluster:
        self.root.mkdir(parents=True, exist_ok=True)
        env = dict(
            os.environ,
            SPARK_HOME=str(self.spark_home),
            SPARK_LOCAL_IP="127.0.0.1",
            SPARK_DAEMON_MEMORY="256m",
            # C1 alone and the serial collector, as the jobs' JVMs: the daemons are short-lived
            # here, and C2 compiling in them took CPU from the processes under test.
            SPARK_DAEMON_JAVA_OPTS=LOCAL_JVM_OPTIONS,
            SPARK_LOG_DIR=str(self.root / "logs"),
        )
        spark_class = str(self.spark_home / "bin" / "spark-class")
        self._start("master", env, [spark_class, "org.apache.spark.deploy.master.Master",
                    "--host", "127.0.0.1", "--port", str(self.port),
                    "--webui-port", str(self.ui_port)])  # fmt: skip
        self._wait(lambda: "workers" in self.state(), "the master")
        for i in range(self.workers):
            self.worker_dir(i).mkdir(parents=True)
            self._start(f"worker-{i}", env, [spark_class, "org.apache.spark.deploy.worker.Worker",
                        "--host", "127.0.0.1", "--cores", "1", "--memory", "1g",
                        "--webui-port", str(free_port()), "--work-dir", str(self.worker_dir(i)),
                        self.master_url])  # fmt: skip
        self._wait(lambda: self.state()["aliveworkers"] == self.workers, "the workers")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for process in reversed(self._processes):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self._processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def _start(self, name: str, env: dict[str, str], command: list[str]) -> None:
        log = open(self.root / f"{name}.log", "wb")  # noqa: SIM115 - owned by the child
        self._processes.append(
            subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                             start_new_session=True)
        )  # fmt: skip
        log.close()

    def _wait(self, ready: Any, what: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for process in self._processes:
                if process.poll() is not None:
                    logs = {p.name: p.read_text()[-2000:] for p in self.root.glob("*.log")}
                    raise RuntimeError(f"a cluster process exited: {json.dumps(logs)}")
            try:
                if ready():
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{what} did not come up within {timeout} s")
