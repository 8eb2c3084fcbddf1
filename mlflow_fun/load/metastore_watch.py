"""Notice that the metastore stopped answering, and stop asking it.

Hive's metastore client tries every call again before it gives up
(``hive.hmshandler.retry.attempts`` tries, ``hive.hmshandler.retry.interval`` apart, each
waiting for a pooled connection; 10 tries 2 s apart by default). Against a metastore that
is down, every later call pays that again: a first build registers each new table, so a
build of 6 experiments whose metastore stopped after the first table took 128 s to fail,
about 20 s a table with 3 tries 1 s apart (the job of 20 experiments, 505 s).

A `MetastoreWatch` is shown the build's failures. Once one says that no connection to
the metastore could be made (`unreachable_cause`), the build starts no more tables (the
ones being written finish, as on SIGTERM), skips the later steps that need the metastore,
and raises `MetastoreUnreachableError`: one line, exit code 1.

Example:
    >>> watch = MetastoreWatch()
    >>> try:
    ...     spark.catalog.tableExists("mlflow_metrics.runs")
    ... except Exception as e:
    ...     if watch.saw(e):
    ...         raise watch.error("nothing written") from e
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

from mlflow_fun.errors import MetastoreUnreachableError, java_causes

logger = logging.getLogger(__name__)

# A Java exception under a metastore call that means "no connection": the network's, a
# connection pool's, a JDBC driver's, and a remote (Thrift) metastore's transport.
CONNECTION_ERRORS = frozenset(
    {
        "java.net.ConnectException",
        "java.net.NoRouteToHostException",
        "java.net.UnknownHostException",
        "java.net.SocketTimeoutException",
        "java.sql.SQLTransientConnectionException",  # HikariCP: "Connection is not available"
        "java.sql.SQLNonTransientConnectionException",
        "com.mysql.cj.jdbc.exceptions.CommunicationsException",
        "org.apache.thrift.transport.TTransportException",
    }
)
# Packages of the metastore's own classes: a connection error under one of them is the
# metastore's, not a storage's or a tracking server's.
METASTORE_PACKAGES = ("org.apache.hadoop.hive.", "javax.jdo.", "org.datanucleus.")


def unreachable_cause(error: BaseException) -> str | None:
    """``"<class>: <message>"`` of the deepest connection error under a metastore error in
    ``error``'s Java cause chain (a Spark error raised through Py4J); None where there is
    none, or where the JVM no longer answers.

    Example:
        >>> unreachable_cause(analysis_exception_of_a_stopped_postgres_metastore)
        'java.net.ConnectException: Connection refused'
    """
    metastore, connection = False, None
    try:
        for java in java_causes(error):
            name = str(java.getClass().getName())
            metastore = metastore or name.startswith(METASTORE_PACKAGES)
            if name in CONNECTION_ERRORS:  # the deepest one names the refusal
                message = str(java.getMessage() or "").strip()
                connection = f"{name}: {message.splitlines()[0]}" if message else name
    except Exception:  # the JVM is gone: nothing to tell
        return None
    return connection if metastore else None


class MetastoreWatch:
    """The first failure of one build that says the metastore cannot be reached (shared by
    the build's threads)."""

    def __init__(self) -> None:
        self._cause: str | None = None
        self._lock = threading.Lock()

    @property
    def lost(self) -> bool:
        """True once a failure said that the metastore cannot be reached."""
        return self._cause is not None

    def saw(self, error: BaseException) -> bool:
        """True if ``error`` says that the metastore cannot be reached; the first such
        failure is kept (and logged once) for `error`."""
        cause = unreachable_cause(error)
        if cause is None:
            return False
        with self._lock:
            if self._cause is None:
                self._cause = cause
                logger.error(
                    "metastore unreachable cause=%s: no more tables are started, and the "
                    "steps after the tables that need the metastore are skipped",
                    cause,
                )
        return True

    def wait(self, future: Future[Any]) -> None:
        """Wait for ``future``; a failure that says the metastore cannot be reached is kept
        (`error` says it), any other is raised."""
        try:
            future.result()
        except Exception as e:
            if not self.saw(e):
                raise

    @contextlib.contextmanager
    def raising(self, done: str) -> Iterator[None]:
        """Turn a failure inside that says the metastore cannot be reached into `error`."""
        try:
            yield
        except Exception as e:
            if self.saw(e):
                raise self.error(done) from e
            raise

    def error(self, done: str) -> MetastoreUnreachableError:
        """The error a build raises once the metastore was lost; ``done`` says what it
        wrote (e.g. ``"nothing written"``)."""
        return MetastoreUnreachableError(
            f"the metastore did not answer ({self._cause}); {done}. Start the metastore (or "
            "fix its address in the Spark settings) and run the job again: each table is "
            "as before or written whole, and the next run pulls again what this one did "
            "not record"
        )
