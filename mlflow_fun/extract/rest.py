"""Runs and experiments through a tracking server's REST API."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from mlflow_fun.errors import (
    ExperimentNotFoundError,
    MalformedResponseError,
    ServerUnreachableError,
    TrackingServerError,
)
from mlflow_fun.extract.http import AJAX_PREFIX, MlflowHttpClient
from mlflow_fun.extract.http_failures import no_connection
from mlflow_fun.extract.source import (
    DEFAULT_PAGE_SIZE,
    EXPERIMENTS_PAGE_SIZE,
    MIN_PAGE_SIZE,
    RUN_IDS_PER_SEARCH,
    FilteredSearches,
    check_view_type,
    keys_by_run,
)
from mlflow_fun.model import (
    Experiment,
    MetricPoint,
    RunRecord,
    experiment_from_json,
    fewer_collections,
    metric_point_from_json,
    run_from_json,
)

logger = logging.getLogger(__name__)


HISTORY_BULK_MAX = 25_000  # MLflow's cap on one get-history-bulk answer


NOT_FOUND_CODES = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}


class RestSource(FilteredSearches):
    """Runs and experiments through a tracking server's REST API.

    Args:
        client: The HTTP client (base URL, auth, retries).
        page_size: Runs per ``runs/search`` page. A page that drops twice is asked for
            again at half the size, down to 100 runs.
    """

    def __init__(self, client: MlflowHttpClient, *, page_size: int = DEFAULT_PAGE_SIZE) -> None:
        self.client = client
        self.page_size = page_size
        self.tracking_uri = client.base_url
        self._bulk_history = True

    def __repr__(self) -> str:
        return f"RestSource({self.tracking_uri!r}, page_size={self.page_size})"

    def get_experiment(self, experiment_id: str) -> Experiment:
        """Return one experiment; raise `ExperimentNotFoundError` if there is none."""
        try:
            data = self.client.get("experiments/get", {"experiment_id": str(experiment_id)})
        except TrackingServerError as e:
            if e.error_code in NOT_FOUND_CODES or e.status == 404:
                raise ExperimentNotFoundError(
                    f"experiment id {experiment_id!r} does not exist at {self.tracking_uri}; "
                    "`mlflow experiments search` lists the ids"
                ) from e
            raise
        return experiment_from_json(_field(data, "experiment", "experiments/get"))

    def get_experiment_by_name(self, name: str) -> Experiment:
        """Return the experiment named ``name``; raise `ExperimentNotFoundError` if none."""
        try:
            data = self.client.get("experiments/get-by-name", {"experiment_name": name})
        except TrackingServerError as e:
            if e.error_code in NOT_FOUND_CODES or e.status == 404:
                raise ExperimentNotFoundError(
                    f"no experiment named {name!r} at {self.tracking_uri}"
                ) from e
            raise
        return experiment_from_json(_field(data, "experiment", "experiments/get-by-name"))

    def iter_experiments(self, view_type: str = "ACTIVE_ONLY") -> Iterator[Experiment]:
        """Yield every experiment of ``view_type``, page by page."""
        check_view_type(view_type)
        body: dict[str, Any] = {"max_results": EXPERIMENTS_PAGE_SIZE, "view_type": view_type}
        while True:
            page = self.client.post("experiments/search", body)
            for item in page.get("experiments", ()):
                yield experiment_from_json(item)
            token = page.get("next_page_token")
            if not token:
                return
            body["page_token"] = token

    def iter_runs(
        self,
        experiment_ids: str | Sequence[str],
        *,
        run_view_type: str = "ACTIVE_ONLY",
        filter_string: str = "",
        order_by: Sequence[str] = (),
        max_results: int | None = None,
    ) -> Iterator[RunRecord]:
        """Yield runs page by page, each run once (by ``run_id``) even if pages shift.

        Args:
            experiment_ids: One id or several.
            run_view_type: ``ACTIVE_ONLY`` (default), ``DELETED_ONLY`` or ``ALL``.
            filter_string: MLflow's search filter.
            order_by: MLflow ``order_by`` clauses.
            max_results: Stop after this many runs; None for all.
        """
        check_view_type(run_view_type)
        ids = [experiment_ids] if isinstance(experiment_ids, str) else list(experiment_ids)
        page_size = self.page_size if max_results is None else min(self.page_size, max_results)
        body = _search_body(ids, run_view_type, filter_string, order_by)
        seen: set[str] = set()
        while True:
            page, page_size = self._post_page(body, page_size)
            for run in _page_runs(page):
                if run.run_id in seen:
                    continue
                seen.add(run.run_id)
                yield run
                if max_results is not None and len(seen) >= max_results:
                    return
            token = page.get("next_page_token")
            if not token:
                return
            body["page_token"] = token

    def page_search(self) -> RestSource:
        """This source: ``runs/search`` pages can be asked for in either order."""
        return self

    def search_page(
        self,
        experiment_ids: Sequence[str],
        *,
        max_results: int,
        page_token: str | None = None,
        run_view_type: str = "ACTIVE_ONLY",
        filter_string: str = "",
        order_by: Sequence[str] = (),
    ) -> tuple[list[RunRecord], str | None]:
        """One ``runs/search`` page: its runs and the token of the next page (None at the end).

        A page that drops twice is asked for again at half the size, down to 100 runs, so
        a page may hold fewer than ``max_results`` runs while more follow.
        """
        check_view_type(run_view_type)
        body = _search_body(experiment_ids, run_view_type, filter_string, order_by)
        if page_token:
            body["page_token"] = page_token
        page, _ = self._post_page(body, max_results)
        return _page_runs(page), page.get("next_page_token") or None

    def _post_page(self, body: dict[str, Any], page_size: int) -> tuple[dict[str, Any], int]:
        """One ``runs/search`` answer, and the page size that got it (halved per drop)."""
        while True:
            body["max_results"] = page_size
            try:
                # A page of 1,000 runs or more keeps a server worker busy for a second or
                # so: a new connection per page lets an idle worker of a multi-worker
                # server take it (issue 8). Small pages keep the connection.
                page = self.client.post("runs/search", body, close_connection=page_size >= 1_000)
                return page, page_size
            except ServerUnreachableError as e:
                # A smaller page helps a server that drops or stalls on a big one, not one
                # that is gone (each halving would wait through the retries again).
                if page_size <= MIN_PAGE_SIZE or no_connection(e.__cause__):
                    raise
                page_size = max(MIN_PAGE_SIZE, page_size // 2)
                logger.warning("page dropped; retrying with page_size=%d", page_size)

    def iter_metric_history(self, runs: Iterable[RunRecord]) -> Iterator[MetricPoint]:
        """Every logged value of every metric of ``runs``.

        Uses MLflow's bulk endpoint (100 runs and one key per call) where the server has
        it; an answer at the bulk cap, or a server without the endpoint, falls back to
        the paginated ``metrics/get-history`` per run.
        """
        for key, run_ids in keys_by_run(runs).items():
            for start in range(0, len(run_ids), RUN_IDS_PER_SEARCH):
                batch = run_ids[start : start + RUN_IDS_PER_SEARCH]
                points = self._bulk(batch, key)
                if points is not None:
                    yield from points
                    continue
                for run_id in batch:
                    yield from self._history(run_id, key)

    def _bulk(self, run_ids: Sequence[str], key: str) -> list[MetricPoint] | None:
        if not self._bulk_history:
            return None
        params = {"run_id": list(run_ids), "metric_key": key, "max_results": HISTORY_BULK_MAX}
        try:
            data = self.client.get("metrics/get-history-bulk", params, prefix=AJAX_PREFIX)
        except TrackingServerError as e:
            if e.status not in (404, 405):
                raise
            logger.info("no bulk metric history at %s; asking run by run", self.tracking_uri)
            self._bulk_history = False
            return None
        items = data.get("metrics", [])
        if not isinstance(items, list):
            raise MalformedResponseError(
                "get-history-bulk sent 'metrics' that is not a list",
                endpoint="metrics/get-history-bulk",
            )
        if len(items) >= HISTORY_BULK_MAX:
            return None
        return [metric_point_from_json("", item) for item in items]

    def _history(self, run_id: str, key: str) -> Iterator[MetricPoint]:
        params: dict[str, Any] = {
            "run_id": run_id,
            "metric_key": key,
            "max_results": HISTORY_BULK_MAX,
        }
        while True:
            page = self.client.get("metrics/get-history", params)
            for item in page.get("metrics", ()):
                yield metric_point_from_json(run_id, item)
            token = page.get("next_page_token")
            if not token:
                return
            params["page_token"] = token


def _field(data: Mapping[str, Any], name: str, endpoint: str) -> Any:
    if name not in data:
        raise MalformedResponseError(f"{endpoint} sent no {name!r}", endpoint=endpoint)
    return data[name]


def _search_body(
    experiment_ids: Sequence[str], run_view_type: str, filter_string: str, order_by: Sequence[str]
) -> dict[str, Any]:
    return {
        "experiment_ids": [str(i) for i in experiment_ids],
        "filter": filter_string,
        "run_view_type": run_view_type,
        "order_by": list(order_by),
    }


def _page_runs(page: dict[str, Any]) -> list[RunRecord]:
    runs = page.get("runs", [])
    if not isinstance(runs, list):
        raise MalformedResponseError(
            "runs/search sent 'runs' that is not a list", endpoint="runs/search"
        )
    with fewer_collections():
        return [run_from_json(item) for item in runs]
