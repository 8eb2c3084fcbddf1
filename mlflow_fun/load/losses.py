"""Notice that the metastore or the run source stopped answering, and stop asking it.

Hive's metastore client tries every call again before it gives up
(``hive.hmshandler.retry.attempts`` tries, ``hive.hmshandler.retry.interval`` apart, each
waiting for a pooled connection; 10 tries 2 s apart by default). Against a metastore that
is down, every later call pays that again: a first build registers each new table, so a
build of 6 experiments whose metastore stopped after the first table took 128 s to fail,
about 20 s a table with 3 tries 1 s apart (the job of 20 experiments, 505 s). The same
holds for the tracking server: each experiment still to pull waited through the HTTP
client's retries (a job of 20 experiments whose server stopped after the first table
took 157 s to fail).

A `LossWatch` is shown the build's failures. Once one says that no connection to the
metastore could be made (`unreachable_cause`), or that the source cannot be reached after
its own retries (`source_gone`), the build starts no more tables (the ones being written
finish, as on SIGTERM) and raises `LossWatch.error`: one line, exit code 1. A lost
metastore also skips the later steps that need it; with the source lost, the tables
written still get their rows of ``runs``, their states and status rows.

Example:
    >>> watch = LossWatch()
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

from mlflow_fun.errors import (
    DatabaseUnavailableError,
    MetastoreUnreachableError,
    MlflowFunError,
    ServerUnreachableError,
    java_causes,
)
from mlflow_fun.extract.http_failures import no_connection

logger = logging.getLogger(__name__)

THRIFT = "org.apache.thrift.transport.TTransportException"  # a remote metastore's transport
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
        THRIFT,
    }
)
# Packages of the metastore's own classes (its server, its object store): a connection
# error below one of them is the metastore's. Not Hive's query layer (`hive.ql`), which
# wraps a storage's errors too.
METASTORE_PACKAGES = ("org.apache.hadoop.hive.metastore.", "javax.jdo.", "org.datanucleus.")


def unreachable_cause(error: BaseException) -> str | None:
    """``"<class>: <message>"`` of the deepest connection error below one of the
    metastore's classes (or a Thrift transport's error: only the metastore's client speaks
    Thrift in the driver) in ``error``'s Java cause chain (a Spark error raised through
    Py4J); None where there is none, or where the JVM no longer answers.

    Example:
        >>> unreachable_cause(analysis_exception_of_a_stopped_postgres_metastore)
        'java.net.ConnectException: Connection refused'
    """
    metastore, connection = False, None
    try:
        for java in java_causes(error):
            name = str(java.getClass().getName())
            metastore = metastore or name.startswith(METASTORE_PACKAGES) or name == THRIFT
            if metastore and name in CONNECTION_ERRORS:  # the deepest names the refusal
                message = str(java.getMessage() or "").strip()
                connection = f"{name}: {message.splitlines()[0]}" if message else name
    except Exception:  # the JVM is gone: nothing to tell
        return None
    return connection


def source_gone(error: BaseException) -> bool:
    """True if ``error`` says that the run source cannot be reached after its own retries:
    the tracking server (REST) refused the connection or its host is unknown, or MLflow's
    database (``--source db``) took no connection; not an answer dropped or late, which
    one experiment's size may cause. (MLflow's client, the source of other tracking URIs,
    says neither: its failures stay each experiment's.)"""
    if isinstance(error, ServerUnreachableError):
        return no_connection(error.__cause__)
    return isinstance(error, DatabaseUnavailableError) and error.no_connection


class LossWatch:
    """The first failure of one build that says the metastore, or the source, cannot be
    reached (shared by the build's threads)."""

    def __init__(self) -> None:
        self._metastore: str | None = None  # the connection error's line
        self._source: MlflowFunError | None = None
        self._lock = threading.Lock()

    @property
    def lost(self) -> bool:
        """True once a failure said that the metastore or the source cannot be reached."""
        return self._metastore is not None or self._source is not None

    @property
    def metastore_lost(self) -> bool:
        """True once a failure said that the metastore cannot be reached."""
        return self._metastore is not None

    def saw(self, error: BaseException) -> bool:
        """True if ``error`` says that the metastore or the source cannot be reached; the
        first such failure is kept (and logged once) for `error`."""
        cause = unreachable_cause(error)
        gone = cause is None and source_gone(error)
        if cause is None and not gone:
            return False
        with self._lock:  # each kind kept once: a lost metastore also skips steps
            if cause is not None and self._metastore is None:
                self._metastore = cause
                logger.error(
                    "metastore unreachable cause=%s: no more tables are started, and the "
                    "steps after the tables that need the metastore are skipped",
                    cause,
                )
            elif gone and self._source is None:
                assert isinstance(error, MlflowFunError)
                self._source = error
                logger.error("source unreachable: no more tables are started")
        return True

    @contextlib.contextmanager
    def keeping(self) -> Iterator[None]:
        """Keep a failure inside that says the metastore or the source cannot be reached
        (`error` says it, once, at the end of the build); raise any other."""
        try:
            yield
        except Exception as e:
            if not self.saw(e):
                raise

    @contextlib.contextmanager
    def raising(self, done: str) -> Iterator[None]:
        """Turn a failure inside that says the metastore or the source cannot be reached
        into `error`."""
        try:
            yield
        except Exception as e:
            if self.saw(e):
                raise self.error(done) from e
            raise

    def error(self, done: str) -> MlflowFunError:
        """The error a build raises once the metastore or the source was lost (the
        metastore's if both); ``done`` says what it wrote (e.g. ``"nothing written"``)."""
        if self._source is not None and self._metastore is None:
            message = (
                f"{self._source}; {done}. Run the job again once it answers: each table is "
                "as before or written whole"
            )
            if isinstance(self._source, ServerUnreachableError):
                return ServerUnreachableError(message, endpoint=self._source.endpoint)
            return DatabaseUnavailableError(message, no_connection=True)
        return MetastoreUnreachableError(
            f"the metastore did not answer ({self._metastore}); {done}. Start the metastore "
            "(or fix its address in the Spark settings) and run the job again: each table "
            "is as before or written whole, and the next run pulls again what this one did "
            "not record"
        )
