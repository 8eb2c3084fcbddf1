"""Runs and experiments through ``MlflowClient``, for tracking URIs that are not HTTP."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence

from mlflow_fun.errors import ExperimentNotFoundError
from mlflow_fun.extract.http import strip_credentials
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

logger = logging.getLogger(__name__)


class MlflowClientSource(FilteredSearches):
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
            if e.error_code not in NOT_FOUND_CODES:
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

        check_view_type(view_type)
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

        check_view_type(run_view_type)
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

    def page_search(self) -> None:
        """None: this source is read by one stream per experiment."""
        return None

    def iter_metric_history(self, runs: Iterable[RunRecord]) -> Iterator[MetricPoint]:
        """Every logged value of every metric of ``runs`` (``get_metric_history``)."""
        for key, run_ids in keys_by_run(runs).items():
            for run_id in run_ids:
                for metric in self._client.get_metric_history(run_id, key):
                    yield MetricPoint(
                        run_id, key, float(metric.value), int(metric.step), int(metric.timestamp)
                    )
