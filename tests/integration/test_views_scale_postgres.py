"""The analyst views over many experiments in a PostgreSQL metastore
(`tests.views_scale` says why and how)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.db_servers import postgres_server
from tests.views_scale import REPO, build_and_read, check, seeded_store


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return seeded_store(tmp_path_factory)


def test_views_over_many_experiments_in_postgres(store: Path, tmp_path: Path) -> None:
    with postgres_server() as url:
        parsed = make_url(url)
        env = dict(
            os.environ,
            MLFLOW_FUN_METASTORE_URL=f"jdbc:postgresql://127.0.0.1:{parsed.port}/{parsed.database}",
            MLFLOW_FUN_METASTORE_USER=str(parsed.username),
            MLFLOW_FUN_METASTORE_PASSWORD=str(parsed.password),
        )
        conf = str(REPO / "conf" / "metastore-postgres.yaml")
        answer = build_and_read(store, tmp_path / "data", "--conf", conf, env=env)
        sessions = _sessions(url)
    check(answer, store)
    # Pooled (mlflow_fun.metastore_pool): a few connections for the whole build and read;
    # unpooled, Hive's client opened one per metastore transaction, thousands here.
    assert sessions <= 20, sessions


def _sessions(url: str) -> int:
    """The sessions PostgreSQL has counted on the metastore's database since it started."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return int(
                connection.execute(
                    text("select sessions from pg_stat_database where datname = current_database()")
                ).scalar_one()
            )
    finally:
        engine.dispose()
