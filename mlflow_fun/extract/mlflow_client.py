"""Runs and experiments through ``MlflowClient``, for tracking URIs that are not HTTP."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from typing import TYPE_CHECKING, TypeVar

from mlflow_fun.errors import ExperimentNotFoundError, TrackingServerError
from mlflow_fun.extract.http import RetrySettings, strip_credentials
from mlflow_fun.extract.rest import NOT_FOUND_CODES
from mlflow_fun.extract.source import (
    DEFAULT_PAGE_SIZE,
    EXPERIMENTS_PAGE_SIZE,
    FilteredSearches,
    check_view_type,
    keys_by_run,
)
from mlflow_fun.model import (
    Experiment,
    MetricPoint,
    RunRecord,
    experiment_from_entity,
    run_from_entity,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

logger = logging.getLogger(__name__)

T = TypeVar("T")

# What the REST source retries, as MLflow's client reports it: a transport failure
# (reset, cut body, timeout), a body that is not JSON, or 429/503 (by code or status).
# MLflow's client has already retried 429/5xx answers itself (same MLFLOW_HTTP_REQUEST_*
# settings); INTERNAL_ERROR is not here: it is also the code of every MlflowException
# raised without one.
_TRANSIENT_CODES = {"TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED"}
_TRANSIENT_TEXT = re.compile(
    r"failed with (?:timeout )?exception|not in a valid JSON format|"
    r"failed with error code (?:429|5\d\d)|Max retries exceeded"
)


def is_transient(error: Exception) -> bool:
    """True for an `MlflowException` that the REST source would retry.

    Example:
        >>> is_transient(MlflowException("API request to http://h failed with exception x"))
        True
    """
    code = getattr(error, "error_code", None)
    return code in _TRANSIENT_CODES or bool(_TRANSIENT_TEXT.search(str(error)))


def call_mlflow(
    call: str, function: Callable[[], T], *, where: str, retry: RetrySettings, lookup: bool = True
) -> T:
    """``function()`` (a call of MLflow's client), retried while its failure is transient;
    else one clean error.

    Example:
        >>> call_mlflow("get_run", partial(client.get_run, run_id), where=uri, retry=retry)

    Args:
        call: The call's name, for the error and the retry lines.
        function: The call.
        where: The tracking URI (without credentials), for the error.
        retry: How often and how long to retry.
        lookup: Let "not found" failures through as they are.

    Raises:
        MlflowException: A ``lookup`` found nothing (``RESOURCE_DOES_NOT_EXIST`` and
            the like): the caller says which thing was not found.
        TrackingServerError: Any other failure, or transient ones past the budget.
    """
    from mlflow.exceptions import MlflowException

    attempt = 0
    while True:
        try:
            return function()
        except MlflowException as e:
            if lookup and e.error_code in NOT_FOUND_CODES:
                raise
            failure: Exception = e
        except Exception as e:  # a store's own errors (SQLAlchemy, files) reach us bare
            failure = e
        if not is_transient(failure) or attempt >= retry.max_retries:
            reason = (str(failure).strip().splitlines() or [type(failure).__name__])[0]
            raise TrackingServerError(
                f"MLflow's client failed at {where} ({call}): {reason[:300]}", endpoint=call
            ) from failure
        delay = retry.backoff(attempt)
        logger.info("retrying call=%s attempt=%d wait_s=%.2f", call, attempt + 1, delay)
        time.sleep(delay)
        attempt += 1


class MlflowClientSource(FilteredSearches):
    """Runs and experiments through ``mlflow.MlflowClient``.

    The default for tracking URIs that are not HTTP; it also takes HTTP URIs, where
    MLflow's own client is wanted (``mlflow-fun best --source api``).

    Every call retries what the REST source retries (a reset or cut connection, a timeout,
    a body that is not JSON, 429 and 5xx answers), with the same settings
    (``MLFLOW_HTTP_REQUEST_*``, `RetrySettings`); any other failure of MLflow's client is a
    `TrackingServerError` of one line naming the call, never a traceback.

    Args:
        tracking_uri: e.g. ``sqlite:////tmp/mlflow.db``, ``file:/tmp/mlruns`` or a URL.
        page_size: Runs per ``search_runs`` page.
        retry: Retry settings; MLflow's environment variables by default.
    """

    def __init__(
        self,
        tracking_uri: str,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        retry: RetrySettings | None = None,
    ) -> None:
        from mlflow import MlflowClient

        self.page_size = page_size
        self.tracking_uri = strip_credentials(tracking_uri)
        self.retry = retry or RetrySettings.from_env()
        self._client = self._call(
            "MlflowClient", partial(MlflowClient, tracking_uri=tracking_uri), lookup=False
        )

    def __repr__(self) -> str:
        return f"MlflowClientSource({self.tracking_uri!r})"

    def _call(self, call: str, function: Callable[[], T], *, lookup: bool = True) -> T:
        """`call_mlflow` at this source's tracking URI, with its retry settings."""
        return call_mlflow(call, function, where=self.tracking_uri, retry=self.retry, lookup=lookup)

    @property
    def client(self) -> MlflowClient:
        """MLflow's client this source calls (as `RestSource.client` is its HTTP client).

        Example:
            >>> read_logged_models_with_client(source.client, ["1"], retry=source.retry)
        """
        return self._client

    def get_experiment(self, experiment_id: str) -> Experiment:
        """Return one experiment; raise `ExperimentNotFoundError` if there is none."""
        from mlflow.exceptions import MlflowException

        try:
            experiment = self._call(
                "get_experiment", lambda: self._client.get_experiment(str(experiment_id))
            )
        except MlflowException as e:
            raise ExperimentNotFoundError(
                f"experiment id {experiment_id!r} does not exist at {self.tracking_uri}"
            ) from e
        return experiment_from_entity(experiment)

    def get_experiment_by_name(self, name: str) -> Experiment:
        """Return the experiment named ``name``; raise `ExperimentNotFoundError` if none."""
        experiment = self._call(
            "get_experiment_by_name", lambda: self._client.get_experiment_by_name(name)
        )
        if experiment is None:
            raise ExperimentNotFoundError(f"no experiment named {name!r} at {self.tracking_uri}")
        return experiment_from_entity(experiment)

    def iter_experiments(self, view_type: str = "ACTIVE_ONLY") -> Iterator[Experiment]:
        """Yield every experiment of ``view_type``."""
        from mlflow.entities import ViewType

        check_view_type(view_type)
        token = None
        while True:
            page = self._call(
                "search_experiments",
                partial(
                    self._client.search_experiments,
                    view_type=ViewType.from_string(view_type.lower()),
                    max_results=EXPERIMENTS_PAGE_SIZE,
                    page_token=token,
                ),
            )
            for experiment in page:
                yield experiment_from_entity(experiment)
            token = page.token
            if not token:
                return

    def iter_runs(
        self,
        experiment_ids: str | Sequence[str],
        *,
        run_view_type: str = "ACTIVE_ONLY",
        filter_string: str = "",
        order_by: Sequence[str] = (),
        max_results: int | None = None,
    ) -> Iterator[RunRecord]:
        """Yield runs page by page, each run once; arguments as `RestSource.iter_runs`."""
        from mlflow.entities import ViewType

        check_view_type(run_view_type)
        ids = [experiment_ids] if isinstance(experiment_ids, str) else list(experiment_ids)
        page_size = self.page_size if max_results is None else min(self.page_size, max_results)
        seen: set[str] = set()
        token = None
        while True:
            page = self._call(
                "search_runs",
                partial(
                    self._client.search_runs,
                    [str(i) for i in ids],
                    filter_string=filter_string,
                    run_view_type=ViewType.from_string(run_view_type.lower()),
                    max_results=page_size,
                    order_by=list(order_by),
                    page_token=token,
                ),
            )
            for entity in page:
                if entity.info.run_id in seen:
                    continue
                seen.add(entity.info.run_id)
                yield run_from_entity(entity)
                if max_results is not None and len(seen) >= max_results:
                    return
            token = page.token
            if not token:
                return

    def page_search(self) -> None:
        """None: this source is read by one stream per experiment."""
        return None

    def iter_metric_history(self, runs: Iterable[RunRecord]) -> Iterator[MetricPoint]:
        """Every logged value of every metric of ``runs`` (``get_metric_history``)."""
        for key, run_ids in keys_by_run(runs).items():
            for run_id in run_ids:
                history = self._call(
                    "get_metric_history",
                    partial(self._client.get_metric_history, run_id, key),
                )
                for metric in history:
                    yield MetricPoint(
                        run_id, key, float(metric.value), int(metric.step), int(metric.timestamp)
                    )
