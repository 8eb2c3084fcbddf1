"""MLflow 3's logged models through a tracking server's REST API, with their metrics.

Since MLflow 3, ``log_model`` and autologging create a LoggedModel: its own params, its
tags (in ``info``, not ``data``) and its metrics, each tied to the dataset it was
measured on. ``POST logged-models/search`` lists them per experiment; an MLflow 2.x server
has no such endpoint (HTTP 404, or ``ENDPOINT_NOT_FOUND``): `read_logged_models` then
answers None, "no logged models", not an error.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
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

# The REST enum's words -> MLflow's Python words (`LoggedModelStatus`).
_STATUSES = {
    "LOGGED_MODEL_STATUS_UNSPECIFIED": "UNSPECIFIED",
    "LOGGED_MODEL_PENDING": "PENDING",
    "LOGGED_MODEL_READY": "READY",
    "LOGGED_MODEL_UPLOAD_FAILED": "FAILED",
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
        metrics: Every metric value of the model, in the server's order.
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
            status=_status(info.get("status")),
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
    """Every logged model of ``experiment_ids``, sorted by experiment and model id.

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
    models.sort(key=lambda m: (m.experiment_id, m.model_id))
    metrics_count = sum(len(m.metrics) for m in models)
    logger.info("logged models read models=%d metrics=%d", len(models), metrics_count)
    return models


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


def _status(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return _STATUSES.get(str(value), str(value))
