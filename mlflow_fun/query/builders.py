"""`FastDataframeBuilder` and `PandasDataframeBuilder`: DataFrames straight from MLflow.

A builder turns flattened runs into its kind of DataFrame (`FrameBuilder._frame`); the
rest is `FrameBuilder`'s, once: the source, the job's parallel and two-ended pulls
(`fetch_flat_experiments`), the metric lookup, and the best run by the one DataFrame
engine (`mlflow_fun.query.engine.best_run_of`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Generic, TypeVar

from mlflow_fun.config import DEFAULT_PARALLELISM
from mlflow_fun.errors import ConfigError
from mlflow_fun.extract.open import open_source
from mlflow_fun.extract.source import DEFAULT_PAGE_SIZE, RunSource
from mlflow_fun.extract.two_ended import SharedPulls, TwoEndedPull, shared_pulls
from mlflow_fun.model import Experiment, RunRecord, fewer_collections
from mlflow_fun.query.engine import best_run_of
from mlflow_fun.query.model import no_value_error
from mlflow_fun.session import build_spark_session
from mlflow_fun.transform.flatten import FlatRuns, flatten_runs, resolve_metric
from mlflow_fun.transform.frames import to_pandas, to_spark

# pyspark: the optional [spark] extra, imported inside the functions that use it.
if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession

logger = logging.getLogger(__name__)


FrameT = TypeVar("FrameT")


class FrameBuilder(Generic[FrameT]):
    """Typed DataFrames of experiments' runs, straight from MLflow.

    Args:
        tracking_uri: Tracking server or store; None means ``MLFLOW_TRACKING_URI``.
        source: A ready `RunSource` (overrides ``tracking_uri``).
        page_size: Runs per ``runs/search`` page.
        parallelism: Streams pulling from the server at once, as in the job: several
            experiments at a time, and one experiment from both ends of its run-id order
            once the others are done (or once its first page is back, when alone).
    """

    def __init__(
        self,
        tracking_uri: str | None = None,
        *,
        source: RunSource | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        parallelism: int = DEFAULT_PARALLELISM,
    ) -> None:
        if parallelism < 1:
            raise ConfigError(f"parallelism {parallelism} must be at least 1")
        self.source = source or open_source(tracking_uri, page_size=page_size)
        self.parallelism = parallelism

    def build_dataframe(self, experiment_id: str) -> FrameT:
        """One row per active run of ``experiment_id``, typed as described in the README.

        Raises:
            ExperimentNotFoundError: No experiment has this id.
            TrackingServerError: The tracking server failed.
        """
        return self._frame(self._flat(experiment_id))

    def build_dataframes(self, experiment_ids: Sequence[str]) -> dict[str, FrameT]:
        """`build_dataframe` of several experiments, pulled ``parallelism`` streams at once.

        Example:
            >>> frames = builder.build_dataframes(["1", "2", "9"])
            >>> frames["2"].columns

        Returns:
            experiment id -> its DataFrame, in the order given.

        Raises:
            ExperimentNotFoundError: An id does not exist (before any run is pulled).
            TrackingServerError: The tracking server failed.
        """
        return {
            experiment.experiment_id: self._frame(flat)
            for experiment, flat in fetch_flat_experiments(
                self.source, [str(i) for i in experiment_ids], self.parallelism
            )
        }

    def get_best_run(
        self, experiment_id: str, metric: str, ascending: bool = True
    ) -> tuple[str, float]:
        """Return ``(run_id, value)`` of the run with the lowest (or highest) ``metric``.

        Runs without the metric or with NaN are skipped; ties go to the earliest
        ``start_time``, then the smallest ``run_id``.

        Args:
            experiment_id: The experiment.
            metric: ``rmse`` or ``_m_rmse``.
            ascending: True for the lowest value, False for the highest.

        Raises:
            MetricNotFoundError: No run has a non-NaN value of ``metric``.
        """
        flat = self._flat(experiment_id)
        column = resolve_metric(flat.columns, metric, str(experiment_id))
        best = best_run_of(self._frame(flat), column.name, ascending)
        if best is None:
            raise no_value_error(experiment_id, metric)
        return best

    def _flat(self, experiment_id: str) -> FlatRuns:
        return fetch_flat_runs(self.source, str(experiment_id), self.parallelism)[1]

    def _frame(self, flat: FlatRuns) -> FrameT:
        """This builder's DataFrame of ``flat``."""
        raise NotImplementedError


class PandasDataframeBuilder(FrameBuilder["pd.DataFrame"]):
    """Builds a typed pandas DataFrame of an experiment's runs straight from MLflow.

    Example:
        >>> builder = PandasDataframeBuilder("http://127.0.0.1:5000")
        >>> builder.build_dataframe("1")[["run_id", "_m_rmse", "_p_alpha"]]
        >>> builder.get_best_run("1", "rmse")
        ('5f0c…', 0.7223)

    Args: as `FrameBuilder`; dtypes as `to_pandas`.
    """

    def _frame(self, flat: FlatRuns) -> pd.DataFrame:
        return to_pandas(flat)


class FastDataframeBuilder(FrameBuilder["DataFrame"]):
    """Builds a typed Spark DataFrame of an experiment's runs straight from MLflow.

    Example:
        >>> builder = FastDataframeBuilder(spark, "http://127.0.0.1:5000")
        >>> builder.build_dataframe("1").select("run_id", "_m_rmse", "_p_alpha").show()
        >>> builder.get_best_run("1", "rmse")
        ('5f0c…', 0.7223)

    Args:
        spark: The session to use; None takes the active session or builds one.
        tracking_uri: Tracking server or store; None means ``MLFLOW_TRACKING_URI``.
        source, page_size, parallelism: As `FrameBuilder`.
    """

    def __init__(
        self,
        spark: SparkSession | None = None,
        tracking_uri: str | None = None,
        *,
        source: RunSource | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        parallelism: int = DEFAULT_PARALLELISM,
    ) -> None:
        super().__init__(tracking_uri, source=source, page_size=page_size, parallelism=parallelism)
        if spark is None:
            from pyspark.sql import SparkSession

            spark = SparkSession.getActiveSession() or build_spark_session()
        self.spark = spark

    def _frame(self, flat: FlatRuns) -> DataFrame:
        return to_spark(self.spark, flat)


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
    pulls = shared_pulls(source, after_first_page=True)
    with (
        fewer_collections(),
        ThreadPoolExecutor(max_workers=parallelism, thread_name_prefix="pull") as pool,
    ):
        # Checked by the pulls' threads, ``parallelism`` at a time; the first missing id
        # (in the order given) is raised before any run is pulled.
        experiments = list(pool.map(source.get_experiment, [str(i) for i in experiment_ids]))
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


def _pull(
    source: RunSource, pulls: SharedPulls, experiment_id: str, pull: TwoEndedPull | None
) -> list[RunRecord]:
    """Every active run of the experiment, in MLflow's default order."""
    try:
        return pull.run() if pull else list(source.iter_runs(experiment_id))
    finally:
        pulls.finish(experiment_id)
