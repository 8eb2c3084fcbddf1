"""A class-data-sharing archive for the local Spark driver: a job's JVM starts in half the time.

A local job's driver JVM loads and verifies the classes of Spark's, Hive's and Delta's jars
before its first query; on this project's 2-core machine that was 6 of a 16 s job over 60
runs. Java's dynamic class-data sharing (JDK 13+) keeps those classes parsed and verified
in a file: the first local JVM writes the classes it loaded when it exits
(``-XX:ArchiveClassesAtExit``); the JVMs after it map the file
(``-XX:SharedArchiveFile``) and the same job took 10 s.

Only for a driver JVM that mlflow-fun starts from Python (``mlflow-fun build``, ``sql``,
``serve``, the builders); under ``spark-submit`` the JVM already runs. The JVM checks that
the archive matches its own classpath and jars and ignores it otherwise (``-Xshare:auto``):
a stale archive costs nothing but the speed-up, and is replaced (`check_mapped`).

``MLFLOW_FUN_CLASS_ARCHIVE``: ``off`` to never write or map one; otherwise the folder of
the archives (default ``~/.cache/mlflow-fun/jvm``).
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

logger = logging.getLogger(__name__)

# The JVM's own cds messages (classes it skips, a mismatch) are warnings on stdout.
_QUIET = "-Xshare:auto -Xlog:cds=off -Xlog:cds+dynamic=off"


@dataclass(frozen=True)
class ArchivePlan:
    """What the next driver JVM does with the archive at ``path``.

    ``partial`` is set when this JVM writes the archive (to ``partial``, renamed to
    ``path`` by `finish_archive` once the JVM exited cleanly); unset when it maps ``path``.
    """

    path: str
    java_options: str
    partial: str | None = None

    @property
    def claim(self) -> str:
        return f"{self.path}.claim"


def archive_dir() -> str | None:
    """The archives' folder from ``MLFLOW_FUN_CLASS_ARCHIVE``; None when it is ``off``."""
    setting = os.environ.get("MLFLOW_FUN_CLASS_ARCHIVE", "").strip()
    if setting.lower() == "off":
        return None
    return setting or os.path.expanduser("~/.cache/mlflow-fun/jvm")


def archive_name(key_parts: Sequence[str]) -> str:
    """The file name of the archive for one JVM set-up (java, jars, options).

    Example:
        >>> archive_name(["/usr/bin/java", "pyspark 4.2.0"])
        'spark-7da5b28b5818775d.jsa'
    """
    digest = hashlib.sha256("\n".join(key_parts).encode("utf-8")).hexdigest()[:16]
    return f"spark-{digest}.jsa"


def plan_archive(key_parts: Sequence[str]) -> ArchivePlan | None:
    """Map the archive of this set-up if it exists, else write it (one JVM at a time).

    Returns None when archives are off, the folder cannot be written, or another live
    JVM is writing the archive now (this one then starts without it).
    """
    folder = archive_dir()
    if folder is None:
        return None
    path = os.path.join(folder, archive_name(key_parts))
    if os.path.isfile(path):
        return ArchivePlan(path, f"-XX:SharedArchiveFile={path} {_QUIET}")
    try:
        os.makedirs(folder, exist_ok=True)
        if not _take_claim(f"{path}.claim"):
            return None
    except OSError as e:
        logger.debug("no jvm class archive folder=%s error=%s", folder, e)
        return None
    for stale in glob.glob(f"{glob.escape(path)}.*.partial"):
        os.remove(stale)  # left by a JVM killed while writing; ours holds the claim now
    partial = f"{path}.{os.getpid()}.partial"
    return ArchivePlan(path, f"-XX:ArchiveClassesAtExit={partial} {_QUIET}", partial)


def _take_claim(claim: str) -> bool:
    """Create ``claim`` holding our pid; take it over from a process that has died."""
    for _ in range(2):
        try:
            fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if _claim_alive(claim):
                return False
            _remove(claim)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return True
    return False


def _claim_alive(claim: str) -> bool:
    try:
        with open(claim) as f:
            pid = int(f.read().strip() or 0)
    except (OSError, ValueError):
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except OSError as e:
        return e.errno == errno.EPERM
    return True


def finish_archive(plan: ArchivePlan, jvm_process: object) -> None:
    """After the session stopped: let the JVM exit, keep its archive if it exited cleanly.

    The driver JVM of a Python session exits when its stdin closes; it writes the archive
    as it exits. A JVM killed while writing leaves only the ``.partial`` file.
    """
    if plan.partial is None:
        return
    logger.info("writing the jvm class archive (once; later local jobs start faster)")
    try:
        stdin = getattr(jvm_process, "stdin", None)
        if stdin is not None:
            stdin.close()
        code = jvm_process.wait(timeout=120)  # type: ignore[attr-defined]
        if code == 0 and os.path.isfile(plan.partial) and os.path.getsize(plan.partial) > 0:
            os.replace(plan.partial, plan.path)
            logger.info("jvm class archive written path=%s", plan.path)
            _prune(os.path.dirname(plan.path), keep=KEEP_ARCHIVES)
        else:
            logger.info("jvm class archive not written: the jvm exited %s", code)
    except Exception as e:  # noqa: BLE001 - a missed speed-up, never a failed job
        logger.debug("jvm class archive not written path=%s error=%s", plan.path, e)
    finally:
        _remove(plan.partial)
        _remove(plan.claim)


def check_mapped(plan: ArchivePlan, jvm_pid: int) -> bool:
    """True if the JVM ``jvm_pid`` maps the archive; a refused archive is removed.

    The JVM refuses an archive written for other jars or another Java without a word;
    removing it lets the next JVM write a matching one. Where ``/proc`` is missing
    (not Linux), the archive is kept and True returned.
    """
    try:
        with open(f"/proc/{jvm_pid}/maps") as f:
            mapped = any(plan.path in line for line in f)
    except OSError:
        return True
    if mapped:
        with contextlib.suppress(OSError):
            os.utime(plan.path)  # recently used: `_prune` keeps it
        logger.info("jvm class archive mapped path=%s", plan.path)
    else:
        logger.info("jvm class archive refused by the JVM; removed path=%s", plan.path)
        _remove(plan.path)
    return mapped


# Archives kept: one set-up (a venv, its pyspark and java) has up to four, the sessions'
# and the SQL endpoint's, each on the embedded metastore or another; each is ~200 MB.
KEEP_ARCHIVES = 4


def _prune(folder: str, keep: int) -> None:
    """Remove all but the ``keep`` most recently written or mapped archives in ``folder``."""
    dated = []
    for path in glob.glob(os.path.join(glob.escape(folder), "spark-*.jsa")):
        with contextlib.suppress(OSError):
            dated.append((os.path.getmtime(path), path))
    for _, old in sorted(dated, reverse=True)[keep:]:
        _remove(old)


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
