"""MLflow's search words: the prefixes (``metrics.``, ``params.``, ``tags.``,
``attributes.``) and run attributes that name a run table's columns, as in MLflow's
``search_runs`` filter (mlflow/utils/search_utils.py)."""

from __future__ import annotations

from mlflow_fun.transform.naming import INFO, METRIC, PARAM, TAG

# MLflow's prefixes (mlflow/utils/search_utils.py) and the kind of column each names.
MLFLOW_PREFIXES = {
    "metrics": METRIC,
    "metric": METRIC,
    "params": PARAM,
    "param": PARAM,
    "parameters": PARAM,
    "parameter": PARAM,
    "tags": TAG,
    "tag": TAG,
    "attributes": INFO,
    "attribute": INFO,
    "attr": INFO,
    "run": INFO,
}
# MLflow's run attributes and the column that holds each.
ATTRIBUTES = {
    "run_id": "run_id",
    "run_uuid": "run_uuid",
    "run_name": "run_name",
    "experiment_id": "experiment_id",
    "user_id": "user_id",
    "status": "status",
    "start_time": "start_time",
    "created": "start_time",
    "end_time": "end_time",
    "artifact_uri": "artifact_uri",
    "lifecycle_stage": "lifecycle_stage",
}


def mlflow_reference(name: str) -> tuple[str, str] | None:
    """``(kind, key)`` of a name in MLflow's words (``metrics.`val loss```), else None.

    Example:
        >>> mlflow_reference('metrics."val loss"')
        ('metric', 'val loss')
    """
    prefix, dot, key = name.strip().partition(".")
    kind = MLFLOW_PREFIXES.get(prefix.lower()) if dot else None
    if kind is None or not key:
        return None
    if len(key) >= 2 and key[0] == key[-1] and key[0] in '`"':
        key = key[1:-1]
    return kind, key
