"""MLflow 3's logged models through a tracking server's REST API, with their metrics.

Since MLflow 3, ``log_model`` and autologging create a LoggedModel: its own params, its
tags (in ``info``, not ``data``) and its metrics, each tied to the dataset it was
measured on. ``POST logged-models/search`` lists them per experiment; an MLflow 2.x server
has no such endpoint (HTTP 404, or ``ENDPOINT_NOT_FOUND``): `read_logged_models` then
answers None, "no logged models", not an error.

The records and the rules every reader of logged models shares live here: `status_word`
(MLflow's status in any spelling -> its Python word) and `in_model_order` (the order of the
models and of each model's metrics). The readers through MLflow's client
(`mlflow_fun.extract.client_models`) and of its database
(`mlflow_fun.extract.database.logged_models`) give the same records as this one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from mlflow_fun.errors import MalformedResponseError, TrackingServerError
from mlflow_fun.extract.http import MlflowHttpClient, paged_items
from mlflow_fun.model import optional_int

logger = logging.getLogger(__name__)

SEARCH_ENDPOINT = "logged-models/search"
# Databricks caps a page at 50; MLflow's own server (3.17) has no cap and a default of 100.
PAGE_SIZE = 50
# Experiments per search: the page token is bound to them, so each batch pages on its own.
EXPERIMENTS_PER_SEARCH = 100

# The REST enum's words and the database's integers (`LoggedModelStatus.to_int`) ->
# MLflow's Python words (`LoggedModelStatus`).
_STATUSES: dict[str | int, str] = {
    "LOGGED_MODEL_STATUS_UNSPECIFIED": "UNSPECIFIED",
    "LOGGED_MODEL_PENDING": "PENDING",
    "LOGGED_MODEL_READY": "READY",
    "LOGGED_MODEL_UPLOAD_FAILED": "FAILED",
    0: "UNSPECIFIED",
    1: "PENDING",
    2: "READY",
    3: "FAILED",
}


@dataclass(frozen=True)
class ModelMetric:
    """One metric value of a logged model (a row of ``<database>.model_metrics``).

    Attributes:
        key: The metric's name.
        value: Its value (NaN and the infinities as MLflow sends them).
        step: The step it was logged at.
        timestamp: Epoch milliseconds, or None.
        dataset_name: The dataset it was measured on; None when it names none.
        dataset_digest: That dataset's digest; None when it names none.
        run_id: The run it was logged in; None when none.
    """

    key: str
    value: float
    step: int
    timestamp: int | None
    dataset_name: str | None
    dataset_digest: str | None
    run_id: str | None


@dataclass(frozen=True)
class LoggedModelRecord:
    """One logged model (a row of ``<database>.logged_models``).

    Attributes:
        model_id: MLflow's id, ``m-<hex>``.
        name: The name given to ``log_model`` (``model`` by default).
        experiment_id: The experiment it belongs to.
        source_run_id: The run that logged it; None for a model logged outside a run.
        model_type: The type given at logging; None when none (MLflow's flavors set none).
        status: ``READY``, ``PENDING``, ``FAILED`` or ``UNSPECIFIED`` (MLflow's Python words).
        creation_time: Epoch milliseconds.
        last_updated_time: Epoch milliseconds.
        artifact_location: Where the model's files are.
        params: The model's params (strings, as MLflow keeps them).
        tags: The model's tags, MLflow's own (``mlflow.*``) included.
        metrics: Every metric value of the model; a reader gives them in `in_model_order`.
    """

    model_id: str
    name: str
    experiment_id: str
    source_run_id: str | None
    model_type: str | None
    status: str | None
    creation_time: int | None
    last_updated_time: int | None
    artifact_location: str | None
    params: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    metrics: tuple[ModelMetric, ...] = ()


def logged_model_from_json(data: Mapping[str, Any]) -> LoggedModelRecord:
    """Build a `LoggedModelRecord` from one item of ``logged-models/search``'s ``models``.

    Empty strings (protobuf's "not set") become None; the REST status word
    ``LOGGED_MODEL_READY`` becomes MLflow's ``READY``.

    Example:
        >>> logged_model_from_json({"info": {"model_id": "m-1", "name": "model",
        ...     "experiment_id": "3", "status": "LOGGED_MODEL_READY"}}).status
        'READY'

    Raises:
        MalformedResponseError: The JSON lacks the model's id, name or experiment, or
            holds a value of a wrong type.
    """
    try:
        info = data["info"]
        model_data = data.get("data") or {}
        return LoggedModelRecord(
            model_id=str(info["model_id"]),
            name=str(info["name"]),
            experiment_id=str(info["experiment_id"]),
            source_run_id=info.get("source_run_id") or None,
            model_type=info.get("model_type") or None,
            status=status_word(info.get("status")),
            creation_time=optional_int(info.get("creation_timestamp_ms")),
            last_updated_time=optional_int(info.get("last_updated_timestamp_ms")),
            artifact_location=info.get("artifact_uri") or None,
            params=_key_values(model_data.get("params", ())),
            tags=_key_values(info.get("tags", ())),
            metrics=tuple(_metric(m) for m in model_data.get("metrics", ())),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise MalformedResponseError(
            f"unexpected logged model JSON: missing or bad {e}", endpoint=SEARCH_ENDPOINT
        ) from e


def read_logged_models(
    client: MlflowHttpClient, experiment_ids: Sequence[str], page_size: int = PAGE_SIZE
) -> list[LoggedModelRecord] | None:
    """Every logged model of ``experiment_ids``, in `in_model_order`.

    Example:
        >>> models = read_logged_models(MlflowHttpClient("http://127.0.0.1:5000"), ["1"])
        >>> [(m.name, [(x.key, x.dataset_name) for x in m.metrics]) for m in models]
        [('model', [('rmse', 'wine-test')])]

    Returns:
        The models; None when the server has no ``logged-models/search`` (MLflow 2.x).

    Raises:
        TrackingServerError: The server refused or failed a call (its children too).
    """
    models: list[LoggedModelRecord] = []
    try:
        for start in range(0, len(experiment_ids), EXPERIMENTS_PER_SEARCH):
            batch = list(experiment_ids[start : start + EXPERIMENTS_PER_SEARCH])
            models += [logged_model_from_json(item) for item in _pages(client, batch, page_size)]
    except TrackingServerError as e:
        if is_missing_endpoint(e):
            return None
        raise
    models = in_model_order(models)
    metrics_count = sum(len(m.metrics) for m in models)
    logger.info("logged models read models=%d metrics=%d", len(models), metrics_count)
    return models


def in_model_order(models: Iterable[LoggedModelRecord]) -> list[LoggedModelRecord]:
    """``models`` sorted by experiment and model id, each one's metrics by `metric_order`:
    the order every reader of logged models returns.

    MLflow keeps a model's metrics in no order (its server sends them as its database
    scans them), so each reader sorts them, and every reader gives equal records.

    Example:
        >>> [(m.experiment_id, m.model_id) for m in in_model_order(records)]
        [('1', 'm-c'), ('2', 'm-a'), ('2', 'm-b')]
    """
    return [
        replace(m, metrics=tuple(sorted(m.metrics, key=metric_order)))
        for m in sorted(models, key=lambda m: (m.experiment_id, m.model_id))
    ]


def metric_order(metric: ModelMetric) -> tuple[int, int, str, str, str, str]:
    """The sort key of a model's metrics: time, step, key, dataset, run (MLflow's key of a
    model's metric values is model, key, time, step and run, so no two have the same).

    Example:
        >>> metric_order(ModelMetric("rmse", 0.7, 0, 1700000000000, "wine-test", "3c", "r1"))
        (1700000000000, 0, 'rmse', 'wine-test', '3c', 'r1')
    """
    return (
        -1 if metric.timestamp is None else metric.timestamp,
        metric.step,
        metric.key,
        metric.dataset_name or "",
        metric.dataset_digest or "",
        metric.run_id or "",
    )


def status_word(value: Any) -> str | None:
    """MLflow's Python word (``READY``, ``PENDING``, ``FAILED``, ``UNSPECIFIED``) for a
    logged model's status as the REST API (``LOGGED_MODEL_READY``), MLflow's entities
    (``LoggedModelStatus.READY``) or its database (``2``) give it; None for none.

    An unknown status is kept as it is (as text): a newer MLflow's word, not an error.

    Example:
        >>> [status_word(s) for s in ("LOGGED_MODEL_READY", 1, "FAILED", "")]
        ['READY', 'PENDING', 'FAILED', None]
    """
    if value is None or value == "":
        return None
    key = value if isinstance(value, int) and not isinstance(value, bool) else str(value)
    return _STATUSES.get(key, str(value))


def is_missing_endpoint(error: TrackingServerError) -> bool:
    """Whether ``error`` says the server has no such endpoint (an MLflow 2.x server:
    Flask's HTML 404, or MLflow's ``ENDPOINT_NOT_FOUND``)."""
    if isinstance(error, MalformedResponseError):
        return False
    return error.status == 404 or error.error_code == "ENDPOINT_NOT_FOUND"


def _pages(
    client: MlflowHttpClient, experiment_ids: list[str], page_size: int
) -> Iterator[Mapping[str, Any]]:
    """The ``models`` of every page of one search."""
    body: dict[str, Any] = {"experiment_ids": experiment_ids, "max_results": page_size}
    return paged_items(lambda b: client.post(SEARCH_ENDPOINT, b), body, "models", SEARCH_ENDPOINT)


def _metric(data: Mapping[str, Any]) -> ModelMetric:
    return ModelMetric(
        key=str(data["key"]),
        value=float(data["value"]),  # "NaN", "Infinity": float() reads MLflow's spellings
        step=int(data.get("step") or 0),
        timestamp=optional_int(data.get("timestamp")),
        dataset_name=data.get("dataset_name") or None,
        dataset_digest=data.get("dataset_digest") or None,
        run_id=data.get("run_id") or None,
    )


def _key_values(items: Any) -> dict[str, str]:
    return {str(item["key"]): str(item.get("value", "")) for item in items}
