"""The ``mlflow-fun`` command: parse arguments, call a library function, map errors.

Exit codes: 0 success, 1 a failure the message explains, 2 bad usage, 130 interrupted,
143 the job stopped on SIGTERM between experiments.

Each command lives in its own module (`best`, `build`, `sql`, `serve`) and imports the
library it calls when it runs, so ``mlflow-fun --help`` and a query that needs no Spark
never load Spark, SQLAlchemy or the writers. ``spark-submit jobs/build_tables.py`` and
``main_sql`` call the same commands through `main`.
"""

from __future__ import annotations

import errno
import re
import sys
from collections.abc import Sequence

import click

from mlflow_fun import __version__
from mlflow_fun.cli.best import best
from mlflow_fun.cli.build import build
from mlflow_fun.cli.maintain import maintain
from mlflow_fun.cli.options import CONTEXT_SETTINGS, LOG_LEVELS, conf_option, dashed_option
from mlflow_fun.cli.serve import serve
from mlflow_fun.cli.sql import sql
from mlflow_fun.errors import MlflowFunError, UsageError, java_root_line
from mlflow_fun.load.delta_files import delta_rs_errors
from mlflow_fun.session import finish_sessions


@click.group(
    context_settings=CONTEXT_SETTINGS,
    help="Turn MLflow runs into typed tables and DataFrames, and find the best run. "
    "Credentials come from MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME/PASSWORD.",
)
@click.version_option(__version__, message="mlflow-fun %(version)s")
@dashed_option(
    "log_level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="WARNING",
    help="Logging level on stderr (default: WARNING); also accepted after the command.",
)
@conf_option("The job's YAML settings file, for every command; also accepted after it.")
@click.pass_context
def cli(ctx: click.Context, log_level: str, conf: str | None) -> None:
    """The group: keeps the options given before the command for the command."""
    ctx.obj = {"log_level": log_level, "conf": conf}


for _command in (best, build, maintain, sql, serve):
    cli.add_command(_command)


def main(argv: Sequence[str] | None = None, prog_name: str = "mlflow-fun") -> int:
    """Run ``mlflow-fun`` with ``argv`` (default: the process's); return the exit code.

    ``prog_name`` starts every message: the thin callers (``build_tables.py``,
    ``main_sql``) speak under their own names.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        code = cli.main(args=args, prog_name=prog_name, standalone_mode=False)
    except click.ClickException as e:  # click's usage errors: the usage, then the error
        e.show()
        return e.exit_code
    except click.Abort:
        print(f"{prog_name}: interrupted", file=sys.stderr)
        return 130
    except UsageError as e:  # found before any work: like click's usage errors, exit 2
        _error(f"{prog_name}: error: {e}")
        return 2
    except MlflowFunError as e:
        _error(f"{prog_name}: error: {e}")
        return 1
    except KeyboardInterrupt:
        print(f"{prog_name}: interrupted", file=sys.stderr)
        return 130
    except OSError as e:
        if e.errno not in _DISK_ADVICE:
            raise
        where = f" ({e.filename})" if e.filename else ""
        _error(f"{prog_name}: error: {e.strerror}{where}: {_DISK_ADVICE[e.errno]}")
        return 1
    except Exception as e:
        if isinstance(e, delta_rs_errors()):  # a side table's commit (state, runs, status)
            _error(f"{prog_name}: error: delta-rs failed: {_delta_rs_reason(e)}")
            return 1
        if not type(e).__module__.startswith(("pyspark", "py4j")):
            raise
        # Spark failed outside an experiment's own write (its catalog, the status table): a
        # full volume under the metastore, a lost metastore. Say it in one line.
        _error(f"{prog_name}: error: Spark failed: {_spark_reason(e)}")
        return 1
    return int(code or 0)


def _error(message: str) -> None:
    """Print ``message`` as the command's last line: sessions still to be stopped at exit
    (a JVM writing its class archive, with its log lines) are stopped first."""
    finish_sessions()
    print(message, file=sys.stderr)


def _spark_reason(error: Exception) -> str:
    """The first line of a Spark error, and of its deepest Java cause if the JVM still
    answers (the cause names the disk or the connection; the first line often does not)."""
    first = (str(error).strip().splitlines() or [type(error).__name__])[0]
    deepest = java_root_line(error) or ""
    return f"{first}; cause: {deepest}" if deepest and deepest not in first else first


def _delta_rs_reason(error: Exception) -> str:
    """The first line of a delta-rs error, with `_DISK_ADVICE` for the OS error it names
    (delta-rs says ``... No space left on device (os error 28)``)."""
    first = (str(error).strip().splitlines() or [type(error).__name__])[0]
    named = re.search(r"\(os error (\d+)\)", first)
    advice = _DISK_ADVICE.get(int(named.group(1))) if named else None
    return f"{first}: {advice}" if advice else first


# What to do when the data dir's volume refuses a write; other OS errors keep their traceback.
_DISK_ADVICE = {
    errno.ENOSPC: "free space on the data dir's volume (`mlflow-fun maintain` vacuums the "
    "files old table versions left) and run again; every table is as the last run left it",
    errno.EDQUOT: "the disk quota is used up: free space or raise the quota, and run again",
    errno.EROFS: "the data dir's volume is read-only: choose a writable --data-dir",
    errno.EACCES: "this user may not write there: fix the permissions or choose another --data-dir",
}


def job_main(argv: Sequence[str] | None = None, prog: str = "build_tables.py") -> int:
    """Entry point of ``spark-submit jobs/build_tables.py``: ``mlflow-fun build``, logging INFO."""
    args = list(sys.argv[1:] if argv is None else argv)
    return main(["--log-level", "INFO", "build", *args], prog_name=prog)


def serve_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m mlflow_fun.serve``: ``mlflow-fun serve``, logging INFO."""
    args = list(sys.argv[1:] if argv is None else argv)
    return main(["--log-level", "INFO", "serve", *args], prog_name="mlflow-fun serve")


if __name__ == "__main__":
    sys.exit(main())
