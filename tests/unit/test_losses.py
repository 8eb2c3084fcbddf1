"""`unreachable_cause`, `source_gone` and `LossWatch`: Java cause chains of the shapes
Spark raises through Py4J (recorded from a build whose PostgreSQL metastore was
stopped), and the errors of a tracking server or database that stopped answering."""

from __future__ import annotations

import logging
from concurrent.futures import Future
from dataclasses import dataclass

import pytest
import requests

from mlflow_fun.errors import (
    DatabaseUnavailableError,
    MetastoreUnreachableError,
    ServerUnreachableError,
)
from mlflow_fun.extract.http import MlflowHttpClient, RetrySettings
from mlflow_fun.extract.local_server import free_port
from mlflow_fun.load.losses import LossWatch, source_gone, unreachable_cause


@dataclass
class JavaClass:
    name: str

    def getName(self) -> str:  # noqa: N802 - Java's name, as Py4J shows it
        return self.name


@dataclass
class JavaError:
    """A Java exception as Py4J hands it over: class, message, cause."""

    name: str
    message: str | None
    cause: JavaError | None = None

    def getClass(self) -> JavaClass:  # noqa: N802
        return JavaClass(self.name)

    def getMessage(self) -> str | None:  # noqa: N802
        return self.message

    def getCause(self) -> JavaError | None:  # noqa: N802
        return self.cause


class SparkError(Exception):
    """pyspark's captured exceptions keep the Java one as ``_origin``; Py4J's error as
    ``java_exception``."""

    def __init__(self, java: object, attribute: str = "_origin") -> None:
        super().__init__("[TABLE_OR_VIEW_NOT_FOUND] ...")
        setattr(self, attribute, java)


def chain(*links: tuple[str, str | None]) -> JavaError:
    """The first link caused by the second, and so on."""
    cause = None
    for name, message in reversed(links):
        cause = JavaError(name, message, cause)
    assert cause is not None
    return cause


STOPPED_POSTGRES = chain(
    ("org.apache.hadoop.hive.ql.metadata.HiveException", "Unable to fetch table runs. ..."),
    ("javax.jdo.JDODataStoreException", "HikariPool-1 - Connection is not available"),
    ("java.sql.SQLTransientConnectionException", "HikariPool-1 - Connection is not available"),
    ("org.postgresql.util.PSQLException", "Connection to 127.0.0.1:5432 refused. Check ..."),
    ("java.net.ConnectException", "Connection refused\n\tat sun.nio.ch.Net.pollConnect"),
)


@pytest.mark.parametrize("attribute", ["_origin", "java_exception"])
def test_a_stopped_metastore_is_named_by_its_deepest_connection_error(attribute: str) -> None:
    error = SparkError(STOPPED_POSTGRES, attribute)
    assert unreachable_cause(error) == "java.net.ConnectException: Connection refused"


def test_a_remote_metastore_gone_is_its_transport_error() -> None:
    thrift = chain(
        ("org.apache.hadoop.hive.ql.metadata.HiveException", "Unable to fetch table runs"),
        ("org.apache.thrift.transport.TTransportException", None),
    )
    assert (
        unreachable_cause(SparkError(thrift)) == "org.apache.thrift.transport.TTransportException"
    )


@pytest.mark.parametrize(
    "java",
    [
        # a connection error of the storage, not of the metastore
        chain(
            ("java.io.IOException", "Failed on local exception"), ("java.net.ConnectException", "x")
        ),
        # ... wrapped by Hive's query layer (creating a table's folder on a stopped HDFS)
        chain(
            ("org.apache.hadoop.hive.ql.metadata.HiveException", "Unable to create folder"),
            ("java.net.ConnectException", "Connection refused"),
        ),
        # a connection error above the metastore's classes, not below them
        chain(("java.net.ConnectException", "x"), ("javax.jdo.JDOException", "y")),
        # the metastore answered: no such table
        chain(
            ("org.apache.hadoop.hive.ql.metadata.HiveException", "Table exp_1 not found"),
            ("org.apache.hadoop.hive.metastore.api.NoSuchObjectException", "exp_1"),
        ),
        None,  # not a Spark error
    ],
)
def test_other_failures_are_not_a_lost_metastore(java: JavaError | None) -> None:
    error = SparkError(java) if java is not None else ValueError("bad value")
    assert unreachable_cause(error) is None
    watch = LossWatch()
    assert watch.saw(error) is False
    assert watch.lost is False


