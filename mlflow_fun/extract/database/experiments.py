"""MLflow's experiments and their tags, read from its database in MLflow's order:
the experiment half of `DatabaseSource` (`DatabaseExperiments`) and its queries."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from functools import partial
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mlflow_fun.errors import ExperimentNotFoundError
from mlflow_fun.extract.database.queries import (
    EXPERIMENT_ORDER,
    Cursor,
    parse_experiment_id,
    view_stages,
)
from mlflow_fun.extract.database.reader import Reader
from mlflow_fun.extract.database.schema import EXPERIMENT_TAGS, EXPERIMENTS
from mlflow_fun.extract.source import EXPERIMENTS_PAGE_SIZE
from mlflow_fun.model import Experiment


class DatabaseExperiments:
    """The experiment reads of `DatabaseSource`: by id, by name, all of a view type.

    Needs ``_reader`` (where a read is retried) and ``tracking_uri`` (for messages),
    which `DatabaseSource` sets.
    """

    _reader: Reader
    tracking_uri: str

    def get_experiment(self, experiment_id: str) -> Experiment:
        """Return one experiment; raise `ExperimentNotFoundError` if there is none.

        Example:
            >>> source.get_experiment("1").name
            'wine-quality'
        """
        eid = parse_experiment_id(experiment_id)
        found = [] if eid is None else self._experiments(EXPERIMENTS.c.experiment_id == eid)[0]
        if not found:
            raise ExperimentNotFoundError(
                f"experiment id {str(experiment_id)!r} does not exist at {self.tracking_uri}"
            )
        return found[0]

    def get_experiment_by_name(self, name: str) -> Experiment:
        """Return the experiment named ``name``; raise `ExperimentNotFoundError` if none.

        Example:
            >>> source.get_experiment_by_name("wine-quality").experiment_id
            '1'
        """
        found, _ = self._experiments(EXPERIMENTS.c.name == name)
        if not found:
            raise ExperimentNotFoundError(f"no experiment named {name!r} at {self.tracking_uri}")
        return found[0]

    def iter_experiments(self, view_type: str = "ACTIVE_ONLY") -> Iterator[Experiment]:
        """Yield every experiment of ``view_type``, newest first, in batches.

        Example:
            >>> [e.name for e in source.iter_experiments("ALL")]
        """
        stages = view_stages(view_type)
        cursor: Cursor | None = None
        while True:
            batch, cursor = self._experiments(
                EXPERIMENTS.c.lifecycle_stage.in_(stages),
                *([EXPERIMENT_ORDER.after(cursor)] if cursor else []),
                limit=EXPERIMENTS_PAGE_SIZE,
            )
            yield from batch
            if len(batch) < EXPERIMENTS_PAGE_SIZE:
                return

    def _experiments(
        self, *where: sa.ColumnElement[bool], limit: int | None = None
    ) -> tuple[list[Experiment], Cursor | None]:
        """Experiments matching ``where`` in MLflow's order, and the cursor of the last."""
        read = partial(read_experiments, query=experiments_query(where, limit))
        return to_experiments(*self._reader.read(read, snapshot=True))


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
