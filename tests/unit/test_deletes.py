"""`rewrite_reason`: deleting runs keeps a table equal to a full refresh unless a column
goes or a param's type narrows."""

from __future__ import annotations

from mlflow_fun.transform.deletes import rewrite_reason

COLUMNS = {
    ("metric", "rmse"): "double",
    ("param", "alpha"): "double",
    ("param", "seed"): "int",
    ("tag", "team"): "string",
}
STAYING = [
    ("metric", "rmse", None),
    ("param", "alpha", "0.5"),
    ("param", "alpha", "1"),
    ("param", "seed", "7"),
    ("tag", "team", None),
]


def test_rows_can_go_when_keys_and_types_stay() -> None:
    assert rewrite_reason(COLUMNS, STAYING) is None
    assert rewrite_reason(COLUMNS, STAYING + [("param", "seed", "")]) is None  # missing: NULL


def test_a_key_no_run_has_any_more_drops_its_column() -> None:
    staying = [kv for kv in STAYING if kv[0] != "tag"]
    assert rewrite_reason(COLUMNS, staying) == "no run left has tag 'team': its column goes"
    only_alpha = [kv for kv in STAYING if kv[1] == "alpha"]
    assert rewrite_reason(COLUMNS, only_alpha) == (
        "no run left has metric 'rmse' (and 2 more): its column goes"
    )


def test_a_narrower_type_needs_a_rewrite() -> None:
    integers = [kv for kv in STAYING if kv[2] != "0.5"]  # the only 0.5 was deleted
    assert rewrite_reason(COLUMNS, integers) == "param 'alpha' would be int, not double"
    missing_only = [kv for kv in STAYING if kv[1] != "seed"] + [("param", "seed", "null")]
    assert rewrite_reason(COLUMNS, missing_only) == "param 'seed' would be string, not int"


def test_a_key_without_a_column_is_a_stale_read() -> None:
    assert rewrite_reason(COLUMNS, STAYING + [("param", "beta", "2")]) == (
        "param 'beta' has no column"
    )
