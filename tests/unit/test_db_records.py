"""`to_records`: the database source's rows as `RunRecord`s, each key held once."""

from __future__ import annotations

import math

from mlflow_fun.extract.database.queries import to_records


def _fresh(text: str) -> str:
    """``text`` as a new string object, as each row of a database cursor brings it."""
    return "".join(list(text))


def test_rows_become_records_whose_keys_and_repeated_values_are_one_object_each() -> None:
    rows = [
        (run, None, 7, _fresh("ann"), _fresh("FINISHED"), 1, 2, _fresh("active"), "/a", None)
        for run in ("r1", "r2")
    ]
    metrics = [(run, _fresh("rmse"), 0.5, False) for run in ("r1", "r2")] + [("r2", "nan", 0, True)]
    params = [(run, _fresh("alpha"), _fresh("0.1")) for run in ("r1", "r2")]
    tags = [(run, _fresh("mlflow.runName"), _fresh(f"n-{run}")) for run in ("r1", "r2")]

    first, second = to_records(rows, metrics, params, tags)

    assert first.info == {"run_name": "n-r1", "experiment_id": "7", "user_id": "ann",
                          "status": "FINISHED", "lifecycle_stage": "active", "start_time": 1,
                          "end_time": 2, "artifact_uri": "/a"}  # fmt: skip
    assert (first.metrics, first.params) == ({"rmse": 0.5}, {"alpha": "0.1"})
    assert math.isnan(second.metrics["nan"])
    for a, b in ((first.metrics, second.metrics), (first.params, second.params),
                 (first.tags, second.tags)):  # fmt: skip
        assert [id(k) for k in a] == [id(k) for k in b][: len(a)]
    for field in ("user_id", "status", "lifecycle_stage"):
        assert first.info[field] is second.info[field]
    assert first.params["alpha"] is second.params["alpha"]  # the same value, held once
    assert first.info["run_name"] is not second.info["run_name"]  # different values
    named = to_records([("r3", _fresh("n"), *rows[0][2:])], [], [], [("r3", "mlflow.runName", "n")])
    assert named[0].info["run_name"] is named[0].tags["mlflow.runName"]
