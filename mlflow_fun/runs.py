"""Fetch one experiment's runs from a source and flatten them."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from mlflow_fun.client.records import Experiment, fewer_collections
from mlflow_fun.client.sources import RunSource
from mlflow_fun.flatten import FlatRuns, flatten_runs
from mlflow_fun.naming import ColumnKey

logger = logging.getLogger(__name__)


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
