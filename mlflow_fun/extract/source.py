"""What every source of runs offers (`RunSource`), the shared search helpers, page sizes.

The sources: `RestSource` (a tracking server's REST API), `MlflowClientSource` (tracking
URIs that are not HTTP: ``sqlite:///…``, ``file:…``, a local path) and `DatabaseSource`
(MLflow's back-end database). All hide pagination behind generators and yield the same
`RunRecord` and `Experiment` objects; `open_source` picks one for a URI::

    source = open_source("http://127.0.0.1:5000")
    for run in source.iter_runs("1"):
        ...
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Protocol

from mlflow_fun.errors import ConfigError
from mlflow_fun.model import Experiment, MetricPoint, RunRecord

logger = logging.getLogger(__name__)


DEFAULT_PAGE_SIZE = 5_000


MAX_PAGE_SIZE = 50_000


MIN_PAGE_SIZE = 100


EXPERIMENTS_PAGE_SIZE = 1_000


VIEW_TYPES = ("ACTIVE_ONLY", "DELETED_ONLY", "ALL")


RUN_IDS_PER_SEARCH = 100


_RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


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

    def iter_changed_runs(
        self, experiment_id: str, since_ms: int, settled: Mapping[str, int] | None = None
    ) -> Iterator[RunRecord]:
        """Active runs that started or ended at or after ``since_ms``, each once; those of
        ``settled`` (run id -> end time) still finished with that end time may be left out."""
        ...

    def iter_runs_by_id(
        self, experiment_id: str, run_ids: Iterable[str], run_view_type: str = "ACTIVE_ONLY"
    ) -> Iterator[RunRecord]:
        """The runs among ``run_ids`` that exist in the experiment with that view type."""
        ...

    def iter_metric_history(self, runs: Iterable[RunRecord]) -> Iterator[MetricPoint]:
        """Every logged value of every metric of ``runs``."""
        ...

    def page_search(self) -> PageSearch | None:
        """The source's ordered page search when it can be pulled from both ends, else None."""
        ...

    def indexed(
        self, experiments: int, full_pulls: Sequence[str] = ()
    ) -> AbstractContextManager[None]:
        """Around the reads of a job over ``experiments`` experiments, of which
        ``full_pulls`` are read whole, in that order: a source whose per-experiment query
        costs a scan of the store reads one index first, and reads small experiments in
        groups (`DatabaseSource`); the others read as always."""
        ...


class PageSearch(Protocol):
    """A source that can fetch one ``runs/search`` page in a given order (`RestSource`):
    what `mlflow_fun.extract.two_ended` needs to pull an experiment from both ends."""

    page_size: int

    def search_page(
        self,
        experiment_ids: Sequence[str],
        *,
        max_results: int,
        page_token: str | None = None,
        run_view_type: str = "ACTIVE_ONLY",
        filter_string: str = "",
        order_by: Sequence[str] = (),
    ) -> tuple[list[RunRecord], str | None]: ...


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


def keys_by_run(runs: Iterable[RunRecord]) -> dict[str, list[str]]:
    """metric key -> ids of the runs that have it (sorted)."""
    by_key: dict[str, list[str]] = {}
    for run in runs:
        for key in run.metrics:
            by_key.setdefault(key, []).append(run.run_id)
    return {key: sorted(ids) for key, ids in sorted(by_key.items())}


class FilteredSearches:
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

    def iter_changed_runs(
        self, experiment_id: str, since_ms: int, settled: Mapping[str, int] | None = None
    ) -> Iterator[RunRecord]:
        """Active runs that started or ended at or after ``since_ms``, each once (a search
        reads the settled runs with the others: none is left out)."""
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

    def indexed(
        self, experiments: int, full_pulls: Sequence[str] = ()
    ) -> AbstractContextManager[None]:
        """Nothing to read first: a search names one experiment's runs by itself."""
        return nullcontext()


def check_view_type(view_type: str) -> None:
    if view_type not in VIEW_TYPES:
        raise ConfigError(f"view type {view_type!r} is not one of {', '.join(VIEW_TYPES)}")
