"""MLflow's experiments and their tags, read from its database in MLflow's order."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mlflow_fun.extract.database.queries import EXPERIMENT_ORDER, Cursor
from mlflow_fun.extract.database.schema import EXPERIMENT_TAGS, EXPERIMENTS
from mlflow_fun.model import Experiment


def experiments_query(where: Sequence[sa.ColumnElement[bool]], limit: int | None) -> sa.Select[Any]:
    """The experiments matching ``where``, newest first, then by id (at most ``limit``)."""
    query = (
        sa.select(EXPERIMENTS, EXPERIMENT_ORDER.key.label("sort_key"))
        .where(*where)
        .order_by(*EXPERIMENT_ORDER.order_by())
    )
    return query if limit is None else query.limit(limit)


def read_experiments(conn: Connection, query: sa.Select[Any]) -> tuple[list[Any], list[Any]]:
    """The rows of ``query`` and the tag rows of their experiments (one snapshot)."""
    rows = list(conn.execute(query).all())
    tags_of = EXPERIMENT_TAGS.c.experiment_id.in_([row.experiment_id for row in rows])
    return rows, list(conn.execute(sa.select(EXPERIMENT_TAGS).where(tags_of)).all())


def to_experiments(
    rows: Sequence[Any], tag_rows: Sequence[Any]
) -> tuple[list[Experiment], Cursor | None]:
    """`Experiment` objects of the rows, and the cursor of the last row (None if none)."""
    if not rows:
        return [], None
    tags: dict[int, dict[str, str]] = defaultdict(dict)
    for tag in tag_rows:
        tags[tag.experiment_id][tag.key] = "" if tag.value is None else str(tag.value)
    experiments = [
        Experiment(
            experiment_id=str(row.experiment_id),
            name=row.name,
            lifecycle_stage=row.lifecycle_stage,
            artifact_location=row.artifact_location,
            creation_time=row.creation_time or None,
            last_update_time=row.last_update_time or None,
            tags=tags[row.experiment_id],
        )
        for row in rows
    ]
    return experiments, (rows[-1].sort_key, rows[-1].experiment_id)
