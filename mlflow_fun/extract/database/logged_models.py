"""MLflow 3's logged models straight from MLflow's database, with their metrics.

`read_logged_models_from_db` reads ``logged_models``, ``logged_model_params``,
``logged_model_tags`` and ``logged_model_metrics`` with SQLAlchemy Core and gives the
records `mlflow_fun.extract.logged_models.read_logged_models` gives for the tracking
server on top of that database: the models MLflow's ``search_logged_models`` returns (not
the deleted ones), MLflow's status words, None for empty strings::

    # the password from MLFLOW_FUN_DB_PASSWORD, not from the command line
    models = read_logged_models_from_db("postgresql+psycopg2://mlflow@db-host/mlflow", ["1"])

A database of MLflow 2.x has no ``logged_models`` table: the answer is None, "no logged
models", not an error. Read-only; values reach SQL as bound parameters only.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from mlflow_fun.errors import ExperimentNotFoundError
from mlflow_fun.extract.database.queries import as_text, ids_per_query, parse_experiment_id
from mlflow_fun.extract.database.schema import check_schema, connect, open_engine, safe_url
from mlflow_fun.extract.logged_models import (
    LoggedModelRecord,
    ModelMetric,
    in_model_order,
    status_word,
)
from mlflow_fun.model import optional_int

logger = logging.getLogger(__name__)


LOGGED_MODELS = sa.table(
    "logged_models",
    sa.column("model_id", sa.String),
    sa.column("experiment_id", sa.Integer),
    sa.column("name", sa.String),
    sa.column("artifact_location", sa.String),
    sa.column("creation_timestamp_ms", sa.BigInteger),
    sa.column("last_updated_timestamp_ms", sa.BigInteger),
    sa.column("status", sa.Integer),
    sa.column("lifecycle_stage", sa.String),
    sa.column("model_type", sa.String),
    sa.column("source_run_id", sa.String),
)


LOGGED_MODEL_PARAMS = sa.table(
    "logged_model_params",
    sa.column("model_id", sa.String),
    sa.column("param_key", sa.String),
    sa.column("param_value", sa.Text),
)


LOGGED_MODEL_TAGS = sa.table(
    "logged_model_tags",
    sa.column("model_id", sa.String),
    sa.column("tag_key", sa.String),
    sa.column("tag_value", sa.Text),
)


LOGGED_MODEL_METRICS = sa.table(
    "logged_model_metrics",
    sa.column("model_id", sa.String),
    sa.column("metric_name", sa.String),
    sa.column("metric_value", sa.Float),
    sa.column("metric_step", sa.BigInteger),
    sa.column("metric_timestamp_ms", sa.BigInteger),
    sa.column("run_id", sa.String),
    sa.column("dataset_name", sa.String),
    sa.column("dataset_digest", sa.String),
)


LOGGED_MODEL_TABLES = (LOGGED_MODELS, LOGGED_MODEL_PARAMS, LOGGED_MODEL_TAGS, LOGGED_MODEL_METRICS)


# As MLflow's SqlAlchemyStore.search_logged_models: every model not deleted.
DELETED = "deleted"


EXPERIMENT_IDS: sa.BindParameter[list[int]] = sa.bindparam("experiment_ids", expanding=True)


MODEL_IDS: sa.BindParameter[list[str]] = sa.bindparam("model_ids", expanding=True)


# The columns `model_from_row` unpacks, in its order.
MODELS_OF = sa.select(
    LOGGED_MODELS.c.model_id,
    LOGGED_MODELS.c.experiment_id,
    LOGGED_MODELS.c.name,
    LOGGED_MODELS.c.source_run_id,
    LOGGED_MODELS.c.model_type,
    LOGGED_MODELS.c.status,
    LOGGED_MODELS.c.creation_timestamp_ms,
    LOGGED_MODELS.c.last_updated_timestamp_ms,
    LOGGED_MODELS.c.artifact_location,
).where(
    LOGGED_MODELS.c.experiment_id.in_(EXPERIMENT_IDS),
    LOGGED_MODELS.c.lifecycle_stage != DELETED,
)


PARAMS_OF = sa.select(
    LOGGED_MODEL_PARAMS.c.model_id,
    LOGGED_MODEL_PARAMS.c.param_key,
    LOGGED_MODEL_PARAMS.c.param_value,
).where(LOGGED_MODEL_PARAMS.c.model_id.in_(MODEL_IDS))


TAGS_OF = sa.select(
    LOGGED_MODEL_TAGS.c.model_id, LOGGED_MODEL_TAGS.c.tag_key, LOGGED_MODEL_TAGS.c.tag_value
).where(LOGGED_MODEL_TAGS.c.model_id.in_(MODEL_IDS))


# The columns `metric_from_row` unpacks, in its order.
METRICS_OF = sa.select(
    LOGGED_MODEL_METRICS.c.model_id,
    LOGGED_MODEL_METRICS.c.metric_name,
    LOGGED_MODEL_METRICS.c.metric_value,
    LOGGED_MODEL_METRICS.c.metric_step,
    LOGGED_MODEL_METRICS.c.metric_timestamp_ms,
    LOGGED_MODEL_METRICS.c.dataset_name,
    LOGGED_MODEL_METRICS.c.dataset_digest,
    LOGGED_MODEL_METRICS.c.run_id,
).where(LOGGED_MODEL_METRICS.c.model_id.in_(MODEL_IDS))


def read_logged_models_from_db(
    connection: str | Engine,
    experiment_ids: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
) -> list[LoggedModelRecord] | None:
    """Every logged model of ``experiment_ids`` in MLflow's database, in `in_model_order`.

    The records `read_logged_models` gives for the server on top of the database. The
    experiments are read up to `ids_per_query` at a time; each batch is one query for its
    models and one per child table for their params, tags and metrics.

    Example:
        >>> models = read_logged_models_from_db("sqlite:////srv/mlflow.db", ["1"])
        >>> [(m.name, m.status, [(x.key, x.dataset_name) for x in m.metrics]) for m in models]
        [('model', 'READY', [('rmse', 'wine-test')])]

    Args:
        connection: An SQLAlchemy URL or an `Engine` (used as it is, not disposed); a URL
            as `DatabaseSource` takes it (the password may come from
            ``MLFLOW_FUN_DB_PASSWORD`` in ``env``).
        experiment_ids: The experiments whose models are read.
        env: Where ``MLFLOW_FUN_DB_PASSWORD`` is read; ``os.environ`` by default.

    Returns:
        The models; None when the database has no ``logged_models`` table (MLflow 2.x).

    Raises:
        ConfigError: A bad URL or a missing driver.
        ExperimentNotFoundError: An experiment id that is not a whole number.
        SchemaMismatchError: ``logged_models`` is there but a table or column read is not.
        DatabaseError: The database is unreachable or a query failed.
    """
    engine, owned = open_engine(connection, env=env)
    try:
        numbers = experiment_numbers(experiment_ids, safe_url(engine))
        if not has_logged_models(engine):
            return None
        check_schema(engine, LOGGED_MODEL_TABLES)
        per_query = ids_per_query(engine)
        models: list[LoggedModelRecord] = []
        with connect(engine) as conn:
            for start in range(0, len(numbers), per_query):
                models += _models_of(conn, numbers[start : start + per_query], per_query)
    finally:
        if owned:
            engine.dispose()
    models = in_model_order(models)
    metrics_count = sum(len(m.metrics) for m in models)
    logger.info("logged models read models=%d metrics=%d", len(models), metrics_count)
    return models


def has_logged_models(engine: Engine) -> bool:
    """Whether the database has MLflow 3's ``logged_models`` table.

    Example:
        >>> has_logged_models(sa.create_engine("sqlite:////srv/mlflow-2.22.db"))
        False

    Raises:
        DatabaseError: The database is unreachable.
    """
    with connect(engine) as conn:
        return bool(sa.inspect(conn).has_table(LOGGED_MODELS.name))


def experiment_numbers(experiment_ids: Iterable[str], where: str) -> list[int]:
    """The experiment ids as the integers the database keeps, de-duplicated and sorted.

    Example:
        >>> experiment_numbers(["3", "1", "3"], "sqlite:////srv/mlflow.db")
        [1, 3]

    Raises:
        ExperimentNotFoundError: An id that is not a whole number (no experiment has it).
    """
    numbers = set()
    for experiment_id in experiment_ids:
        number = parse_experiment_id(experiment_id)
        if number is None:
            raise ExperimentNotFoundError(
                f"experiment id {str(experiment_id)!r} does not exist at {where}: "
                "ids are whole numbers"
            )
        numbers.add(number)
    return sorted(numbers)


def model_from_row(
    row: Sequence[Any],
    params: Mapping[str, str],
    tags: Mapping[str, str],
    metrics: Iterable[ModelMetric],
) -> LoggedModelRecord:
    """The record of a row of `MODELS_OF` and its params, tags and metrics.

    The status integer becomes MLflow's word, empty strings None, as from the REST API.

    Example:
        >>> model_from_row(("m-1", 3, "model", "", None, 2, 10, 12, "/a"), {}, {}, ()).status
        'READY'
    """
    model_id, experiment_id, name, source_run_id, model_type, status, created, updated, uri = row
    return LoggedModelRecord(
        model_id=str(model_id),
        name=str(name),
        experiment_id=str(experiment_id),
        source_run_id=source_run_id or None,
        model_type=model_type or None,
        status=status_word(status),
        creation_time=optional_int(created),
        last_updated_time=optional_int(updated),
        artifact_location=uri or None,
        params=dict(params),
        tags=dict(tags),
        metrics=tuple(metrics),
    )


def metric_from_row(row: Sequence[Any]) -> ModelMetric:
    """The `ModelMetric` of a row of `METRICS_OF` (its model id first, not kept).

    MLflow stores NaN as 0 and +-inf as +-1.7976931348623157e308, and so its server sends
    them; a NULL value (which MLflow does not write) is NaN.

    Example:
        >>> metric = metric_from_row(("m-1", "rmse", 0.7, 0, 17, "wine-test", "3c", None))
        >>> (metric.key, metric.value, metric.dataset_name, metric.run_id)
        ('rmse', 0.7, 'wine-test', None)
    """
    _, key, value, step, timestamp, dataset_name, dataset_digest, run_id = row
    return ModelMetric(
        key=str(key),
        value=math.nan if value is None else float(value),
        step=int(step or 0),
        timestamp=optional_int(timestamp),
        dataset_name=dataset_name or None,
        dataset_digest=dataset_digest or None,
        run_id=run_id or None,
    )


def _models_of(conn: Connection, numbers: list[int], per_query: int) -> list[LoggedModelRecord]:
    """The models of one batch of experiments, with their children."""
    rows = conn.execute(MODELS_OF, {"experiment_ids": numbers}).all()
    params: defaultdict[str, dict[str, str]] = defaultdict(dict)
    tags: defaultdict[str, dict[str, str]] = defaultdict(dict)
    metrics: defaultdict[str, list[ModelMetric]] = defaultdict(list)
    model_ids = [str(row[0]) for row in rows]
    for start in range(0, len(model_ids), per_query):
        chunk = {"model_ids": model_ids[start : start + per_query]}
        for model_id, key, value in conn.execute(PARAMS_OF, chunk):
            params[model_id][key] = as_text(value)
        for model_id, key, value in conn.execute(TAGS_OF, chunk):
            tags[model_id][key] = as_text(value)
        for row in conn.execute(METRICS_OF, chunk):
            metrics[row[0]].append(metric_from_row(row))
    return [model_from_row(row, params[row[0]], tags[row[0]], metrics[row[0]]) for row in rows]
