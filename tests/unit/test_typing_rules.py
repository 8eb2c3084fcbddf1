from __future__ import annotations

import math

import pytest

from mlflow_fun.transform.typing_rules import convert_param, infer_param_type


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["1", "2", "-3", "+4"], "int"),
        (["1", "", "None", "null", None], "int"),
        (["2147483647", "-2147483648"], "int"),
        (["2147483648"], "bigint"),
        (["-9223372036854775808", "9223372036854775807"], "bigint"),
        (["9223372036854775808"], "double"),
        (["1", "0.5"], "double"),
        (["1e-3", "2E5", ".5", "5."], "double"),
        (["nan", "NaN", "inf", "-Infinity", "+inf"], "double"),
        (["true", "False", "TRUE", "null"], "boolean"),
        (["1", "true"], "string"),
        (["1", "abc"], "string"),
        ([" 1"], "string"),
        (["1_000"], "string"),
        (["0x10"], "string"),
        (["", "None", "null"], "string"),
        ([None, None], "string"),
        ([], "string"),
    ],
)
def test_infer_param_type(values: list[str | None], expected: str) -> None:
    assert infer_param_type(values) == expected


def test_convert_int_and_missing() -> None:
    assert [convert_param(v, "int") for v in ["7", "-3", "", "None", "NULL", None]] == [
        7,
        -3,
        None,
        None,
        None,
        None,
    ]


def test_convert_double_special_values() -> None:
    converted = [convert_param(v, "double") for v in ["1e-3", "-Infinity", "+inf", "2"]]
    assert converted == [0.001, -math.inf, math.inf, 2.0]
    nan = convert_param("NaN", "double")
    assert isinstance(nan, float) and math.isnan(nan)


def test_convert_boolean_any_case() -> None:
    assert [convert_param(v, "boolean") for v in ["true", "FALSE", "True", ""]] == [
        True,
        False,
        True,
        None,
    ]


def test_string_keeps_every_value_exactly() -> None:
    assert [convert_param(v, "string") for v in ["", "None", " x ", None]] == [
        "",
        "None",
        " x ",
        None,
    ]


def test_params_are_never_timestamps() -> None:
    with pytest.raises(ValueError, match="never typed"):
        convert_param("1", "timestamp")
