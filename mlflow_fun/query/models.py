"""``mlflow-fun best --models``: MLflow 3's logged models ranked with the runs' grammar.

Every source gives the same `LoggedModelRecord`s (the tracking server's
``logged-models/search``, MLflow's client, MLflow's database, the job's ``logged_models``
and ``model_metrics`` tables); `models_frame` makes them one typed pandas table, one row
per model, which `mlflow_fun.query.engine` ranks as it ranks runs (``--where``,
``--order-by``, ``--top``, ``--pareto``):

- ``model_id``, ``experiment_id``, ``name``, ``source_run_id``, ``model_type``,
  ``status``, ``creation_time``, ``last_updated_time``;
- ``_m_<key>``: the model's value of metric <key> measured on ``dataset`` (on any dataset
  when None), the latest as MLflow's ``search_logged_models`` orders them: the largest
  timestamp, then the largest step, then the smallest run id;
- ``_p_<key>`` typed by the runs' rules (`mlflow_fun.transform.typing_rules`), ``_t_<key>``.

Ties go to the earliest ``creation_time``, then the smallest ``model_id`` (`MODELS`).

Example:
    >>> query = BestQuery(order_by=parse_order_by("rmse"))
    >>> answer_models(read_models("rest", ["1"], tracking_uri=url), query, dataset="wine-test")
    [RankedRun(run_id='m-…', experiment_id='1', values={'_m_rmse': 0.7})]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from mlflow_fun.catalog import table_exists
from mlflow_fun.errors import ConfigError
from mlflow_fun.extract.client_models import read_logged_models_with_client
from mlflow_fun.extract.logged_models import (
    LoggedModelRecord,
    ModelMetric,
    in_model_order,
    read_logged_models,
)
from mlflow_fun.extract.mlflow_client import MlflowClientSource
from mlflow_fun.extract.rest import RestSource
from mlflow_fun.query.answer import open_named_source
from mlflow_fun.query.engine import MODELS, best_runs, pareto_front
from mlflow_fun.query.model import BestQuery, RankedRun
from mlflow_fun.query.tables import TableNotLocalError, UnreadableTableError, read_table
from mlflow_fun.transform.flatten import ARROW_TYPES
from mlflow_fun.transform.frames import arrow_to_pandas
from mlflow_fun.transform.naming import (
    LOGGED_MODELS_TABLE,
    METRIC,
    MODEL_METRICS_TABLE,
    PARAM,
    TAG,
    assign_column_names,
    qualified_table,
)
from mlflow_fun.transform.typing_rules import convert_param, infer_param_type

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import SparkSession

# The info columns of a model row, and their Arrow types.
MODEL_INFO: dict[str, pa.DataType] = {
    "model_id": pa.string(),
    "experiment_id": pa.string(),
    "name": pa.string(),
    "source_run_id": pa.string(),
    "model_type": pa.string(),
    "status": pa.string(),
    "creation_time": ARROW_TYPES["timestamp"],
    "last_updated_time": ARROW_TYPES["timestamp"],
}


def latest_values(metrics: Iterable[ModelMetric], dataset: str | None = None) -> dict[str, float]:
    """Key -> the latest value of each metric, on ``dataset`` (any dataset when None).

    Latest as MLflow's ``search_logged_models`` orders: the largest timestamp, then the
    largest step, then the smallest run id.

    Example:
        >>> latest_values([ModelMetric("rmse", 0.8, 0, 1, "train", "d1", None),
        ...                ModelMetric("rmse", 0.7, 0, 2, "test", "d2", None)], "train")
        {'rmse': 0.8}
    """
    measured = [m for m in metrics if dataset is None or m.dataset_name == dataset]
    latest_first = sorted(measured, key=lambda m: (-(m.timestamp or 0), -m.step, m.run_id or ""))
    chosen: dict[str, float] = {}
    for metric in latest_first:
        chosen.setdefault(metric.key, metric.value)
    return dict(sorted(chosen.items()))


def models_frame(models: Sequence[LoggedModelRecord], dataset: str | None = None) -> pd.DataFrame:
    """One typed pandas row per model: the columns the module docstring lists.

    ``df.attrs["mlflow_keys"]`` maps each metric, param and tag column to its
    ``(kind, MLflow key)``, as for runs.

    Example:
        >>> models_frame(read_models("rest", ["1"], tracking_uri=url), "wine-test")["_m_rmse"]
    """
    ordered = sorted(models, key=lambda m: (m.creation_time or 0, m.model_id))
    values = [latest_values(m.metrics, dataset) for m in ordered]
    keyed = {
        METRIC: sorted({k for v in values for k in v}),
        PARAM: sorted({k for m in ordered for k in m.params}),
        TAG: sorted({k for m in ordered for k in m.tags}),
    }
    names = assign_column_names((kind, key) for kind, keys in keyed.items() for key in keys)
    arrays: dict[str, pa.Array] = {
        column: pa.array([getattr(m, column) for m in ordered], arrow_type)
        for column, arrow_type in MODEL_INFO.items()
    }
    mlflow_keys: dict[str, tuple[str, str]] = {}
    for kind, keys in keyed.items():
        for key in sorted(keys, key=lambda k: names[(kind, k)].lower()):
            name = names[(kind, key)]
            mlflow_keys[name] = (kind, key)
            if kind == METRIC:
                arrays[name] = pa.array([v.get(key) for v in values], pa.float64())
            elif kind == PARAM:
                raw = [m.params.get(key) for m in ordered]
                param_type = infer_param_type(raw)
                typed = [convert_param(v, param_type) for v in raw]
                arrays[name] = pa.array(typed, ARROW_TYPES[param_type])
            else:
                arrays[name] = pa.array([m.tags.get(key) for m in ordered], pa.string())
    df = arrow_to_pandas(pa.table(arrays))
    df.attrs["mlflow_keys"] = mlflow_keys
    return df


def answer_models(
    models: Sequence[LoggedModelRecord],
    query: BestQuery,
    dataset: str | None = None,
    experiment_ids: Sequence[str] = (),
) -> list[RankedRun]:
    """Answer ``query`` over ``models`` (those of ``experiment_ids``); each answer's
    ``run_id`` is the model's id.

    Raises:
        ConfigError: There is no model, or none has a metric measured on ``dataset``.
        MetricNotFoundError, QueryError: As for runs.
    """
    experiments = f"experiment(s) {', '.join(experiment_ids)}"
    if not models:
        raise ConfigError(f"{experiments} have no logged models")
    datasets = sorted({x.dataset_name or "" for m in models for x in m.metrics})
    if dataset is not None and dataset not in datasets:
        raise ConfigError(
            f"no logged model of {experiments} has a metric measured on dataset {dataset!r}; "
            f"their datasets: {', '.join(repr(d) for d in datasets if d) or 'none'}"
        )
    frame = models_frame(models, dataset)
    if query.pareto:
        return pareto_front(frame, query.pareto, query.where, MODELS)
    return best_runs(frame, query.order_by, query.where, query.top, MODELS)


def read_models(
    source: str,
    experiment_ids: Sequence[str],
    *,
    tracking_uri: str | None = None,
    connection: str | None = None,
    spark: SparkSession | None = None,
    database: str = "mlflow_metrics",
    data_dir: str | None = None,
) -> list[LoggedModelRecord]:
    """Every logged model of ``experiment_ids`` from ``source`` (as ``best``'s sources).

    ``table`` without ``spark`` reads the Delta tables under ``data_dir`` with delta-rs.

    Raises:
        ConfigError: The server or database has no logged models (MLflow 2.x), or the
            tables none (a job without ``--with-models``; under ``data_dir``, the
            ``logged_models`` table is not there as Delta).
        ExperimentNotFoundError, TrackingServerError, DatabaseError.
    """
    if source == "table":
        if spark is not None:
            return models_from_spark(spark, database, experiment_ids)
        if data_dir is None:
            raise ConfigError("--source table reads the tables under --data-dir, or through Spark")
        try:
            return models_from_delta(data_dir, database, experiment_ids)
        except UnreadableTableError:
            raise  # there, but for Spark to read
        except TableNotLocalError as e:  # the experiments' tables were local: these are not
            raise ConfigError(no_models_message(database)) from e
    run_source = open_named_source(source, tracking_uri=tracking_uri, connection=connection)
    for experiment_id in experiment_ids:
        run_source.get_experiment(experiment_id)
    if isinstance(run_source, RestSource):
        models = read_logged_models(run_source.client, experiment_ids)
    elif isinstance(run_source, MlflowClientSource):
        models = read_logged_models_with_client(
            run_source.client, experiment_ids, retry=run_source.retry
        )
    else:
        # SQLAlchemy and the database drivers: only for --source db.
        from mlflow_fun.extract.database.logged_models import read_logged_models_from_db

        models = read_logged_models_from_db(str(connection), experiment_ids)
    if models is None:
        raise ConfigError(
            f"{run_source.tracking_uri} has no logged models (MLflow 2.x): --models needs MLflow 3"
        )
    return models


def models_from_rows(
    model_rows: Iterable[Mapping[str, Any]], metric_rows: Iterable[Mapping[str, Any]]
) -> list[LoggedModelRecord]:
    """Records from rows of the ``logged_models`` and ``model_metrics`` tables.

    Timestamps are epoch milliseconds; params and tags are mappings or ``(key, value)``
    pairs (Arrow's ``to_pylist`` of a map). The records equal those the REST source gives,
    in its order (`in_model_order`).
    """
    metrics: dict[str, list[ModelMetric]] = {}
    for row in metric_rows:
        metrics.setdefault(row["model_id"], []).append(
            ModelMetric(
                key=row["key"],
                value=row["value"],
                step=row["step"],
                timestamp=row["timestamp"],
                dataset_name=row["dataset_name"],
                dataset_digest=row["dataset_digest"],
                run_id=row["run_id"],
            )
        )
    return in_model_order(
        LoggedModelRecord(
            model_id=row["model_id"],
            name=row["name"],
            experiment_id=row["experiment_id"],
            source_run_id=row["source_run_id"],
            model_type=row["model_type"],
            status=row["status"],
            creation_time=row["creation_time"],
            last_updated_time=row["last_updated_time"],
            artifact_location=row["artifact_location"],
            params=dict(row["params"] or {}),
            tags=dict(row["tags"] or {}),
            metrics=tuple(metrics.get(row["model_id"], ())),
        )
        for row in model_rows
    )


def models_from_delta(
    data_dir: str, database: str, experiment_ids: Sequence[str]
) -> list[LoggedModelRecord]:
    """The models of ``experiment_ids`` in the job's tables under ``data_dir``, by delta-rs.

    Raises:
        TableNotLocalError: A table is not a Delta table under ``data_dir``.
        UnreadableTableError: delta-rs does not read one (Spark does).
    """

    def rows(table: str) -> list[dict[str, Any]]:
        arrow = read_table(
            data_dir, database, table, filters=[("experiment_id", "in", list(experiment_ids))]
        )
        return _epoch_millis(arrow).to_pylist()

    return models_from_rows(rows(LOGGED_MODELS_TABLE), rows(MODEL_METRICS_TABLE))


def models_from_spark(
    spark: SparkSession, database: str, experiment_ids: Sequence[str]
) -> list[LoggedModelRecord]:
    """The models of ``experiment_ids`` in the job's tables, through Spark's metastore.

    Raises:
        ConfigError: The database has no ``logged_models`` table.
    """
    from pyspark.sql import functions as F

    if not table_exists(spark, database, LOGGED_MODELS_TABLE):
        raise ConfigError(no_models_message(database))

    def rows(table: str) -> list[dict[str, Any]]:
        df = spark.table(qualified_table(database, table))
        df = df.where(F.col("experiment_id").isin(list(experiment_ids)))
        times = [f.name for f in df.schema.fields if f.dataType.typeName() == "timestamp"]
        for name in times:
            df = df.withColumn(name, F.unix_millis(F.col(name)))
        return [row.asDict() for row in df.collect()]

    return models_from_rows(rows(LOGGED_MODELS_TABLE), rows(MODEL_METRICS_TABLE))


def no_models_message(database: str) -> str:
    """What to do when the tables hold no logged models."""
    return (
        f"no {LOGGED_MODELS_TABLE} table in {database!r}: run the job with --with-models "
        "(an MLflow 3 tracking server), or ask another --source"
    )


def _epoch_millis(table: pa.Table) -> pa.Table:
    """``table`` with its timestamp columns as epoch milliseconds (int64)."""
    for index, field in enumerate(table.schema):
        if pa.types.is_timestamp(field.type):
            millis = table.column(index).cast(pa.timestamp("ms", tz="UTC")).cast(pa.int64())
            table = table.set_column(index, field.name, millis)
    return table