def test_a_jvm_that_no_longer_answers_tells_nothing() -> None:
    class Gone:
        def getCause(self) -> None:  # noqa: N802 - the chain is read before the JVM goes
            return None

        def getClass(self) -> JavaClass:  # noqa: N802
            raise ConnectionRefusedError("py4j: the JVM is gone")

    assert unreachable_cause(SparkError(Gone())) is None


def test_the_watch_keeps_the_first_loss_and_says_it_once(caplog: pytest.LogCaptureFixture) -> None:
    watch = LossWatch()
    first = SparkError(STOPPED_POSTGRES)
    later = SparkError(
        chain(("javax.jdo.JDOException", "x"), ("java.net.NoRouteToHostException", "no route"))
    )
    with caplog.at_level(logging.ERROR, logger="mlflow_fun.load.losses"):
        assert watch.saw(first) and watch.saw(later)
    assert watch.lost
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        "metastore unreachable cause=java.net.ConnectException"
    ]
    message = str(watch.error("2 of 7 table(s) written"))
    assert message.startswith(
        "the metastore did not answer (java.net.ConnectException: Connection refused); "
        "2 of 7 table(s) written. Start the metastore"
    )


def test_keeping_keeps_a_loss_and_raises_anything_else() -> None:
    watch = LossWatch()
    lost: Future[None] = Future()
    lost.set_exception(SparkError(STOPPED_POSTGRES))
    with watch.keeping():
        lost.result()  # kept for the build's one error
    assert watch.lost
    other: Future[None] = Future()
    other.set_exception(OSError(28, "No space left on device"))
    with pytest.raises(OSError, match="No space left"), watch.keeping():
        other.result()


def test_raising_turns_a_loss_into_one_error_and_lets_others_through() -> None:
    watch = LossWatch()
    loss = pytest.raises(
        MetastoreUnreachableError, match=r"Connection refused\); nothing written\."
    )
    with loss, watch.raising("nothing written"):
        raise SparkError(STOPPED_POSTGRES)
    with pytest.raises(KeyError), LossWatch().raising("nothing written"):
        raise KeyError("exp_1")


def _refused() -> ServerUnreachableError:
    """The client's error for a server that is not there, after its retries."""
    client = MlflowHttpClient(
        f"http://127.0.0.1:{free_port()}",
        retry=RetrySettings(max_retries=0, backoff_factor=0.01, backoff_jitter=0),
    )
    with pytest.raises(ServerUnreachableError) as caught:
        client.post("runs/search", {})
    return caught.value


def test_a_source_gone_stops_the_build_but_not_the_metastores_steps(
    caplog: pytest.LogCaptureFixture,
) -> None:
    refused = _refused()
    dropped = ServerUnreachableError("the connection was dropped", endpoint="runs/search")
    dropped.__cause__ = requests.ConnectionError("('Connection aborted.', RemoteDisconnected())")
    assert source_gone(refused)
    assert not source_gone(dropped)  # one experiment's big page may do that: not a loss
    watch = LossWatch()
    with caplog.at_level(logging.ERROR, logger="mlflow_fun.load.losses"):
        assert not watch.saw(dropped)
        assert watch.saw(refused) and watch.saw(_refused())
    assert (watch.lost, watch.metastore_lost) == (True, False)
    assert caplog.messages == ["source unreachable: no more tables are started"]
    error = watch.error("3 of 9 table(s) written, the others unchanged")
    assert isinstance(error, ServerUnreachableError) and error.endpoint == "runs/search"
    assert str(error) == (
        f"{refused}; 3 of 9 table(s) written, the others unchanged. Run the job again once "
        "it answers: each table is as before or written whole"
    )


def test_a_metastore_lost_after_the_source_still_skips_its_steps() -> None:
    watch = LossWatch()
    assert watch.saw(_refused()) and watch.saw(SparkError(STOPPED_POSTGRES))
    assert (watch.lost, watch.metastore_lost) == (True, True)
    assert isinstance(watch.error("1 of 9 table(s) written"), MetastoreUnreachableError)


def test_a_database_that_took_no_connection_is_gone_one_dropped_mid_read_is_not() -> None:
    assert not source_gone(DatabaseUnavailableError("server closed the connection"))
    not_back = DatabaseUnavailableError("connection refused", no_connection=True)
    watch = LossWatch()
    assert source_gone(not_back) and watch.saw(not_back)
    error = watch.error("nothing written")
    assert type(error) is DatabaseUnavailableError and error.no_connection
