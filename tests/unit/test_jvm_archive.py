"""The driver JVM's class archive: one writer at a time, kept only from a clean exit."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlflow_fun import jvm_archive
from mlflow_fun.jvm_archive import archive_name, check_mapped, finish_archive, plan_archive

KEY = ["/usr/lib/jvm/java-17/bin/java", "/venv/pyspark", "4.2.0"]


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MLFLOW_FUN_CLASS_ARCHIVE", str(tmp_path / "jvm"))
    return tmp_path / "jvm"


def _exits_writing(path: str, code: int) -> subprocess.Popen[bytes]:
    """A process that, like the driver JVM, writes ``path`` when its stdin closes."""
    script = (
        f"import sys; sys.stdin.read(); open({path!r}, 'wb').write(b'classes'); sys.exit({code})"
    )
    return subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE)


def test_off_plans_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_FUN_CLASS_ARCHIVE", "off")
    assert plan_archive(KEY) is None


def test_the_name_follows_the_set_up() -> None:
    assert archive_name(KEY) == archive_name(list(KEY))
    assert archive_name(KEY) != archive_name([*KEY[:2], "4.2.1"])
    assert archive_name(KEY).startswith("spark-") and archive_name(KEY).endswith(".jsa")


def test_first_jvm_writes_the_archive_and_the_next_maps_it(folder: Path) -> None:
    plan = plan_archive(KEY)
    assert plan is not None and plan.partial is not None
    assert f"-XX:ArchiveClassesAtExit={plan.partial}" in plan.java_options
    assert plan_archive(KEY) is None  # a second JVM meanwhile: no second writer

    finish_archive(plan, _exits_writing(plan.partial, 0))

    assert sorted(p.name for p in folder.iterdir()) == [archive_name(KEY)]
    mapped = plan_archive(KEY)
    assert mapped is not None and mapped.partial is None
    assert mapped.java_options.startswith(f"-XX:SharedArchiveFile={folder / archive_name(KEY)} ")


def test_a_jvm_that_fails_leaves_no_archive(folder: Path, caplog: pytest.LogCaptureFixture) -> None:
    plan = plan_archive(KEY)
    assert plan is not None and plan.partial is not None
    with caplog.at_level("INFO", logger="mlflow_fun.jvm_archive"):
        finish_archive(plan, _exits_writing(plan.partial, 1))
    assert caplog.messages[-1] == "jvm class archive not written: the jvm exited 1"
    assert list(folder.iterdir()) == []
    assert plan_archive(KEY) is not None  # the next JVM tries again


def test_a_claim_of_a_dead_process_is_taken_over(folder: Path) -> None:
    folder.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    path = folder / archive_name(KEY)
    Path(f"{path}.claim").write_text(dead.stdout.strip())
    Path(f"{path}.{dead.stdout.strip()}.partial").write_bytes(b"half")

    plan = plan_archive(KEY)

    assert plan is not None and plan.partial == f"{path}.{os.getpid()}.partial"
    assert sorted(p.name for p in folder.iterdir()) == [f"{path.name}.claim"]


def test_an_archive_the_jvm_refuses_is_removed(tmp_path: Path) -> None:
    archive = tmp_path / "spark-x.jsa"
    archive.write_bytes(b"\0" * 4096)
    plan = jvm_archive.ArchivePlan(str(archive), "")
    mapper = subprocess.Popen(
        [sys.executable, "-c",
         f"import mmap, sys; f = open({str(archive)!r}, 'rb'); "
         "m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ); print('ok', flush=True); "
         "sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    idle = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                            stdin=subprocess.PIPE)  # fmt: skip
    try:
        assert mapper.stdout is not None and mapper.stdout.readline() == "ok\n"
        assert check_mapped(plan, mapper.pid) is True
        assert archive.exists()
        assert check_mapped(plan, idle.pid) is False
        assert not archive.exists()
    finally:
        for process in (mapper, idle):
            process.communicate("", timeout=30)


def test_only_the_newest_archives_are_kept(folder: Path) -> None:
    folder.mkdir()
    now = time.time()
    for age in range(5):
        old = folder / f"spark-{age}.jsa"
        old.write_bytes(b"old")
        os.utime(old, (now - 1000 * (age + 1), now - 1000 * (age + 1)))
    plan = plan_archive(KEY)
    assert plan is not None and plan.partial is not None
    finish_archive(plan, _exits_writing(plan.partial, 0))
    kept = sorted(p.name for p in folder.iterdir())
    # the new one and the three newest of the five older ones
    assert kept == sorted([archive_name(KEY), "spark-0.jsa", "spark-1.jsa", "spark-2.jsa"])
