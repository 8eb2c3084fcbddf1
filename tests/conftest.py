"""Shared fixtures: one real mlflow server, one local Spark with Delta and a metastore."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlflow_fun.extract.local_server import LocalMlflowServer
from mlflow_fun.load.lock import LOCK_DIR_ENV
from mlflow_fun.metastore_pool import missing_jars
from mlflow_fun.spark_jars import DELTA_PACKAGE, ivy_home, resolve_packages
from tests.db_servers import POSTGRES_DRIVER
from tests.seed import Seeded, seed_all
from tests.spark_settings import LEAN_READS

# Fail fast in tests that expect a failure: no long backoff.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")  # MLflow reads an int
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "0.05")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")

# The job's default lock files (one per database) of this test run only, shared by its
# workers: a second test run on the same machine must not stop this one's jobs.
if LOCK_DIR_ENV not in os.environ:
    _LOCKS = tempfile.mkdtemp(prefix="mlflow-fun-test-locks-")
    os.environ[LOCK_DIR_ENV] = _LOCKS
    atexit.register(shutil.rmtree, _LOCKS, ignore_errors=True)

# The scratch folders of every Spark JVM this test run starts (`blockmgr-*` and `spark-*`
# under Spark's local dirs, `artifacts-*` and `spark-*` under the JVM's tmp): a JVM the
# kill tests stop with SIGKILL cannot remove its own (about 90 were left in /tmp by each
# run). Spark's launcher passes SPARK_SUBMIT_OPTS to the driver JVM it starts.
if "SPARK_LOCAL_DIRS" not in os.environ:
    _SCRATCH = tempfile.mkdtemp(prefix="mlflow-fun-test-spark-")
    os.environ["SPARK_LOCAL_DIRS"] = _SCRATCH
    os.environ["SPARK_SUBMIT_OPTS"] = " ".join(
        [os.environ.get("SPARK_SUBMIT_OPTS", ""), f"-Djava.io.tmpdir={_SCRATCH}"]
    ).strip()
    atexit.register(shutil.rmtree, _SCRATCH, ignore_errors=True)


TIERS = ("unit", "spark", "integration")


def pytest_sessionstart(session: pytest.Session) -> None:
    """Resolve the Delta jars and the PostgreSQL metastore's driver once (on a machine that
    lacks them), before pytest-xdist's workers start their Sparks.

    Two JVMs resolving into one Ivy cache at once can leave it half-written; after this,
    every session takes the resolved files (`mlflow_fun.spark_jars.delta_jar_conf`).
    """
    if hasattr(session.config, "workerinput"):
        return  # a worker: the controller has resolved them
    if missing := missing_jars(ivy_home(), [DELTA_PACKAGE, POSTGRES_DRIVER]):
        resolve_packages(",".join(missing), ivy_home())


# The longest files, started first: `make test`'s two processes then end together
# instead of one waiting for the other's last long file (--dist loadfile hands out files
# in collection order). `test_faults.py` waits on its faults' timeouts and on the server
# (one core or none): beside the kill tests' JVMs the other core is not left idle, as it
# was when it ran last beside the other light files.
LONGEST_FIRST = (
    "test_views_scale_postgres.py",
    "test_crash.py",
    "test_faults.py",
    "test_serve.py",
    "test_views_scale_derby.py",
    "test_incremental.py",
    "test_job.py",
    "test_wheel.py",
    "test_mlflow_versions.py",
    "test_databricks.py",
    "test_metastore_restart.py",
    "test_moved_data_dir.py",
    "test_class_archive.py",
    "test_database_faults.py",
    "test_best_at_any_step.py",
    "test_two_jobs.py",
    "test_logged_model_sources.py",
    "test_soak.py",
    "test_autolog_models.py",
    "test_logged_models.py",
    "test_registry.py",
    "test_sql_without_jvm.py",
    "test_volume_full.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test with its tier (its folder); put the longest files first."""
    for item in items:
        tier = item.path.parent.name
        if tier not in TIERS:
            raise pytest.UsageError(f"{item.nodeid}: a test belongs in tests/{{{','.join(TIERS)}}}")
        item.add_marker(getattr(pytest.mark, tier))
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: order kept


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMlflowServer]:
    """A real ``mlflow server`` (sqlite store) on a free loopback port."""
    server = LocalMlflowServer(tmp_path_factory.mktemp("mlflow_server"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def seeded(mlflow_server: LocalMlflowServer) -> Seeded:
    """The test experiments, logged through MLflow's own client."""
    return seed_all(mlflow_server.url)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Home of the test session's warehouse and Derby metastore."""
    return tmp_path_factory.mktemp("spark_data")


@pytest.fixture(scope="session")
def spark(data_dir: Path) -> Iterator[Any]:
    """A local[2] Spark with Delta and a Hive metastore under a tmp dir, UI off.

    Its JVM runs with `LOCAL_JVM_OPTIONS` (C1 alone, the serial collector), as the jobs
    the tests start as processes do. It lives for the whole suite, but its work is many
    small queries and writes, not hot loops: with C2 the JIT's threads took 43% of its CPU
    (65 s of C2, 25 s of C1 in 207 s over tests/spark and test_job.py), with C1 alone the
    same tests took 141 s of its CPU. It reads as `LEAN_READS` says: one partition,
    Spark's interpreted plans.
    """
    from mlflow_fun.session import LOCAL_JVM_OPTIONS, LOG4J_CONFIG, build_spark_session

    session = build_spark_session(
        data_dir=str(data_dir),
        app_name="mlflow-fun-tests",
        master="local[2]",
        conf={
            **LEAN_READS,
            "spark.ui.enabled": "false",
            "spark.driver.extraJavaOptions": (
                f"-Dlog4j2.configurationFile={LOG4J_CONFIG} {LOCAL_JVM_OPTIONS}"
            ),
        },
    )
    yield session
    session.stop()
