from __future__ import annotations

import pytest

from mlflow_fun.errors import InvalidIdentifierError
from mlflow_fun.transform.naming import (
    assign_column_names,
    qualified_table,
    quote_identifier,
    sanitize_key,
    validate_identifier,
)


def test_plain_keys_are_kept() -> None:
    names = assign_column_names([("metric", "rmse"), ("param", "alpha"), ("tag", "mlflow_x")])
    assert names == {
        ("metric", "rmse"): "_m_rmse",
        ("param", "alpha"): "_p_alpha",
        ("tag", "mlflow_x"): "_t_mlflow_x",
    }


def test_unsafe_characters_become_underscores() -> None:
    assert sanitize_key("train/loss.v2 a-b:c") == "train_loss_v2_a_b_c"
    assert sanitize_key("größe") == "gr__e"


def test_case_collisions_resolved_deterministically() -> None:
    keys = [("param", "lr"), ("param", "LR"), ("param", "lr_2"), ("param", "l/r")]
    names = assign_column_names(keys)
    assert names == {
        ("param", "LR"): "_p_LR",
        ("param", "lr_2"): "_p_lr_2",
        ("param", "l/r"): "_p_l_r",
        ("param", "lr"): "_p_lr_3",
    }
    assert assign_column_names(list(reversed(keys))) == names


def test_sanitised_name_never_takes_a_plain_key_name() -> None:
    names = assign_column_names([("metric", "a/b"), ("metric", "a_b")])
    assert names == {("metric", "a_b"): "_m_a_b", ("metric", "a/b"): "_m_a_b_2"}


def test_previous_names_are_kept_when_new_keys_arrive() -> None:
    previous = {("metric", "a/b"): "_m_a_b"}
    names = assign_column_names([("metric", "a/b"), ("metric", "a_b")], previous)
    assert names == {("metric", "a/b"): "_m_a_b", ("metric", "a_b"): "_m_a_b_2"}


def test_names_are_unique_ignoring_case() -> None:
    keys = [("tag", k) for k in ["X", "x", "x_2", "X_2", "x/2", "x.2"]]
    names = assign_column_names(keys)
    lowered = [n.lower() for n in names.values()]
    assert len(set(lowered)) == len(keys)


def test_unknown_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown key kind"):
        assign_column_names([("metrics", "rmse")])


@pytest.mark.parametrize("name", ["mlflow_metrics", "_x", "A1"])
def test_valid_identifiers(name: str) -> None:
    assert validate_identifier(name) == name


@pytest.mark.parametrize("name", ["", "1abc", "a-b", "a b", "db; drop table x", "a`b", "x" * 129])
def test_invalid_identifiers(name: str) -> None:
    with pytest.raises(InvalidIdentifierError, match="not a valid identifier"):
        validate_identifier(name, "database")


def test_quoting() -> None:
    assert quote_identifier("a`b") == "`a``b`"
    assert qualified_table("db", "exp_1") == "`db`.`exp_1`"
    with pytest.raises(InvalidIdentifierError, match="database name"):
        qualified_table("db;", "exp_1")
