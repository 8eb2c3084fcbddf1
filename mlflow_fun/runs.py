"""Fetch experiments' runs from a source and flatten them, at the server's limit."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from mlflow_fun.client.records import Experiment, RunRecord, fewer_collections
from mlflow_fun.client.sources import RestSource, RunSource
from mlflow_fun.client.two_ended import SharedPulls, TwoEndedPull
from mlflow_fun.config import DEFAULT_PARALLELISM
from mlflow_fun.errors import ConfigError
from mlflow_fun.flatten import FlatRuns, flatten_runs

logger = logging.getLogger(__name__)


def fetch_flat_runs(
    source: RunSource, experiment_id: str, parallelism: int = DEFAULT_PARALLELISM
) -> tuple[Experiment, FlatRuns]:
    """Check that the experiment exists, pull its active runs and flatten them.

    The pull is `fetch_flat_experiments`' for one experiment: on a tracking server, a
    second stream joins from the other end once the first page is back.

    Example:
        >>> experiment, flat = fetch_flat_runs(open_source(uri), "1")

    Raises:
        ExperimentNotFoundError: No experiment has this id.
        TrackingServerError: The server failed (after retries).
    """
    ((experiment, flat),) = fetch_flat_experiments(source, [str(experiment_id)], parallelism)
    return experiment, flat


def fetch_flat_experiments(
    source: RunSource, experiment_ids: Sequence[str], parallelism: int = DEFAULT_PARALLELISM
) -> Iterator[tuple[Experiment, FlatRuns]]:
    """Like `fetch_flat_runs` for several experiments, pulled as the job pulls them.

    Every id is checked first. Then up to ``parallelism`` experiments are pulled at once;
    once the last one has started, a free stream joins a pull still running from its
    other end (`TwoEndedPull`, tracking servers only), so one experiment alone is pulled
    by two streams too. Each experiment is flattened while the next ones are pulled.

    Example:
        >>> for experiment, flat in fetch_flat_experiments(open_source(uri), ["1", "2"]):
        ...     print(experiment.name, flat.num_rows)

    Yields:
        ``(experiment, flattened runs)`` in the order of ``experiment_ids``.

    Raises:
        ConfigError: ``parallelism`` is below 1.
        ExperimentNotFoundError: An id does not exist (before any run is pulled).
        TrackingServerError: The server failed (after retries).
    """
    if parallelism < 1:
        raise ConfigError(f"parallelism {parallelism} must be at least 1")
    experiments = [source.get_experiment(str(i)) for i in experiment_ids]
    pulls = shared_pulls(source, after_first_page=True)
    with (
        fewer_collections(),
        ThreadPoolExecutor(max_workers=parallelism, thread_name_prefix="pull") as pool,
    ):
        # Registered before they are queued, so an assist queued after them misses none.
        registered = [(e.experiment_id, pulls.register(e.experiment_id)) for e in experiments]
        futures = [pool.submit(_pull, source, pulls, eid, pull) for eid, pull in registered]
        for _ in range(parallelism - 1):  # queued last: they start once every pull has
            pool.submit(pulls.assist)
        try:
            for experiment, future in zip(experiments, futures, strict=True):
                started = time.monotonic()
                flat = flatten_runs(future.result())
                logger.info(
                    "fetched experiment_id=%s runs=%d columns=%d flatten_seconds=%.2f",
                    experiment.experiment_id,
                    flat.num_rows,
                    len(flat.columns),
                    time.monotonic() - started,
                )
                yield experiment, flat
        finally:
            for future in futures:
                future.cancel()


def shared_pulls(source: RunSource, *, after_first_page: bool = False) -> SharedPulls:
    """The `SharedPulls` of ``source``: two-ended on a tracking server, else nothing shared."""
    if isinstance(source, RestSource):
        return SharedPulls(source, source.page_size, after_first_page=after_first_page)
    return SharedPulls(None, 0)


def _pull(
    source: RunSource, pulls: SharedPulls, experiment_id: str, pull: TwoEndedPull | None
) -> list[RunRecord]:
    """Every active run of the experiment, in MLflow's default order."""
    try:
        return pull.run() if pull else list(source.iter_runs(experiment_id))
    finally:
        pulls.finish(experiment_id)
