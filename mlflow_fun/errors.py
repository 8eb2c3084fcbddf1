"""The project's exceptions: one base class, one child per kind of failure.

Every message says what was wrong and, where it helps, what to do. No message ever
carries a token, a password or an Authorization header.
"""

from __future__ import annotations

from typing import Any

MAX_CAUSES = 64  # a Java cause chain is short; this only bounds a cycle


class MlflowFunError(Exception):
    """Base class of every error raised by mlflow-fun."""


class ConfigError(MlflowFunError):
    """A configuration value or command-line argument is invalid."""


class InvalidIdentifierError(MlflowFunError):
    """A name that would reach SQL (database, table, column) is not a safe identifier."""


class TrackingServerError(MlflowFunError):
    """The tracking server answered with an error or could not be used.

    Attributes:
        endpoint: The REST endpoint called, e.g. ``runs/search``.
        status: The HTTP status code, or None when no response arrived.
        server_message: The server's own message, when it sent one.
        error_code: MLflow's error code, e.g. ``RESOURCE_DOES_NOT_EXIST``.
    """

    def __init__(
        self,
        message: str,
        *,
        endpoint: str | None = None,
        status: int | None = None,
        server_message: str | None = None,
        error_code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.endpoint = endpoint
        self.status = status
        self.server_message = server_message
        self.error_code = error_code


class ServerUnreachableError(TrackingServerError):
    """No answer from the tracking server: refused, reset, or timed out."""


class AuthenticationError(TrackingServerError):
    """The tracking server refused the credentials (HTTP 401 or 403)."""


class MalformedResponseError(TrackingServerError):
    """The tracking server answered with something that is not the expected JSON."""


class ExperimentNotFoundError(MlflowFunError):
    """The experiment id or name does not exist on the tracking server."""


class MetricNotFoundError(MlflowFunError):
    """No run of the experiment has the requested metric."""


class TableWriteError(MlflowFunError):
    """Writing a table failed; the previous version of the table is unchanged."""


class JobFailedError(MlflowFunError):
    """The batch job finished, but one or more experiments failed.

    Attributes:
        failed: experiment id -> error message, for every failed experiment.
    """

    def __init__(self, failed: dict[str, str]) -> None:
        names = ", ".join(sorted(failed))
        super().__init__(f"{len(failed)} experiment(s) failed: {names}")
        self.failed = dict(failed)


class JobLockedError(MlflowFunError):
    """Another run of the job holds the lock; nothing was done."""


class JobStoppedError(MlflowFunError):
    """The job was asked to stop (SIGTERM) and stopped between experiments.

    Attributes:
        result: What was built before it stopped.
    """

    def __init__(self, message: str, result: object) -> None:
        super().__init__(message)
        self.result = result


class UsageError(MlflowFunError):
    """The command cannot start: bad input or a missing runtime, found before any work (exit 2)."""


class MissingRuntimeError(UsageError):
    """A package or Java that the command needs is missing or too old (exit code 2)."""


class QueryError(MlflowFunError):
    """A SQL query or a table it names is wrong (Spark's message, first line)."""


class SchemaMismatchError(MlflowFunError):
    """The database is not MLflow's tracking store of the schema the installed MLflow knows."""


class MetastoreUnreachableError(MlflowFunError):
    """No connection to the metastore could be made (after its client's own retries): the
    build stopped starting tables and skipped the steps that need the metastore."""


class DatabaseError(MlflowFunError):
    """MLflow's database could not be reached or a query on it failed (no password shown)."""


class DatabaseUnavailableError(DatabaseError):
    """The database went away or is not back yet (a restart, a dropped connection): a read
    may be tried again.

    Attributes:
        no_connection: No connection could be made (refused, not accepting yet), as
            opposed to one dropped or timed out mid-read.
    """

    def __init__(self, message: str, *, no_connection: bool = False) -> None:
        super().__init__(message)
        self.no_connection = no_connection


def one_line(error: BaseException) -> str:
    """The first line of ``error``'s message; a foreign error is prefixed with its type.

    Example:
        >>> one_line(ValueError("bad\\nmore"))
        'ValueError: bad'
    """
    text = str(error).strip() or type(error).__name__
    first = text.splitlines()[0]
    return first if isinstance(error, MlflowFunError) else f"{type(error).__name__}: {first}"


def java_causes(error: BaseException) -> list[Any]:
    """The Java exception behind a Spark error raised through Py4J (``java_exception``,
    or pyspark's ``_origin``), then its causes, the deepest last; empty for any other
    error or where the JVM no longer answers.

    Example:
        >>> java_causes(spark_error)[-1].toString()
        'java.net.ConnectException: Connection refused'
    """
    java: Any = getattr(error, "java_exception", None) or getattr(error, "_origin", None)
    causes: list[Any] = []
    try:
        while java is not None and len(causes) < MAX_CAUSES:
            causes.append(java)
            java = java.getCause()
    except Exception:  # the JVM is gone: nothing to tell
        return []
    return causes


def java_root_line(error: BaseException) -> str | None:
    """``"<class>: <message>"``, first line, of the deepest Java cause of a Spark error
    raised through Py4J (it names the disk or the connection where the first line often
    does not); None for any other error, or where the JVM no longer answers."""
    causes = java_causes(error)
    try:
        return str(causes[-1].toString()).splitlines()[0] if causes else None
    except Exception:  # the JVM is gone
        return None
