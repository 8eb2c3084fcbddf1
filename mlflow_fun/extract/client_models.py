"""MLflow 3's logged models through ``MlflowClient.search_logged_models``.

The records `mlflow_fun.extract.logged_models.read_logged_models` gives over REST, for a
tracking URI that MLflow's client reads (a database or a server): every call retried and
its failure said in one line as `MlflowClientSource` does (`call_mlflow`)::

    source = MlflowClientSource("sqlite:////srv/mlflow.db")
    models = read_logged_models_with_client(source.client, ["1"], retry=source.retry)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from mlflow_fun.extract.http import RetrySettings, strip_credentials
from mlflow_fun.extract.logged_models import (
    EXPERIMENTS_PER_SEARCH,
    PAGE_SIZE,
    LoggedModelRecord,
    ModelMetric,
    in_model_order,
    status_word,
)
from mlflow_fun.extract.mlflow_client import call_mlflow
from mlflow_fun.model import optional_int

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import LoggedModel, Metric
    from mlflow.store.entities import PagedList

logger = logging.getLogger(__name__)


def read_logged_models_with_client(
    client: MlflowClient,
    experiment_ids: Sequence[str],
    *,
    page_size: int = PAGE_SIZE,
    retry: RetrySettings | None = None,
) -> list[LoggedModelRecord] | None:
    """Every logged model of ``experiment_ids`` through ``client.search_logged_models``:
    the records `read_logged_models` gives for the server behind it, in `in_model_order`.

    Deleted models are not listed (MLflow leaves them out). Calls are retried as
    `MlflowClientSource`'s are.

    Example:
        >>> models = read_logged_models_with_client(MlflowClient("sqlite:///mlflow.db"), ["1"])
        >>> [(m.name, m.status, [x.dataset_name for x in m.metrics]) for m in models]
        [('model', 'READY', ['wine-test'])]

    Returns:
        The models; None when there are none to read: an MLflow 2.x server (no
        ``logged-models/search``: ``ENDPOINT_NOT_FOUND``) or an MLflow 2.x client.

    Raises:
        TrackingServerError: MLflow's client failed (one line naming the call).
    """
    search = getattr(client, "search_logged_models", None)
    if search is None:  # MLflow 2.x's client has no logged models
        return None
    where = strip_credentials(str(getattr(client, "tracking_uri", "") or ""))
    settings = retry or RetrySettings.from_env()
    models: list[LoggedModelRecord] = []
    for start in range(0, len(experiment_ids), EXPERIMENTS_PER_SEARCH):
        batch = [str(i) for i in experiment_ids[start : start + EXPERIMENTS_PER_SEARCH]]
        token = None
        while True:
            page = call_mlflow(
                "search_logged_models",
                partial(_search_page, search, batch, page_size, token),
                where=where,
                retry=settings,
                lookup=False,
            )
            if page is None:
                return None
            models += [logged_model_from_entity(model) for model in page]
            token = page.token
            if not token:
                break
    models = in_model_order(models)
    metrics_count = sum(len(m.metrics) for m in models)
    logger.info("logged models read models=%d metrics=%d", len(models), metrics_count)
    return models


def is_missing_search(error: Exception) -> bool:
    """Whether MLflow's client says the server has no ``logged-models/search`` (MLflow
    2.x: Flask's HTML 404, which MLflow's client reports as ``ENDPOINT_NOT_FOUND``).

    Example:
        >>> is_missing_search(MlflowException("... failed with error code 404 != 200 ...",
        ...     error_code=ENDPOINT_NOT_FOUND))
        True
    """
    return getattr(error, "error_code", None) == "ENDPOINT_NOT_FOUND"


def logged_model_from_entity(model: LoggedModel) -> LoggedModelRecord:
    """The `LoggedModelRecord` of one of MLflow's ``LoggedModel`` entities: the record
    `logged_model_from_json` makes of the same model's JSON.

    Empty strings become None; the status is MLflow's Python word; no params, tags or
    metrics (None in the entity) are empty ones.

    Example:
        >>> logged_model_from_entity(client.get_logged_model("m-1")).status
        'READY'
    """
    return LoggedModelRecord(
        model_id=str(model.model_id),
        name=str(model.name),
        experiment_id=str(model.experiment_id),
        source_run_id=model.source_run_id or None,
        model_type=model.model_type or None,
        status=status_word(model.status),
        creation_time=optional_int(model.creation_timestamp),
        last_updated_time=optional_int(model.last_updated_timestamp),
        artifact_location=model.artifact_location or None,
        params=_texts(model.params),
        tags=_texts(model.tags),
        metrics=tuple(_model_metric(m) for m in model.metrics or ()),
    )


def _search_page(
    search: Callable[..., PagedList[LoggedModel]],
    experiment_ids: list[str],
    page_size: int,
    token: str | None,
) -> PagedList[LoggedModel] | None:
    """One page of a search; None when the server has no such search (MLflow 2.x)."""
    from mlflow.exceptions import MlflowException

    try:
        return search(experiment_ids=experiment_ids, max_results=page_size, page_token=token)
    except MlflowException as e:
        if is_missing_search(e):
            return None
        raise


def _model_metric(metric: Metric) -> ModelMetric:
    return ModelMetric(
        key=str(metric.key),
        value=float(metric.value),
        step=int(metric.step or 0),
        timestamp=optional_int(metric.timestamp),
        dataset_name=metric.dataset_name or None,
        dataset_digest=metric.dataset_digest or None,
        run_id=metric.run_id or None,
    )


def _texts(items: Mapping[str, Any] | None) -> dict[str, str]:
    return {str(k): "" if v is None else str(v) for k, v in (items or {}).items()}
