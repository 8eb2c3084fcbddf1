"""Where runs come from: the REST API of a tracking server, or ``MlflowClient`` for
tracking URIs that are not HTTP (``sqlite:///…``, ``file:…``, a local path).

Both sources hide pagination behind generators and yield the same `RunRecord` and
`Experiment` objects::

    source = open_source("http://127.0.0.1:5000")
    for run in source.iter_runs("1"):
        ...
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from mlflow_fun.client.http_client import (
    AJAX_PREFIX,
    MlflowHttpClient,
    RetrySettings,
    strip_credentials,
)
from mlflow_fun.client.records import (
    Experiment,
    MetricPoint,
    RunRecord,
    experiment_from_entity,
    experiment_from_json,
    fewer_collections,
    metric_point_from_json,
    run_from_entity,
    run_from_json,
)
from mlflow_fun.errors import (
    ConfigError,
    ExperimentNotFoundError,
    MalformedResponseError,
    ServerUnreachableError,
    TrackingServerError,
)

logger = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 5_000
MAX_PAGE_SIZE = 50_000
MIN_PAGE_SIZE = 100
EXPERIMENTS_PAGE_SIZE = 1_000
VIEW_TYPES = ("ACTIVE_ONLY", "DELETED_ONLY", "ALL")
RUN_IDS_PER_SEARCH = 100
HISTORY_BULK_MAX = 25_000  # MLflow's cap on one get-history-bulk answer
_RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_NOT_FOUND_CODES = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}


class RunSource(Protocol):
    """What every source of MLflow runs offers."""

    tracking_uri: str

    def get_experiment(self, experiment_id: str) -> Experiment: ...

    def get_experiment_by_name(self, name: str) -> Experiment: ...

    def iter_experiments(self, view_type: str = "ACTIVE_ONLY") -> Iterator[Experiment]: ...

    def iter_runs(
        self,
        experiment_ids: str | Sequence[str],
        *,
        run_view_type: str = "ACTIVE_ONLY",
        filter_string: str = "",
        order_by: Sequence[str] = (),
        max_results: int | None = None,
    ) -> Iterator[RunRecord]: ...

    def iter_changed_runs(self, experiment_id: str, since_ms: int) -> Iterator[RunRecord]:
        """Active runs that started or ended at or after ``since_ms``, each once."""
        ...

    def iter_runs_by_id(
        self, experiment_id: str, run_ids: Iterable[str], run_view_type: str = "ACTIVE_ONLY"
    ) -> Iterator[RunRecord]:
        """The runs among ``run_ids`` that exist in the experiment with that view type."""
        ...

    def iter_metric_history(self, runs: Iterable[RunRecord]) -> Iterator[MetricPoint]:
        """Every logged value of every metric of ``runs``."""
        ...


def changed_since_filters(since_ms: int) -> tuple[str, str]:
    """MLflow filters for runs started, and runs ended, at or after ``since_ms``.

    MLflow's search has no OR, so "started or ended since" takes two searches.
    """
    return (f"attributes.start_time >= {int(since_ms)}", f"attributes.end_time >= {int(since_ms)}")


def run_id_filters(run_ids: Iterable[str]) -> Iterator[str]:
    """``attributes.run_id IN (...)`` filters, `RUN_IDS_PER_SEARCH` ids each.

    Raises:
        ConfigError: An id that is not a run id (MLflow's are 32 hex digits).
    """
    ids = sorted(set(run_ids))
    for run_id in ids:
        if not _RUN_ID.fullmatch(run_id):
            raise ConfigError(f"{run_id!r} is not a run id")
    for start in range(0, len(ids), RUN_IDS_PER_SEARCH):
        quoted = ", ".join(f"'{run_id}'" for run_id in ids[start : start + RUN_IDS_PER_SEARCH])
        yield f"attributes.run_id IN ({quoted})"


def unique_runs(searches: Iterable[Iterable[RunRecord]]) -> Iterator[RunRecord]:
    """The runs of several searches, each once (the first time it comes)."""
    seen: set[str] = set()
    for search in searches:
        for run in search:
            if run.run_id not in seen:
                seen.add(run.run_id)
                yield run


def _keys_by_run(runs: Iterable[RunRecord]) -> dict[str, list[str]]:
    """metric key -> ids of the runs that have it (sorted)."""
    by_key: dict[str, list[str]] = {}
    for run in runs:
        for key in run.metrics:
            by_key.setdefault(key, []).append(run.run_id)
    return {key: sorted(ids) for key, ids in sorted(by_key.items())}


class _FilteredSearches:
    """`iter_changed_runs` and `iter_runs_by_id` made of ``iter_runs`` filters."""

    def iter_runs(
        self,
        experiment_ids: str | Sequence[str],
        *,
        run_view_type: str = "ACTIVE_ONLY",
        filter_string: str = "",
        order_by: Sequence[str] = (),
        max_results: int | None = None,
    ) -> Iterator[RunRecord]:
        raise NotImplementedError

    def iter_changed_runs(self, experiment_id: str, since_ms: int) -> Iterator[RunRecord]:
        """Active runs that started or ended at or after ``since_ms``, each once."""
        return unique_runs(
            self.iter_runs(experiment_id, filter_string=f) for f in changed_since_filters(since_ms)
        )

    def iter_runs_by_id(
        self, experiment_id: str, run_ids: Iterable[str], run_view_type: str = "ACTIVE_ONLY"
    ) -> Iterator[RunRecord]:
        """The runs among ``run_ids`` that exist in the experiment with that view type."""
        return unique_runs(
            self.iter_runs(experiment_id, filter_string=f, run_view_type=run_view_type)
            for f in run_id_filters(run_ids)
        )


def resolve_tracking_uri(tracking_uri: str | None) -> str:
    """Return ``tracking_uri``, else ``MLFLOW_TRACKING_URI``, else MLflow's default."""
    if tracking_uri:
        return tracking_uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    import mlflow

    return str(mlflow.get_tracking_uri())


def open_source(
    tracking_uri: str | None = None,
    *,
    page_size: int = DEFAULT_PAGE_SIZE,
    env: Mapping[str, str] | None = None,
) -> RunSource:
    """Open the right source for ``tracking_uri``.

    Example:
        >>> source = open_source("http://127.0.0.1:5000")
        >>> [e.name for e in source.iter_experiments()]

    Args:
        tracking_uri: An ``http(s)://`` URL, ``databricks``, or any URI ``MlflowClient``
            accepts. None means ``MLFLOW_TRACKING_URI`` or MLflow's default.
        page_size: Runs asked for per ``runs/search`` page (1 to 50,000).
        env: Where credentials are read from; ``os.environ`` by default.

    Raises:
        ConfigError: The page size is out of range, or Databricks settings are missing.
    """
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ConfigError(f"page_size={page_size} must be between 1 and {MAX_PAGE_SIZE}")
    env = os.environ if env is None else env
    uri = resolve_tracking_uri(tracking_uri)
    scheme = uri.split(":", 1)[0].lower()
    if scheme in ("http", "https"):
        client = MlflowHttpClient(
            uri,
            token=env.get("MLFLOW_TRACKING_TOKEN") or None,
            username=env.get("MLFLOW_TRACKING_USERNAME") or None,
            password=env.get("MLFLOW_TRACKING_PASSWORD") or None,
            verify=not _env_true(env.get("MLFLOW_TRACKING_INSECURE_TLS")),
            retry=RetrySettings.from_env(env),
        )
        return RestSource(client, page_size=page_size)
    if scheme == "databricks":
        host, token = env.get("DATABRICKS_HOST"), env.get("DATABRICKS_TOKEN")
        if not host or not token:
            raise ConfigError(
                "tracking URI 'databricks' needs DATABRICKS_HOST and DATABRICKS_TOKEN "
                "in the environment"
            )
        client = MlflowHttpClient(host, token=token, retry=RetrySettings.from_env(env))
        return RestSource(client, page_size=page_size)
    return MlflowClientSource(uri, page_size=page_size)


def _env_true(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes")


class RestSource(_FilteredSearches):
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
            if e.error_code in _NOT_FOUND_CODES or e.status == 404:
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
            if e.error_code in _NOT_FOUND_CODES or e.status == 404:
                raise ExperimentNotFoundError(
                    f"no experiment named {name!r} at {self.tracking_uri}"
                ) from e
            raise
        return experiment_from_json(_field(data, "experiment", "experiments/get-by-name"))

    def iter_experiments(self, view_type: str = "ACTIVE_ONLY") -> Iterator[Experiment]:
        """Yield every experiment of ``view_type``, page by page."""
        _check_view_type(view_type)
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
        _check_view_type(run_view_type)
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
        _check_view_type(run_view_type)
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
            except ServerUnreachableError:
                if page_size <= MIN_PAGE_SIZE:
                    raise
                page_size = max(MIN_PAGE_SIZE, page_size // 2)
                logger.warning("page dropped; retrying with page_size=%d", page_size)

    def iter_metric_history(self, runs: Iterable[RunRecord]) -> Iterator[MetricPoint]:
        """Every logged value of every metric of ``runs``.

        Uses MLflow's bulk endpoint (100 runs and one key per call) where the server has
        it; an answer at the bulk cap, or a server without the endpoint, falls back to
        the paginated ``metrics/get-history`` per run.
        """
        for key, run_ids in _keys_by_run(runs).items():
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


class MlflowClientSource(_FilteredSearches):
    """Runs and experiments through ``mlflow.MlflowClient``.

    The default for tracking URIs that are not HTTP; it also takes HTTP URIs, where
    MLflow's own client is wanted (``mlflow-fun best --source api``).

    Args:
        tracking_uri: e.g. ``sqlite:////tmp/mlflow.db``, ``file:/tmp/mlruns`` or a URL.
        page_size: Runs per ``search_runs`` page.
    """

    def __init__(self, tracking_uri: str, *, page_size: int = DEFAULT_PAGE_SIZE) -> None:
        from mlflow import MlflowClient

        self._client = MlflowClient(tracking_uri=tracking_uri)
        self.page_size = page_size
        self.tracking_uri = strip_credentials(tracking_uri)

    def __repr__(self) -> str:
        return f"MlflowClientSource({self.tracking_uri!r})"

    def get_experiment(self, experiment_id: str) -> Experiment:
        """Return one experiment; raise `ExperimentNotFoundError` if there is none."""
        from mlflow.exceptions import MlflowException

        try:
            return experiment_from_entity(self._client.get_experiment(str(experiment_id)))
        except MlflowException as e:
            if e.error_code not in _NOT_FOUND_CODES:
                raise
            raise ExperimentNotFoundError(
                f"experiment id {experiment_id!r} does not exist at {self.tracking_uri}"
            ) from e

    def get_experiment_by_name(self, name: str) -> Experiment:
        """Return the experiment named ``name``; raise `ExperimentNotFoundError` if none."""
        experiment = self._client.get_experiment_by_name(name)
        if experiment is None:
            raise ExperimentNotFoundError(f"no experiment named {name!r} at {self.tracking_uri}")
        return experiment_from_entity(experiment)

    def iter_experiments(self, view_type: str = "ACTIVE_ONLY") -> Iterator[Experiment]:
        """Yield every experiment of ``view_type``."""
        from mlflow.entities import ViewType

        _check_view_type(view_type)
        token = None
        while True:
            page = self._client.search_experiments(
                view_type=ViewType.from_string(view_type.lower()),
                max_results=EXPERIMENTS_PAGE_SIZE,
                page_token=token,
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

        _check_view_type(run_view_type)
        ids = [experiment_ids] if isinstance(experiment_ids, str) else list(experiment_ids)
        page_size = self.page_size if max_results is None else min(self.page_size, max_results)
        seen: set[str] = set()
        token = None
        while True:
            page = self._client.search_runs(
                [str(i) for i in ids],
                filter_string=filter_string,
                run_view_type=ViewType.from_string(run_view_type.lower()),
                max_results=page_size,
                order_by=list(order_by),
                page_token=token,
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

    def iter_metric_history(self, runs: Iterable[RunRecord]) -> Iterator[MetricPoint]:
        """Every logged value of every metric of ``runs`` (``get_metric_history``)."""
        for key, run_ids in _keys_by_run(runs).items():
            for run_id in run_ids:
                for metric in self._client.get_metric_history(run_id, key):
                    yield MetricPoint(
                        run_id, key, float(metric.value), int(metric.step), int(metric.timestamp)
                    )


def _check_view_type(view_type: str) -> None:
    if view_type not in VIEW_TYPES:
        raise ConfigError(f"view type {view_type!r} is not one of {', '.join(VIEW_TYPES)}")


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
