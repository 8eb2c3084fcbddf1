"""The job's lock: two runs of the job at once (an overlapping cron or a second user)
would pull twice and race on the state table; the second one stops at once instead.

An advisory ``flock`` on a file: the kernel drops it when the holding process ends, however
it ends (even ``kill -9``), so a lock is never left stale. It protects one host (or a
shared file system with working ``flock``); on a cluster, let the scheduler run one job at
a time (Airflow ``max_active_runs=1``). Delta's optimistic concurrency still rejects a
conflicting commit, so even without the lock no table can be corrupted.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import tempfile
from types import TracebackType

from mlflow_fun.errors import JobLockedError

LOCK_NAME = ".mlflow-fun.lock"
LOCK_DIR_ENV = "MLFLOW_FUN_LOCK_DIR"


def default_lock_path(data_dir: str | None, database: str) -> str:
    """``<data_dir>/.mlflow-fun.lock``, else one per database in ``$MLFLOW_FUN_LOCK_DIR``
    (by default the temp folder)."""
    if data_dir is not None:
        return os.path.join(data_dir, LOCK_NAME)
    folder = os.environ.get(LOCK_DIR_ENV) or tempfile.gettempdir()
    return os.path.join(folder, f"mlflow-fun-{database}.lock")


class JobLock:
    """Hold the lock at ``path`` for the life of a ``with`` block.

    Example:
        >>> with JobLock("/data/mlflow_fun/.mlflow-fun.lock"):
        ...     run_the_job()

    Raises:
        JobLockedError: Another process holds it; the message names its pid and start.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    def __enter__(self) -> JobLock:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
            os.close(fd)
            raise JobLockedError(
                f"another mlflow-fun job holds the lock {self.path} ({holder}); wait for it "
                "to finish, or give this run its own --lock_file if it writes elsewhere"
            ) from None
        started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} since {started}\n".encode(), 0)
        except OSError as e:  # a full volume: say which file, hold nothing
            os.close(fd)
            raise OSError(e.errno, e.strerror, self.path) from e
        self._fd = fd
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
