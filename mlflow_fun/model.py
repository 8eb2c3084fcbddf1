"""Plain records for experiments and runs, built from REST JSON or MLflow entities.

A `RunRecord` is what a page of ``runs/search`` is reduced to as soon as it arrives: the
run info plus three small dicts. Both sources (REST and ``MlflowClient``) produce the
same records, so everything downstream is source-agnostic.
"""

from __future__ import annotations

import contextlib
import gc
import math
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from mlflow_fun.errors import MalformedResponseError

_NON_FINITE = {"nan": math.nan, "infinity": math.inf, "-infinity": -math.inf, "inf": math.inf}


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


@dataclass(frozen=True)
class Experiment:
    """One MLflow experiment, as listed by ``experiments/search``."""

    experiment_id: str
    name: str
    lifecycle_stage: str = "active"
    artifact_location: str | None = None
    creation_time: int | None = None
    last_update_time: int | None = None
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)  # no __dict__ for each run held
class RunRecord:
    """One MLflow run: info, latest metric values, params and tags.

    Attributes:
        run_id: The run's id (MLflow's ``run_uuid`` too).
        info: Info fields: ``run_name``, ``experiment_id``, ``user_id``, ``status``,
            ``lifecycle_stage``, ``start_time`` and ``end_time`` (epoch milliseconds or
            None), ``artifact_uri``.
        metrics: metric key -> latest value (NaN and infinities kept).
        params: param key -> value, as the string MLflow stores.
        tags: tag key -> value.
        inputs: The datasets the run logged as inputs (``mlflow.log_input``), sorted
            (`sorted_inputs`), so every source gives the same record.
    """

    run_id: str
    info: Mapping[str, Any]
    metrics: Mapping[str, float]
    params: Mapping[str, str]
    tags: Mapping[str, str]
    inputs: tuple[DatasetInput, ...] = ()


# The input tag MLflow sets to the dataset's role: "train", "eval", "test", ...
CONTEXT_TAG = "mlflow.data.context"


@dataclass(frozen=True)
class DatasetInput:
    """One dataset a run logged as input (a row of ``<database>.run_inputs``)."""

    name: str
    digest: str
    source_type: str
    context: str | None = None


def sorted_inputs(inputs: Iterable[DatasetInput]) -> tuple[DatasetInput, ...]:
    """``inputs`` in one order whatever the source: by name, digest, source type, context."""
    return tuple(sorted(inputs, key=lambda i: (i.name, i.digest, i.source_type, i.context or "")))


def dataset_inputs_from_json(inputs: Mapping[str, Any] | None) -> tuple[DatasetInput, ...]:
    """The `DatasetInput`s of a run's ``inputs`` JSON (``runs/search``, ``runs/get``)."""
    found = []
    for item in (inputs or {}).get("dataset_inputs") or ():
        dataset = item["dataset"]
        tags = {t["key"]: t.get("value") for t in item.get("tags") or ()}
        found.append(
            DatasetInput(
                name=str(dataset["name"]),
                digest=str(dataset["digest"]),
                source_type=str(dataset.get("source_type", "")),
                context=tags.get(CONTEXT_TAG),
            )
        )
    return sorted_inputs(found)


@dataclass(frozen=True)
class MetricPoint:
    """One logged value of a metric (a row of ``<database>.metric_history``)."""

    run_id: str
    key: str
    value: float
    step: int
    timestamp: int


def metric_value(value: Any) -> float:
    """Turn a metric value from JSON into a float (the server sends NaN as ``"NaN"``)."""
    if isinstance(value, str):
        special = _NON_FINITE.get(value.strip().lower())
        if special is not None:
            return special
    return float(value)


