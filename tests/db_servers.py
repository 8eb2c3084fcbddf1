"""Throwaway PostgreSQL and MariaDB servers for tests: temp dir, loopback port, stop by PID.

Each context manager creates a data directory under the system temp dir, starts the
server on a free loopback port, creates a database ``mlflow`` owned by a user ``mlflow``
with a random password, yields the SQLAlchemy URL, then stops the server (by its PID)
and deletes the directory::

    with postgres_server() as url:      # postgresql+psycopg2://mlflow:<pw>@127.0.0.1:<port>/mlflow
        ...
    with mariadb_server() as url:       # mysql+pymysql://mlflow:<pw>@127.0.0.1:<port>/mlflow
        ...

The binaries come from Debian's ``postgresql`` and ``mariadb-server`` packages;
`ensure_installed` runs ``scripts/db_servers.sh`` when they are missing. PostgreSQL
refuses to run as root, so under root it runs as the ``postgres`` OS user.
"""

from __future__ import annotations

import glob
import logging
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlflow_fun.extract.local_server import free_port

logger = logging.getLogger(__name__)

# The PostgreSQL JDBC driver a Hive metastore on PostgreSQL loads, as
# conf/metastore-postgres.yaml names it.
POSTGRES_DRIVER = "org.postgresql:postgresql:42.7.14"


REPO = Path(__file__).resolve().parent.parent
INSTALL_SCRIPT = REPO / "scripts" / "db_servers.sh"
DATABASE = "mlflow"
USER = "mlflow"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


