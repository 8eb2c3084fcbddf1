"""Fetch one experiment's runs from a source and flatten them."""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
from collections.abc import Iterator, Mapping

from mlflow_fun.client.records import Experiment
from mlflow_fun.client.sources import RunSource
from mlflow_fun.flatten import FlatRuns, flatten_runs
from mlflow_fun.naming import ColumnKey

logger = logging.getLogger(__name__)

YOUNG_THRESHOLD = 50_000  # allocations between young collections while runs are pulled
_collections_lock = threading.Lock()
_collections_users = 0
_saved_threshold: tuple[int, ...] = ()


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    """Run the block with CPython's young-generation threshold at `YOUNG_THRESHOLD`.

    Pulling runs builds millions of small objects that live on (records, dicts) and form
    no cycles; at the default threshold (700) the collector scans them over and over,
    which measured about half of the CPU of decoding a page of runs. Nested and
    concurrent blocks share one setting; the last one out restores the previous one.
    """
    global _collections_users, _saved_threshold
    with _collections_lock:
        if _collections_users == 0:
            _saved_threshold = gc.get_threshold()
            gc.set_threshold(max(YOUNG_THRESHOLD, _saved_threshold[0]), *_saved_threshold[1:])
        _collections_users += 1
    try:
        yield
    finally:
        with _collections_lock:
            _collections_users -= 1
            if _collections_users == 0:
                gc.set_threshold(*_saved_threshold)


def fetch_flat_runs(
    source: RunSource,
    experiment_id: str,
    previous_names: Mapping[ColumnKey, str] | None = None,
) -> tuple[Experiment, FlatRuns]:
    """Check that the experiment exists, pull its active runs and flatten them.

    Example:
        >>> experiment, flat = fetch_flat_runs(open_source(uri), "1")

    Raises:
        ExperimentNotFoundError: No experiment has this id.
        TrackingServerError: The server failed (after retries).
    """
    started = time.monotonic()
    experiment = source.get_experiment(str(experiment_id))
    with fewer_collections():
        flat = flatten_runs(source.iter_runs(experiment.experiment_id), previous_names)
    logger.info(
        "fetched experiment_id=%s runs=%d columns=%d seconds=%.2f",
        experiment.experiment_id,
        flat.num_rows,
        len(flat.columns),
        time.monotonic() - started,
    )
    return experiment, flat
