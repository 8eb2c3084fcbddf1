"""Best run with one SQL query on MLflow's own database (the tracking server's store).

Reads ``runs``, ``latest_metrics`` and ``experiments`` with SQLAlchemy Core; the database
sorts and sends one row. The answer is the one the REST road gives
(`mlflow_fun.metrics.api.best_run.get_best_run_fast`): only active runs, the latest value
of each metric, runs without the metric or with NaN skipped, ties to the earliest
``start_time`` (runs without one last), then the smallest ``run_id``.

Example:
    >>> get_best_run("postgresql+psycopg2://mlflow:pw@db/mlflow", "1", "rmse")
    ('5f0c…', 0.7223)
"""

from __future__ import annotations

import logging
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mlflow_fun.errors import ExperimentNotFoundError
from mlflow_fun.extract.database.queries import parse_experiment_id
from mlflow_fun.extract.database.schema import (
    EXPERIMENTS,
    LATEST_METRICS,
    RUNS,
    check_schema,
    connect,
    open_engine,
    safe_url,
)
from mlflow_fun.query.model import metric_keys, no_value_error

logger = logging.getLogger(__name__)


def best_run_query(experiment_id: int, key: str, ascending: bool = True) -> sa.Select[Any]:
    """The query of the best run: bound parameters, ORDER BY on the database, LIMIT 1.

    Example:
        >>> print(best_run_query(1, "rmse"))  # doctest: +ELLIPSIS
        SELECT runs.run_uuid, latest_metrics.value ...

    Args:
        experiment_id: The experiment, as the integer MLflow stores.
        key: The metric key (checked by the caller).
        ascending: True for the lowest value first.
    """
    value = LATEST_METRICS.c.value
    return (
        sa.select(RUNS.c.run_uuid, value)
        .select_from(RUNS.join(LATEST_METRICS, LATEST_METRICS.c.run_uuid == RUNS.c.run_uuid))
        .where(
            RUNS.c.experiment_id == experiment_id,
            RUNS.c.lifecycle_stage == "active",
            LATEST_METRICS.c.key == key,
            LATEST_METRICS.c.is_nan == sa.false(),
        )
        .order_by(
            value.asc() if ascending else value.desc(),
            sa.case((RUNS.c.start_time.is_(None), 1), else_=0),
            RUNS.c.start_time.asc(),
            RUNS.c.run_uuid.asc(),
        )
        .limit(1)
    )


def get_best_run(
    connection: str | Engine,
    experiment_id: str | int,
    metric: str,
    ascending: bool = True,
) -> tuple[str, float]:
    """Best run of ``metric`` in an experiment, straight from MLflow's database.

    Example:
        >>> get_best_run("sqlite:////srv/mlflow/mlflow.db", "1", "rmse")
        ('5f0c…', 0.7223)
        >>> get_best_run("mysql+pymysql://mlflow:pw@db/mlflow", "1", "r2", ascending=False)
        ('a81e…', 0.4871)

    Args:
        connection: An SQLAlchemy URL (``sqlite:///…``, ``postgresql+psycopg2://…``,
            ``mysql+pymysql://…``) or an `Engine` (used, not disposed).
        experiment_id: The experiment.
        metric: ``rmse`` or ``_m_rmse``.
        ascending: True: the lowest value wins; False: the highest.

    Returns:
        ``(run_id, value)``; MLflow stores +-inf as +-1.7976931348623157e308.

    Raises:
        ExperimentNotFoundError: No experiment has this id.
        MetricNotFoundError: The name is not a valid metric key, or no active run has a
            value of it that is not NaN.
        SchemaMismatchError: The database is not MLflow's store of the installed schema.
        DatabaseError: The database is unreachable or a query failed.
        ConfigError: The URL is not a database URL or its driver is missing.
    """
    keys = metric_keys(metric)
    engine, owned = open_engine(connection)
    try:
        check_schema(engine, (RUNS, LATEST_METRICS, EXPERIMENTS))
        started = time.monotonic()
        eid = parse_experiment_id(experiment_id)
        with connect(engine) as conn:
            found = (
                eid is not None
                and conn.execute(
                    sa.select(EXPERIMENTS.c.experiment_id).where(EXPERIMENTS.c.experiment_id == eid)
                ).first()
            )
            if eid is None or not found:
                raise ExperimentNotFoundError(
                    f"experiment id {str(experiment_id)!r} does not exist at {safe_url(engine)}"
                )
            for key in keys:
                row = conn.execute(best_run_query(eid, key, ascending)).first()
                if row is not None:
                    logger.info(
                        "best run experiment_id=%d metric=%s seconds=%.3f",
                        eid,
                        key,
                        time.monotonic() - started,
                    )
                    return str(row[0]), float(row[1])
    finally:
        if owned:
            engine.dispose()
    raise no_value_error(eid, metric)
