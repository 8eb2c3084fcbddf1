"""Reads of MLflow's database: checked schema, one snapshot per unit, tried again when the
database restarts or drops a connection.

A read of `DatabaseSource` is one unit (a page of experiments, a window of run ids, a batch
of runs with their children) that has no effect on the database, so a unit that fails
because the server went away is simply read again. The budget is the HTTP client's:
MLflow's ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` and ``MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR``
(`RetrySettings`), so the ``rest`` and ``db`` sources wait as long for a restart::

    settings = RetrySettings.from_env()
    rows = read_retried(lambda: read_page(engine), settings, what="runs of experiment 1")

Only `DatabaseUnavailableError` is retried (refused, restarting, a dropped connection);
a wrong password or a bad query fails at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from mlflow_fun.errors import DatabaseUnavailableError
from mlflow_fun.extract.database.schema import check_schema, connect
from mlflow_fun.extract.http import RetrySettings

logger = logging.getLogger(__name__)

T = TypeVar("T")


def read_retried(
    read: Callable[[], T],
    settings: RetrySettings,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Return ``read()``; after a `DatabaseUnavailableError`, wait and read again.

    Waits ``settings.backoff(attempt)`` seconds between tries, at most
    ``settings.max_retries`` retries.

    Example:
        >>> read_retried(lambda: 42, RetrySettings(max_retries=2))
        42

    Raises:
        DatabaseUnavailableError: Still unavailable after the last retry; the message says
            how many times it was tried and which setting raises the budget.
    """
    attempt = 0
    while True:
        try:
            return read()
        except DatabaseUnavailableError as e:
            if attempt >= settings.max_retries:
                raise DatabaseUnavailableError(
                    f"{e} (tried {attempt + 1} times; MLFLOW_HTTP_REQUEST_MAX_RETRIES and "
                    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR set how long to wait)",
                    no_connection=e.no_connection,
                ) from e
            wait = settings.backoff(attempt)
            attempt += 1
            logger.info("%s; retry %d of %d in %.1f s", e, attempt, settings.max_retries, wait)
            sleep(wait)


class Reader:
    """Runs read units on ``engine``: the schema checked once, then each unit on a
    connection of its own, in one snapshot if asked, retried by `read_retried`.

    Example:
        >>> reader = Reader(engine, RetrySettings.from_env())
        >>> reader.read(lambda conn: conn.execute(sa.text("select 1")).scalar(), snapshot=True)
        1
    """

    def __init__(self, engine: Engine, settings: RetrySettings) -> None:
        self.engine, self.settings = engine, settings
        self._checked = False
        self._has_inputs = False

    @property
    def has_inputs(self) -> bool:
        """Whether the store has MLflow's ``inputs`` and ``datasets`` tables (2.4 and later);
        known once a unit has run (ask it inside a unit)."""
        return self._has_inputs

    def read(self, unit: Callable[[Connection], T], *, snapshot: bool = False) -> T:
        """``unit(conn)``'s result; with ``snapshot``, every query of it sees one state."""

        def once() -> T:
            if not self._checked:
                check_schema(self.engine)
                inspector = sa.inspect(self.engine)
                self._has_inputs = all(inspector.has_table(t) for t in ("inputs", "datasets"))
                self._checked = True
            with connect(self.engine, snapshot=snapshot) as conn:
                return unit(conn)

        return read_retried(once, self.settings)
