"""What `FastDataframeBuilder` and `PandasDataframeBuilder` share: pulls and the best run.

A builder turns flattened runs into its kind of DataFrame (`FrameBuilder._frame`) and
picks the best row of one (`FrameBuilder._best`); the rest is here once: the source, the
job's parallel and two-ended pulls (`fetch_flat_experiments`), the metric lookup and the
"no value" error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, TypeVar

from mlflow_fun.client.sources import DEFAULT_PAGE_SIZE, RunSource, open_source
from mlflow_fun.config import DEFAULT_PARALLELISM
from mlflow_fun.errors import ConfigError, MetricNotFoundError
from mlflow_fun.flatten import FlatRuns, resolve_metric
from mlflow_fun.runs import fetch_flat_experiments, fetch_flat_runs

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
        best = self._best(self._frame(flat), column.name, ascending)
        if best is None:
            raise MetricNotFoundError(
                f"no run of experiment {experiment_id} has a value of metric {metric!r} "
                "that is not NaN"
            )
        return best

    def _flat(self, experiment_id: str) -> FlatRuns:
        return fetch_flat_runs(self.source, str(experiment_id), self.parallelism)[1]

    def _frame(self, flat: FlatRuns) -> FrameT:
        """This builder's DataFrame of ``flat``."""
        raise NotImplementedError

    def _best(self, frame: FrameT, column: str, ascending: bool) -> tuple[str, float] | None:
        """``(run_id, value)`` of the best row of ``frame`` by ``column``, or None."""
        raise NotImplementedError