def experiment_from_json(data: Mapping[str, Any]) -> Experiment:
    """Build an `Experiment` from an ``experiments/search`` or ``experiments/get`` item."""
    try:
        return Experiment(
            experiment_id=str(data["experiment_id"]),
            name=str(data["name"]),
            lifecycle_stage=str(data.get("lifecycle_stage", "active")),
            artifact_location=data.get("artifact_location"),
            creation_time=optional_int(data.get("creation_time")),
            last_update_time=optional_int(data.get("last_update_time")),
            tags={t["key"]: t.get("value", "") for t in data.get("tags", [])},
        )
    except (KeyError, TypeError, ValueError) as e:
        raise MalformedResponseError(f"unexpected experiment JSON: missing or bad {e}") from e


def run_from_json(data: Mapping[str, Any]) -> RunRecord:
    """Build a `RunRecord` from one run of a ``runs/search`` page.

    Raises:
        MalformedResponseError: The JSON lacks the run's id or holds a value of a wrong type.
    """
    try:
        info = data["info"]
        run_data = data.get("data", {})
        run_id = str(info.get("run_id") or info["run_uuid"])
        return RunRecord(
            run_id=run_id,
            info={
                "run_name": info.get("run_name"),
                "experiment_id": str(info["experiment_id"]),
                "user_id": info.get("user_id"),
                "status": info.get("status"),
                "lifecycle_stage": info.get("lifecycle_stage"),
                "start_time": optional_int(info.get("start_time")),
                "end_time": optional_int(info.get("end_time")),
                "artifact_uri": info.get("artifact_uri"),
            },
            metrics={m["key"]: metric_value(m.get("value")) for m in run_data.get("metrics", ())},
            params={p["key"]: str(p.get("value", "")) for p in run_data.get("params", ())},
            tags={t["key"]: str(t.get("value", "")) for t in run_data.get("tags", ())},
            inputs=dataset_inputs_from_json(data.get("inputs")),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise MalformedResponseError(f"unexpected run JSON: missing or bad {e}") from e


def run_from_entity(run: Any) -> RunRecord:
    """Build a `RunRecord` from an ``mlflow.entities.Run``."""
    info = run.info
    return RunRecord(
        run_id=info.run_id,
        info={
            "run_name": info.run_name,
            "experiment_id": str(info.experiment_id),
            "user_id": info.user_id,
            "status": info.status,
            "lifecycle_stage": info.lifecycle_stage,
            "start_time": optional_int(info.start_time),
            "end_time": optional_int(info.end_time),
            "artifact_uri": info.artifact_uri,
        },
        metrics={key: float(value) for key, value in run.data.metrics.items()},
        params={key: str(value) for key, value in run.data.params.items()},
        tags={key: str(value) for key, value in run.data.tags.items()},
        inputs=sorted_inputs(
            DatasetInput(
                name=item.dataset.name,
                digest=item.dataset.digest,
                source_type=item.dataset.source_type,
                context={t.key: t.value for t in item.tags}.get(CONTEXT_TAG),
            )
            for item in (run.inputs.dataset_inputs if run.inputs else ())
        ),
    )


def metric_point_from_json(run_id: str, data: Mapping[str, Any]) -> MetricPoint:
    """Build a `MetricPoint` from one item of ``metrics/get-history`` (or the bulk one)."""
    try:
        return MetricPoint(
            run_id=str(data.get("run_id") or run_id),
            key=str(data["key"]),
            value=metric_value(data.get("value")),
            step=int(data.get("step", 0) or 0),
            timestamp=int(data.get("timestamp", 0) or 0),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise MalformedResponseError(f"unexpected metric JSON: missing or bad {e}") from e


def experiment_from_entity(experiment: Any) -> Experiment:
    """Build an `Experiment` from an ``mlflow.entities.Experiment``."""
    return Experiment(
        experiment_id=str(experiment.experiment_id),
        name=experiment.name,
        lifecycle_stage=experiment.lifecycle_stage,
        artifact_location=experiment.artifact_location,
        creation_time=optional_int(experiment.creation_time),
        last_update_time=optional_int(experiment.last_update_time),
        tags=dict(experiment.tags),
    )


def optional_int(value: Any) -> int | None:
    """An int from MLflow's JSON or entities; None for a missing or empty value."""
    if value is None or value == "":
        return None
    return int(value)