def postgres_bin() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` that has ``initdb``, or None."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name),
    )
    return Path(found[-1]).parent if found else None


def mariadb_bins() -> tuple[str, str] | None:
    """Paths of ``mariadb-install-db`` and ``mariadbd``, or None if either is missing."""
    install_db = shutil.which("mariadb-install-db")
    server = shutil.which("mariadbd") or shutil.which("mariadbd", path="/usr/sbin:/usr/libexec")
    return (install_db, server) if install_db and server else None


def ensure_installed() -> None:
    """Run ``scripts/db_servers.sh`` if PostgreSQL or MariaDB is missing."""
    if postgres_bin() is None or mariadb_bins() is None:
        logger.warning("database servers missing; running %s", INSTALL_SCRIPT)
        subprocess.run(["bash", str(INSTALL_SCRIPT)], check=True)


@contextmanager
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL on 127.0.0.1; yields ``postgresql+psycopg2://…/mlflow``."""
    with restartable_postgres() as server:
        yield server.url


class PostgresServer:
    """A running throwaway PostgreSQL that a fault test can `stop` and `start` again on the
    same port and data directory (see `restartable_postgres`)."""

    def __init__(self, base: Path, port: int, run_as: dict[str, Any], url: str) -> None:
        self.base, self.port, self.run_as, self.url = base, port, run_as, url
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server (again) and wait until it takes connections."""
        import psycopg2

        bin_dir = postgres_bin()
        assert bin_dir is not None
        log = self.base / "server.log"
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [
                    str(bin_dir / "postgres"),
                    "-D",
                    str(self.base / "data"),
                    "-p",
                    str(self.port),
                    "-k",
                    str(self.base),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                ],
                cwd=self.base,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **self.run_as,
            )
        admin = _wait(
            lambda: psycopg2.connect(
                host=str(self.base), port=self.port, user="postgres", dbname="postgres"
            ),
            self.process,
            log,
        )
        admin.close()
        logger.info("postgres up port=%d pid=%d", self.port, self.process.pid)

    def stop(self) -> None:
        """Fast shutdown (SIGINT): open sessions end, as when a database host restarts."""
        if self.process is not None:
            _stop(self.process, signal.SIGINT)
            self.process = None


@contextmanager
def restartable_postgres() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL on 127.0.0.1 with a database ``mlflow``; yields the server.

    Example:
        >>> with restartable_postgres() as pg:
        ...     pg.stop(); pg.start()   # same port, same data, same url
    """
    import psycopg2

    ensure_installed()
    bin_dir = postgres_bin()
    assert bin_dir is not None
    run_as: dict[str, Any] = {}
    base = Path(tempfile.mkdtemp(prefix="mlflow-fun-pg-"))
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(base, owner.pw_uid, owner.pw_gid)
        run_as = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}
    password, port = secrets.token_hex(12), free_port()
    url = f"postgresql+psycopg2://{USER}:{password}@127.0.0.1:{port}/{DATABASE}"
    server = PostgresServer(base, port, run_as, url)
    try:
        subprocess.run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(base / "data"),
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ],
            cwd=base,
            check=True,
            capture_output=True,
            **run_as,
        )
        server.start()
        admin = psycopg2.connect(host=str(base), port=port, user="postgres", dbname="postgres")
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE ROLE {USER} LOGIN PASSWORD %s", (password,))
            cursor.execute(f"CREATE DATABASE {DATABASE} OWNER {USER}")
        admin.close()
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def mariadb_server() -> Iterator[str]:
    """A throwaway MariaDB on 127.0.0.1; yields ``mysql+pymysql://…/mlflow``.

    The server's character set is utf8mb4 with the binary collation, so that keys that
    differ only in case (MLflow allows params ``lr`` and ``LR``) stay distinct.
    """
    import pymysql

    ensure_installed()
    bins = mariadb_bins()
    assert bins is not None
    install_db, server = bins
    base = Path(tempfile.mkdtemp(prefix="mlflow-fun-mariadb-"))
    data, log, socket = base / "data", base / "server.log", base / "mysqld.sock"
    password, port = secrets.token_hex(12), free_port()
    user = ["--user=root"] if os.geteuid() == 0 else []
    process: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run(
            [
                install_db,
                "--no-defaults",
                *user,
                f"--datadir={data}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--skip-name-resolve",
            ],
            cwd=base,
            check=True,
            capture_output=True,
        )
        with open(log, "ab") as out:
            process = subprocess.Popen(
                [
                    server,
                    "--no-defaults",
                    *user,
                    f"--datadir={data}",
                    f"--socket={socket}",
                    f"--port={port}",
                    "--bind-address=127.0.0.1",
                    f"--pid-file={base / 'mysqld.pid'}",
                    "--skip-name-resolve",
                    "--skip-log-bin",
                    "--character-set-server=utf8mb4",
                    "--collation-server=utf8mb4_bin",
                    "--innodb-flush-log-at-trx-commit=0",
                    "--innodb-doublewrite=0",
                    "--innodb-buffer-pool-size=64M",
                ],
                cwd=base,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        admin = _wait(
            lambda: pymysql.connect(unix_socket=str(socket), user="root", autocommit=True),
            process,
            log,
        )
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {DATABASE}")
            cursor.execute(f"CREATE USER '{USER}'@'127.0.0.1' IDENTIFIED BY %s", (password,))
            cursor.execute(f"GRANT ALL PRIVILEGES ON {DATABASE}.* TO '{USER}'@'127.0.0.1'")
        admin.close()
        logger.info("mariadb up port=%d pid=%d", port, process.pid)
        yield f"mysql+pymysql://{USER}:{password}@127.0.0.1:{port}/{DATABASE}"
    finally:
        if process is not None:
            _stop(process, signal.SIGTERM)
        shutil.rmtree(base, ignore_errors=True)


def _wait(connect: Callable[[], Any], process: subprocess.Popen[bytes], log: Path) -> Any:
    """Call ``connect`` until it succeeds; fail with the server log if the server dies."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"database server exited ({process.returncode}): {_tail(log)}")
        try:
            return connect()
        except Exception as e:  # the driver's "not yet" errors differ; keep trying
            if time.monotonic() > deadline:
                raise RuntimeError(f"database server did not start: {e}; {_tail(log)}") from e
            time.sleep(0.2)


def _stop(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """Signal the server by its PID, wait, and kill it if it does not stop."""
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
