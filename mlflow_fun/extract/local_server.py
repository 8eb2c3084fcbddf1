"""A local ``mlflow server`` on a free loopback port, for the demo, tests and benchmarks.

The server keeps a sqlite store and artifacts under ``root``, runs one uvicorn worker
and no job runner (MLflow 3 otherwise starts 4 workers and 7 job consumers, ~3 GB), and
is stopped with its workers as one process group. A pid file under ``root`` lets the
next start stop a server left behind by a crash.

Example:
    >>> with LocalMlflowServer("/tmp/demo") as server:
    ...     MlflowClient(server.url).search_experiments()
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import requests

from mlflow_fun.errors import MlflowFunError

logger = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class LocalMlflowServer:
    """Start and stop ``mlflow server`` with a sqlite store under ``root``.

    Args:
        root: Folder for ``mlflow.db``, ``artifacts/``, ``server.log`` and ``server.pid``.
        host: Loopback address to bind.
        port: Port; None picks a free one.
        workers: uvicorn workers.
        backend_store_uri: Store; defaults to ``sqlite:///<root>/mlflow.db``.
        python: The interpreter whose MLflow serves (another version's venv); defaults
            to this one.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        workers: int = 1,
        backend_store_uri: str | None = None,
        python: str | os.PathLike[str] | None = None,
    ) -> None:
        self.root = Path(root).resolve()
        self.host = host
        self.port = port
        self.workers = workers
        self.backend_store_uri = backend_store_uri or f"sqlite:///{self.root / 'mlflow.db'}"
        self.python = os.fspath(python) if python is not None else sys.executable
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` of the running server."""
        if self.port is None:
            raise MlflowFunError("the server has not been started")
        return f"http://{self.host}:{self.port}"

    @property
    def pid_file(self) -> Path:
        """Where the server's process-group id is kept while it runs."""
        return self.root / "server.pid"

    def start(self, timeout: float = 120.0) -> str:
        """Start the server and wait for ``/health``; return its URL.

        Raises:
            MlflowFunError: The server exited or did not answer within ``timeout``.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        self.stop_stale()
        if self.port is None:
            self.port = free_port(self.host)
        env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
        command = [
            self.python,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            self.backend_store_uri,
            "--default-artifact-root",
            str(self.root / "artifacts"),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
        ]
        log = open(self.root / "server.log", "ab")  # noqa: SIM115 - owned by the child
        self._process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        log.close()
        self.pid_file.write_text(str(self._process.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise MlflowFunError(
                    f"mlflow server exited with code {self._process.returncode}; "
                    f"see {self.root / 'server.log'}"
                )
            try:
                if requests.get(f"{self.url}/health", timeout=2).status_code == 200:
                    logger.info("mlflow server up url=%s pid=%d", self.url, self._process.pid)
                    return self.url
            except requests.RequestException:
                pass
            time.sleep(0.25)
        self.stop()
        raise MlflowFunError(f"mlflow server did not answer at {self.url} within {timeout}s")

    def stop(self) -> None:
        """Stop the server and its workers (the whole process group)."""
        if self._process is not None:
            stop_group(self._process.pid, self._process)
            self._process.wait()
            self._process = None
        self.pid_file.unlink(missing_ok=True)

    def stop_stale(self) -> None:
        """Stop a server that an earlier start under ``root`` left running."""
        try:
            pid = int(self.pid_file.read_text())
        except (FileNotFoundError, ValueError):
            return
        if _is_our_server(pid, self.root):
            logger.warning("stopping a stale mlflow server pid=%d", pid)
            stop_group(pid)
        self.pid_file.unlink(missing_ok=True)

    def __enter__(self) -> LocalMlflowServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _is_our_server(pid: int, root: Path) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return "mlflow" in cmdline and str(root) in cmdline


def stop_group(pid: int, child: subprocess.Popen[bytes] | None = None, grace: float = 10.0) -> None:
    """SIGTERM process group ``pid``, wait up to ``grace`` seconds, then SIGKILL what is left.

    ``mlflow server`` leads its group and only waits for its workers (uvicorn or gunicorn,
    which shut down on SIGTERM); once they have exited, the leader spends about a second of
    CPU tearing down its interpreter (collecting the garbage of MLflow's modules). So once
    every other member of the group has exited, the leader is killed, not waited for: it
    has nothing left to write; and once no member is alive, the stop is over (a worker the
    leader had not reaped is left to init). A leader that runs alone is waited for.
    """
    workers = group_members(pid) - {pid}
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if child is not None:
            child.poll()  # reap the leader, or it lingers as a zombie in the group
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        if workers:
            live = group_members(pid)
            if not live:  # zombies only: init reaps the workers (here seconds later)
                if child is not None:
                    child.wait()  # the leader: dead, so at once
                return
            if live == {pid}:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return


def group_members(group: int) -> set[int]:
    """The live (not zombie) processes of process group ``group``; empty where there is
    no ``/proc``."""
    return {
        pid for pid, _, fields in process_stats() if int(fields[2]) == group and fields[0] != "Z"
    }


def process_stats() -> Iterator[tuple[int, str, list[str]]]:
    """Each process's pid, command name and the fields of ``/proc/<pid>/stat`` after the
    name (state, parent, process group, ... utime, stime); nothing where there is no
    ``/proc``.

    Example:
        >>> {pid: fields[1] for pid, name, fields in process_stats() if name == "java"}
    """
    for entry in os.scandir("/proc") if os.path.isdir("/proc") else ():
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue  # exited while listed
        # pid (name) state ...: the name may hold spaces and ")", so split at the last one.
        name, fields = stat[stat.find("(") + 1 : stat.rfind(")")], stat[stat.rfind(")") + 2 :]
        yield int(entry.name), name, fields.split()
