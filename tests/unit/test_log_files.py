"""`checkpoint_due`: where Spark's Delta checkpoints after a commit, the rule delta-rs's
commits follow here (`log_files.after_commit`)."""

from __future__ import annotations

import pytest

from mlflow_fun.load.log_files import CHECKPOINT_INTERVAL, checkpoint_due


def test_spark_checkpoints_every_ten_versions_by_default_never_at_the_first() -> None:
    due = [v for v in range(0, 31) if checkpoint_due(v, {})]

    assert CHECKPOINT_INTERVAL == 10
    assert due == [10, 20, 30]


def test_a_tables_own_interval_is_followed() -> None:
    configuration = {"delta.checkpointInterval": "3", "delta.appendOnly": "false"}

    assert [v for v in range(0, 10) if checkpoint_due(v, configuration)] == [3, 6, 9]


@pytest.mark.parametrize("configured", ["0", "-5", "ten", "", None])
def test_an_interval_that_is_not_a_positive_number_is_sparks_default(
    configured: str | None,
) -> None:
    configuration = {"delta.checkpointInterval": configured}

    assert [v for v in range(0, 21) if checkpoint_due(v, configuration)] == [10, 20]
