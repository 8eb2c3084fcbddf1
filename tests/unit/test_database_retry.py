"""`read_retried` and the driver-error classification of `database_error` (no server)."""

from __future__ import annotations

import sqlite3

import pytest
import sqlalchemy as sa

from mlflow_fun.errors import DatabaseError, DatabaseUnavailableError
from mlflow_fun.extract.database.reader import read_retried
from mlflow_fun.extract.database.schema import database_error
from mlflow_fun.extract.http import RetrySettings

SETTINGS = RetrySettings(max_retries=3, backoff_factor=1.0, backoff_jitter=0.0, backoff_max=3.0)


def test_an_unavailable_database_is_read_again_with_the_http_backoff() -> None:
    failures, waits = [DatabaseUnavailableError("down")] * 3, []

    def read() -> str:
        if failures:
            raise failures.pop()
        return "rows"

    assert read_retried(read, SETTINGS, sleep=waits.append) == "rows"
    assert waits == [1.0, 2.0, 3.0]  # doubled, capped by backoff_max


def test_after_the_budget_one_line_names_the_settings() -> None:
    def read() -> str:
        raise DatabaseUnavailableError("cannot connect to database sqlite:///x: refused")

    waits: list[float] = []
    with pytest.raises(DatabaseUnavailableError) as raised:
        read_retried(read, SETTINGS, sleep=waits.append)
    assert str(raised.value) == (
        "cannot connect to database sqlite:///x: refused (tried 4 times; "
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES and MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR set how long "
        "to wait)"
    )
    assert len(waits) == 3


def test_other_database_errors_are_not_retried() -> None:
    calls: list[int] = []

    def read() -> str:
        calls.append(1)
        raise DatabaseError("query on database sqlite:///x failed: no such table: runs")

    with pytest.raises(DatabaseError):
        read_retried(read, SETTINGS, sleep=lambda _: None)
    assert calls == [1]


@pytest.mark.parametrize(
    ("message", "connecting", "unavailable", "no_connection"),
    [
        ("database is locked", False, True, False),
        ("no such table: runs", False, False, False),
        ("unable to open database file", True, False, False),
        ("connection refused", True, True, True),
        ("the database system is starting up", False, True, True),
        ("lost connection to server during query", False, True, False),
    ],
)
def test_which_driver_errors_mean_unavailable(
    message: str, connecting: bool, unavailable: bool, no_connection: bool
) -> None:
    engine = sa.create_engine("sqlite://")
    error = database_error(
        sqlite3.OperationalError(message), engine, "query on database", connecting=connecting
    )
    assert isinstance(error, DatabaseUnavailableError) is unavailable
    assert getattr(error, "no_connection", False) is no_connection
    assert str(error) == f"query on database sqlite://: {message}"


def test_the_budget_keeps_whether_a_connection_was_made() -> None:
    def read() -> str:
        raise DatabaseUnavailableError("connection refused", no_connection=True)

    with pytest.raises(DatabaseUnavailableError) as raised:
        read_retried(read, SETTINGS, sleep=lambda _: None)
    assert raised.value.no_connection
